//! The [`Platform`] and [`Notifier`] the `xen` crate drives, implemented with KVM's Xen
//! attributes. VM-wide calls go straight to the VM fd; per-vCPU attributes are queued to the
//! vCPU's own thread (see [`crate::control`]).

use std::fs::File;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    KVM_XEN_ATTR_TYPE_EVTCHN, KVM_XEN_ATTR_TYPE_SHARED_INFO, KVM_XEN_ATTR_TYPE_UPCALL_VECTOR,
    KVM_XEN_EVTCHN_DEASSIGN, KVM_XEN_EVTCHN_RESET, KVM_XEN_EVTCHN_UPDATE,
    KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR, KVM_XEN_VCPU_ATTR_TYPE_TIMER,
    KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR, KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO,
};
use vm_memory::{GuestAddress, GuestMemoryBackend, VolatileMemory};
use xen::abi::errno::Errno;
use xen::abi::evtchn::Port;
use xen::abi::sched::ShutdownReason;
use xen::evtchn::Notifier;
use xen::hypercall::Platform;

use super::kvm;
use crate::control::Control;
use crate::memory::GuestRam;
use crate::VmEvent;

/// `EVTCHNSTAT_ipi`.
const EVTCHNSTAT_IPI: u32 = 5;
/// `EVTCHNSTAT_interdomain`.
pub(super) const EVTCHNSTAT_INTERDOMAIN: u32 = 2;

/// Guest-physical offsets in shared info (2-level event bitmaps).
const SHINFO_PENDING: u64 = xen::abi::shared_info::SHINFO_EVTCHN_PENDING;
const SHINFO_MASK: u64 = xen::abi::shared_info::SHINFO_EVTCHN_MASK;

pub(super) struct KvmPlatform {
    vm: File,
    ram: Arc<GuestRam>,
    controls: Vec<Arc<Control>>,
    events: Mutex<Sender<VmEvent>>,
    shared_info: Mutex<Option<u64>>,
}

impl KvmPlatform {
    pub(super) fn new(
        vm: File,
        ram: Arc<GuestRam>,
        controls: Vec<Arc<Control>>,
        events: Sender<VmEvent>,
    ) -> Self {
        KvmPlatform {
            vm,
            ram,
            controls,
            events: Mutex::new(events),
            shared_info: Mutex::new(None),
        }
    }

    fn on_vcpu(
        &self,
        vcpu: u32,
        what: &'static str,
        attr: kvm_bindings::kvm_xen_vcpu_attr,
    ) -> Result<(), Errno> {
        let c = self.controls.get(vcpu as usize).ok_or(Errno::ENOENT)?;
        c.queue(Box::new(move |fd| {
            tracing::debug!(vcpu, what, "setting a Xen vCPU attribute");
            if let Err(e) = kvm::set_vcpu_attr(fd, &attr) {
                devices::warn_ratelimited!(5, vcpu, what, error = %e, "KVM_XEN_VCPU_SET_ATTR failed");
            }
        }));
        Ok(())
    }

    fn send_event(&self, vm: &dyn Fn() -> std::io::Result<()>) -> Result<(), Errno> {
        vm().map_err(|e| {
            devices::debug_ratelimited!(5, error = %e, "KVM_XEN_HVM_EVTCHN_SEND failed");
            Errno::EINVAL
        })
    }

    /// Atomically changes the 64-bit word at `gpa`: `f(old) -> new`; returns the old value.
    fn update_word(&self, gpa: u64, f: impl Fn(u64) -> u64) -> Option<u64> {
        use std::sync::atomic::{AtomicU64, Ordering};
        let s = self.ram.mem.get_slice(GuestAddress(gpa), 8).ok()?;
        let a = s.get_atomic_ref::<AtomicU64>(0).ok()?;
        a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some(f(v)))
            .ok()
    }
}

impl Platform for KvmPlatform {
    fn map_shared_info(&self, gfn: u64) -> Result<(), Errno> {
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_SHARED_INFO, |a| a.u.shared_info.gfn = gfn);
        kvm::set_hvm_attr(&self.vm, &a).map_err(|e| {
            devices::warn_ratelimited!(5, gfn, error = %e, "placing shared info failed");
            Errno::EINVAL
        })?;
        *self.shared_info.lock().unwrap_or_else(|e| e.into_inner()) = Some(gfn);
        // KVM delivers to the vcpu_info slots in shared info only once told where they are.
        for v in 0..self
            .controls
            .len()
            .min(xen::abi::shared_info::XEN_LEGACY_MAX_VCPUS)
        {
            let gpa = (gfn << 12) + (v as u64) * xen::abi::vcpu::VCPU_INFO_SIZE as u64;
            self.set_vcpu_info(v as u32, gpa)?;
        }
        Ok(())
    }

    fn set_vcpu_info(&self, vcpu: u32, gpa: u64) -> Result<(), Errno> {
        let a = kvm::vcpu_attr(KVM_XEN_VCPU_ATTR_TYPE_VCPU_INFO, |a| a.u.gpa = gpa);
        self.on_vcpu(vcpu, "vcpu_info", a)
    }

    fn set_runstate_area(&self, vcpu: u32, gpa: Option<u64>) -> Result<(), Errno> {
        // KVM's "no area" is an invalid GPA.
        let gpa = gpa.unwrap_or(u64::MAX);
        let a = kvm::vcpu_attr(KVM_XEN_VCPU_ATTR_TYPE_RUNSTATE_ADDR, |a| a.u.gpa = gpa);
        self.on_vcpu(vcpu, "runstate", a)
    }

    fn set_callback_vector(&self, vector: u8) -> Result<(), Errno> {
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_UPCALL_VECTOR, |a| a.u.vector = vector);
        kvm::set_hvm_attr(&self.vm, &a).map_err(|e| {
            devices::warn_ratelimited!(5, vector, error = %e, "setting the upcall vector failed");
            Errno::EINVAL
        })
    }

    fn set_vcpu_upcall_vector(&self, vcpu: u32, vector: u8) -> Result<(), Errno> {
        let a = kvm::vcpu_attr(KVM_XEN_VCPU_ATTR_TYPE_UPCALL_VECTOR, |a| {
            a.u.vector = vector
        });
        self.on_vcpu(vcpu, "upcall vector", a)
    }

    fn set_timer_port(&self, vcpu: u32, port: u32) -> Result<(), Errno> {
        let a = kvm::vcpu_attr(KVM_XEN_VCPU_ATTR_TYPE_TIMER, |a| {
            a.u.timer.port = port;
            a.u.timer.priority = kvm::EVTCHN_PRIO_2LEVEL;
            a.u.timer.expires_ns = 0;
        });
        self.on_vcpu(vcpu, "timer", a)
    }

    fn release_page(&self, gfn: u64) -> Result<(), Errno> {
        self.ram.discard(gfn << 12, 4096).map_err(|e| {
            devices::warn_ratelimited!(5, gfn, error = %e, "balloon: releasing a page failed");
            Errno::EINVAL
        })
    }

    fn populate_page(&self, _gfn: u64) -> Result<(), Errno> {
        // A released page is a hole in the memfd: the next touch allocates a zeroed page.
        Ok(())
    }

    fn shutdown(&self, reason: ShutdownReason) {
        let ev = match reason {
            ShutdownReason::Poweroff => VmEvent::Poweroff,
            ShutdownReason::Reboot | ShutdownReason::SoftReset => VmEvent::Reset,
            ShutdownReason::Crash => VmEvent::Crash("the guest reported a crash".into()),
            ShutdownReason::Watchdog => VmEvent::Crash("the guest's watchdog fired".into()),
            ShutdownReason::Suspend => VmEvent::Suspend,
        };
        tracing::info!(?reason, "guest shutdown request");
        let _ = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(ev);
    }

    fn ipi_bound(&self, port: u32, vcpu: u32) {
        // Without it the send still works, through a hypercall exit.
        if let Err(e) = self.port_route(EVTCHNSTAT_IPI, port, port, vcpu, 0) {
            devices::debug_ratelimited!(5, port, error = %e, "in-kernel IPI delivery not set");
        }
    }

    fn route(&self, send_port: u32, to: u32, vcpu: u32) {
        let kind = EVTCHNSTAT_INTERDOMAIN;
        if self.port_route(kind, send_port, to, vcpu, 0).is_err() {
            // Already routed (the target moved to another vCPU): update the route.
            let r = self.port_route(kind, send_port, to, vcpu, KVM_XEN_EVTCHN_UPDATE);
            if let Err(e) = r {
                devices::debug_ratelimited!(5, send_port, error = %e, "in-kernel route not set");
            }
        }
    }

    fn port_closed(&self, port: u32) {
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_EVTCHN, |a| {
            a.u.evtchn.send_port = port;
            a.u.evtchn.flags = KVM_XEN_EVTCHN_DEASSIGN;
        });
        // ENOENT for ports KVM never delivered: nothing to undo.
        let _ = kvm::set_hvm_attr(&self.vm, &a);
    }

    fn ports_reset(&self) {
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_EVTCHN, |a| {
            a.u.evtchn.flags = KVM_XEN_EVTCHN_RESET;
        });
        let _ = kvm::set_hvm_attr(&self.vm, &a);
    }

    fn console_write(&self, text: &[u8]) {
        tracing::info!(target: "xen_console", "{}", String::from_utf8_lossy(text).trim_end());
    }
}

impl KvmPlatform {
    /// Has KVM raise guest port `to` on `vcpu` when the guest sends on `send_port` (`kind`:
    /// the sending port's `EVTCHNSTAT_*`; `flags`: 0 to add, `KVM_XEN_EVTCHN_UPDATE` to change).
    fn port_route(
        &self,
        kind: u32,
        send_port: u32,
        to: u32,
        vcpu: u32,
        flags: u32,
    ) -> std::io::Result<()> {
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_EVTCHN, |a| {
            a.u.evtchn.send_port = send_port;
            a.u.evtchn.type_ = kind;
            a.u.evtchn.flags = flags;
            a.u.evtchn.deliver.port.port = to;
            a.u.evtchn.deliver.port.vcpu = vcpu;
            a.u.evtchn.deliver.port.priority = kvm::EVTCHN_PRIO_2LEVEL;
        });
        kvm::set_hvm_attr(&self.vm, &a)
    }

    /// Lets KVM signal `kick` itself when the guest sends on `port` (an interdomain port
    /// bound to a backend), so the notification never leaves the kernel.
    pub(super) fn kick_in_kernel(&self, port: u32, kick: &vmm_sys_util::eventfd::EventFd) {
        use std::os::fd::AsRawFd;
        let a = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_EVTCHN, |a| {
            a.u.evtchn.send_port = port;
            a.u.evtchn.type_ = EVTCHNSTAT_INTERDOMAIN;
            a.u.evtchn.deliver.eventfd.port = 0;
            a.u.evtchn.deliver.eventfd.fd = kick.as_raw_fd();
        });
        if let Err(e) = kvm::set_hvm_attr(&self.vm, &a) {
            devices::debug_ratelimited!(5, port, error = %e, "in-kernel backend kick not set");
        }
    }
}

impl Notifier for KvmPlatform {
    fn deliver(&self, port: Port, vcpu: u32) {
        let _ = self.send_event(&|| kvm::evtchn_send(&self.vm, port, vcpu));
    }

    fn unmask(&self, port: Port, vcpu: u32) {
        let Some(gfn) = *self.shared_info.lock().unwrap_or_else(|e| e.into_inner()) else {
            return;
        };
        let word = u64::from(port / 64) * 8;
        let bit = 1u64 << (port % 64);
        let base = gfn << 12;
        self.update_word(base + SHINFO_MASK + word, |v| v & !bit);
        // Re-raise a pending event: clear its bit and let KVM set it again with the upcall.
        if let Some(old) = self.update_word(base + SHINFO_PENDING + word, |v| v & !bit) {
            if old & bit != 0 {
                self.deliver(port, vcpu);
            }
        }
    }
}
