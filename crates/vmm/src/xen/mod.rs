//! The Xen HVM interface on KVM: configures KVM's Xen support, answers the hypercalls KVM
//! hands to userspace through the `xen` crate's [`Hypervisor`], and gives the toolstack and
//! backends the domain's event channels and special pages (Xenstore and console rings).

mod guest_virt;
mod kvm;
mod link;
mod platform;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_xen_hvm_config, CpuId, KVM_EXIT_XEN_HCALL, KVM_XEN_ATTR_TYPE_LONG_MODE,
    KVM_XEN_ATTR_TYPE_XEN_VERSION, KVM_XEN_HVM_CONFIG_EVTCHN_SEND,
    KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL, KVM_XEN_HVM_CONFIG_SHARED_INFO,
    KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;
use xen::abi::cpuid::{
    XenCpuid, XEN_CPUID_FIRST_LEAF, XEN_HVM_CPUID_DOMID_PRESENT, XEN_HVM_CPUID_UPCALL_VECTOR,
    XEN_HVM_CPUID_VCPU_ID_PRESENT, XEN_HYPERCALL_MSR,
};
use xen::abi::errno::Errno;
use xen::abi::features::Features;
use xen::abi::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use xen::evtchn::{BackendHandle, BackendHandler, EventChannels, EvtchnConfig};
use xen::gnttab::{GnttabConfig, GrantTable};
use xen::hypercall::{DomainInfo, E820Entry, Hypervisor};

use vmm_sys_util::eventfd::EventFd;

use crate::control::Control;
use crate::memory::GuestRam;
use crate::{Error, Result, VmEvent};
use platform::KvmPlatform;

pub use guest_virt::VcpuMemory;

/// The Xen version guests are told (4.17: what Linux and the Xen tools know best).
pub const XEN_VERSION: (u16, u16) = (4, 17);

/// KVM Xen features Oxen cannot do without.
const REQUIRED_CAPS: u32 = KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL
    | KVM_XEN_HVM_CONFIG_SHARED_INFO
    | KVM_XEN_HVM_CONFIG_EVTCHN_SEND;

/// Xen settings of a domain.
#[derive(Debug, Clone)]
pub struct XenOptions {
    /// The domain id the guest is told and Xenstore knows it by.
    pub domid: u16,
    /// The domain handle (its UUID's 16 bytes).
    pub handle: [u8; 16],
}

/// A PV backend's end of an event channel with the guest (see [`XenDomain::backend_port`]).
pub struct BackendPort {
    handle: Option<BackendHandle>,
    guest_port: u32,
    kick: EventFd,
    platform: Arc<KvmPlatform>,
}

impl std::fmt::Debug for BackendPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendPort")
            .field("guest_port", &self.guest_port)
            .finish()
    }
}

impl BackendPort {
    /// Signalled (counter) each time the guest sends on its port.
    pub fn kick(&self) -> &EventFd {
        &self.kick
    }

    /// Raises the guest's port.
    pub fn notify(&self) {
        if let Some(h) = &self.handle {
            let _ = h.notify();
        }
    }

    /// The guest's port number.
    pub fn guest_port(&self) -> u32 {
        self.guest_port
    }
}

impl Drop for BackendPort {
    fn drop(&mut self) {
        // Take the in-kernel route away first, so no send reaches a closed backend.
        use xen::hypercall::Platform;
        self.platform.port_closed(self.guest_port);
        if let Some(h) = self.handle.take() {
            let _ = h.close();
        }
    }
}

/// A domain's Xen interface.
pub struct XenDomain {
    hv: Hypervisor<GuestMemoryMmap>,
    ram: Arc<GuestRam>,
    store_port: u32,
    console_port: u32,
    /// Backend ends the VMM keeps (console, store links) so they stay bound.
    backends: Mutex<Vec<Arc<BackendHandle>>>,
    /// Set when the domain ends: helper threads stop.
    closing: Arc<AtomicBool>,
    platform: Arc<KvmPlatform>,
}

impl std::fmt::Debug for XenDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomain")
            .field("domid", &self.hv.info().domid)
            .finish()
    }
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Os { what, source }
}

/// Checks that KVM can run Xen guests, with an error that says what is missing.
pub fn check_support(kvm: &Kvm) -> Result<()> {
    let caps = kvm.check_extension_raw(kvm::KVM_CAP_XEN_HVM as u64) as u32;
    if caps & REQUIRED_CAPS != REQUIRED_CAPS {
        return Err(Error::NoKvm(format!(
            "this host's KVM cannot run Xen HVM guests (KVM_CAP_XEN_HVM reports {caps:#x}, \
             needs {REQUIRED_CAPS:#x}): use Linux 5.19 or later built with CONFIG_KVM_XEN=y"
        )));
    }
    Ok(())
}

/// Replaces the hypervisor leaves of `cpuid` with Xen's for vCPU `vcpu`. KVM's own leaves go:
/// Linux picks the hypervisor whose signature scores highest, and KVM's would win.
pub fn patch_cpuid(cpuid: &CpuId, vcpu: u32, domid: u16) -> Result<CpuId> {
    let mut entries: Vec<kvm_cpuid_entry2> = cpuid
        .as_slice()
        .iter()
        .filter(|e| !(0x4000_0000..0x4001_0000).contains(&e.function))
        .copied()
        .collect();
    let xen = XenCpuid {
        base: XEN_CPUID_FIRST_LEAF,
        major: XEN_VERSION.0,
        minor: XEN_VERSION.1,
        // Per-vCPU upcall vectors go through the LAPIC. The global callback vector is injected
        // ExtINT-style, which nested SVM (the test host) delivered with IF=0 under event load:
        // a recursive #PF on %gs in the guest.
        hvm_flags: XEN_HVM_CPUID_VCPU_ID_PRESENT
            | XEN_HVM_CPUID_DOMID_PRESENT
            | XEN_HVM_CPUID_UPCALL_VECTOR,
        domid,
    };
    for (function, index, r) in xen.leaves(vcpu) {
        entries.push(kvm_cpuid_entry2 {
            function,
            index,
            flags: if index != 0 {
                kvm_bindings::KVM_CPUID_FLAG_SIGNIFCANT_INDEX
            } else {
                0
            },
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
            ..Default::default()
        });
    }
    CpuId::from_entries(&entries)
        .map_err(|e| Error::Limits(format!("CPUID table with Xen leaves: {e:?}")))
}

impl XenDomain {
    /// Turns on KVM's Xen support for `vm` and builds the domain's hypervisor state; the
    /// Xenstore and console ports are allocated for dom0 and published as HVM parameters.
    pub(crate) fn setup(
        vm: &VmFd,
        ram: Arc<GuestRam>,
        controls: Vec<Arc<Control>>,
        events: Sender<VmEvent>,
        opts: &XenOptions,
        max_vcpus: u32,
    ) -> Result<Arc<XenDomain>> {
        let cfg = kvm_xen_hvm_config {
            flags: KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL | KVM_XEN_HVM_CONFIG_EVTCHN_SEND,
            msr: XEN_HYPERCALL_MSR,
            ..Default::default()
        };
        kvm::hvm_config(vm, &cfg).map_err(os("KVM_XEN_HVM_CONFIG"))?;
        let version = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_XEN_VERSION, |a| {
            a.u.xen_version = xen::abi::version::encode_version(XEN_VERSION.0, XEN_VERSION.1)
        });
        kvm::set_hvm_attr(vm, &version).map_err(os("KVM_XEN_HVM_SET_ATTR(xen version)"))?;
        let long_mode = kvm::hvm_attr(KVM_XEN_ATTR_TYPE_LONG_MODE, |a| a.u.long_mode = 1);
        kvm::set_hvm_attr(vm, &long_mode).map_err(os("KVM_XEN_HVM_SET_ATTR(long mode)"))?;

        // SAFETY: dup of a descriptor we own; the File owns the copy.
        let vm_dup = unsafe { libc::dup(vm.as_raw_fd()) };
        if vm_dup < 0 {
            return Err(os("dup of the VM fd")(std::io::Error::last_os_error()));
        }
        // SAFETY: `vm_dup` is a fresh descriptor nothing else owns.
        let vm_file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(vm_dup) };
        let platform = Arc::new(KvmPlatform::new(vm_file, ram.clone(), controls, events));

        let domid = opts.domid;
        let evtchn = EventChannels::new(EvtchnConfig::new(domid, max_vcpus), platform.clone())
            .map_err(|e| Error::Limits(format!("event channels: {e}")))?;
        let mut gcfg = GnttabConfig::new(domid);
        gcfg.max_frames = (arch::layout::XEN_GRANT_LEN >> 12) as u32 / 2;
        let gnttab = GrantTable::new(gcfg, ram.mem.clone())
            .map_err(|e| Error::Limits(format!("grant table: {e}")))?;

        let mem_bytes = ram.size();
        let e820 = arch::layout::e820_map(mem_bytes)
            .into_iter()
            .map(|(addr, size, kind)| E820Entry {
                addr,
                size,
                kind: kind as u32,
            })
            .collect();
        let ram_frames = arch::layout::ram_regions(mem_bytes)
            .into_iter()
            .map(|(start, len)| (start.0 >> 12)..((start.0 + len) >> 12))
            .collect();
        let info = DomainInfo {
            domid,
            max_vcpus,
            version: XEN_VERSION,
            features: Features::hvm_guest(),
            e820,
            max_pages: mem_bytes >> 12,
            ram: ram_frames,
        };
        let hv = Hypervisor::new(info, evtchn, gnttab, platform.clone());
        hv.set_handle(opts.handle);
        let store_port = hv
            .evtchn()
            .host_alloc_unbound(0)
            .map_err(|e| Error::Limits(format!("allocating the Xenstore port: {e:?}")))?;
        let console_port = hv
            .evtchn()
            .host_alloc_unbound(0)
            .map_err(|e| Error::Limits(format!("allocating the console port: {e:?}")))?;
        for (index, value) in [
            (HVM_PARAM_STORE_PFN, arch::layout::XEN_STORE_PAGE >> 12),
            (HVM_PARAM_STORE_EVTCHN, u64::from(store_port)),
            (HVM_PARAM_CONSOLE_PFN, arch::layout::XEN_CONSOLE_PAGE >> 12),
            (HVM_PARAM_CONSOLE_EVTCHN, u64::from(console_port)),
        ] {
            hv.set_param(index, value)
                .map_err(|e| Error::Limits(format!("HVM param {index}: {e:?}")))?;
        }
        Ok(Arc::new(XenDomain {
            hv,
            ram,
            store_port,
            console_port,
            backends: Mutex::new(Vec::new()),
            closing: Arc::default(),
            platform,
        }))
    }

    /// Per-vCPU setup before the vCPU first runs: its Xen vCPU id, which KVM checks the
    /// in-kernel timer hypercalls against (it does not default to the vCPU's index).
    pub(crate) fn setup_vcpu(vcpu: &VcpuFd, id: u32) -> Result<()> {
        let a = kvm::vcpu_attr(KVM_XEN_VCPU_ATTR_TYPE_VCPU_ID, |a| a.u.vcpu_id = id);
        kvm::set_vcpu_attr(vcpu, &a).map_err(os("KVM_XEN_VCPU_SET_ATTR(vcpu id)"))
    }

    /// Handles a `KVM_EXIT_XEN` on vCPU `id`.
    pub(crate) fn handle_exit(&self, vcpu: &mut VcpuFd, id: u32) {
        // SAFETY: KVM filled the `xen` member of the exit union for this exit reason.
        let exit = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.xen };
        if exit.type_ != KVM_EXIT_XEN_HCALL {
            devices::warn_ratelimited!(5, vcpu = id, kind = exit.type_, "unknown Xen exit");
            return;
        }
        // SAFETY: `hcall` is the member for KVM_EXIT_XEN_HCALL.
        let h = unsafe { exit.u.hcall };
        let result = if h.cpl != 0 {
            // Xen refuses hypercalls from user mode of HVM guests.
            -i64::from(Errno::EPERM.0)
        } else if h.longmode == 0 {
            devices::warn_ratelimited!(5, vcpu = id, "hypercall from a 32-bit guest");
            -i64::from(Errno::ENOSYS.0)
        } else {
            let mem = VcpuMemory::new(vcpu, &self.ram.mem);
            self.hv.hypercall(id, &mem, h.input as u32, h.params)
        };
        // Writing a union field is safe; KVM copies `result` to RAX when the vCPU re-enters.
        vcpu.get_kvm_run().__bindgen_anon_1.xen.u.hcall.result = result as u64;
    }

    /// Serves the Xenstore ring to a Xenstore daemon in another process on `path` (see
    /// [`backend_link`]); nothing else is offered.
    pub fn serve_store_link(
        self: &Arc<Self>,
        path: &std::path::Path,
    ) -> std::io::Result<backend_link::LinkServer> {
        let allowed = vec![self.store_ring()];
        backend_link::LinkServer::start(
            path,
            Arc::new(link::DomainLink::new(self.clone(), allowed)),
        )
    }

    /// Binds a backend to the guest's unbound `guest_port` whose guest-to-backend
    /// notifications signal `kick` (in the kernel, without a hypercall exit, where KVM can).
    /// Returns the function that notifies the guest.
    pub fn bind_kick(
        &self,
        guest_port: u32,
        kick: &EventFd,
    ) -> std::io::Result<Arc<dyn Fn() + Send + Sync>> {
        let kick_in = kick.try_clone()?;
        let notify = self
            .bind_backend(
                guest_port,
                Arc::new(move |_| {
                    let _ = kick_in.write(1);
                }),
            )
            .map_err(|e| std::io::Error::other(format!("binding port {guest_port}: {e:?}")))?;
        self.platform.kick_in_kernel(guest_port, kick);
        Ok(notify)
    }

    /// Connects an in-process backend to the guest's unbound `guest_port`: returns
    /// `(kick, call)` eventfds like a remote backend gets (kick: the guest notified; write
    /// call: notify the guest).
    pub fn backend_eventfds(&self, guest_port: u32) -> std::io::Result<(EventFd, EventFd)> {
        let kick = EventFd::new(libc::EFD_NONBLOCK)?;
        let call = EventFd::new(libc::EFD_NONBLOCK)?;
        let notify = self.bind_kick(guest_port, &kick)?;
        link::forward_calls(call.try_clone()?, notify, self.closing.clone());
        Ok((kick, call))
    }

    /// Connects a PV backend in this process to the guest's unbound `guest_port` for as long as
    /// the returned [`BackendPort`] lives: the guest's sends signal its `kick` eventfd (inside
    /// KVM where it can), [`BackendPort::notify`] raises the guest's port, and dropping it
    /// closes the backend end so a reconnecting frontend can bind again.
    pub fn backend_port(&self, guest_port: u32) -> std::io::Result<BackendPort> {
        let kick = EventFd::new(libc::EFD_NONBLOCK)?;
        let kick_in = kick.try_clone()?;
        let handle = self
            .hv
            .evtchn()
            .backend_bind(
                guest_port,
                Arc::new(move |_| {
                    let _ = kick_in.write(1);
                }),
            )
            .map_err(|e| std::io::Error::other(format!("binding guest port {guest_port}: {e}")))?;
        self.platform.kick_in_kernel(guest_port, &kick);
        Ok(BackendPort {
            handle: Some(handle),
            guest_port,
            kick,
            platform: self.platform.clone(),
        })
    }

    /// The domain's grant table, for backends that map or copy granted pages.
    pub fn grant_table(&self) -> GrantTable<GuestMemoryMmap> {
        self.hv.gnttab().clone()
    }

    /// Stops the helper threads (the domain is ending).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// The domain's hypervisor state.
    pub fn hypervisor(&self) -> &Hypervisor<GuestMemoryMmap> {
        &self.hv
    }

    /// The Xenstore ring: guest frame and the guest's port (unbound, waiting for dom0).
    pub fn store_ring(&self) -> (u64, u32) {
        (arch::layout::XEN_STORE_PAGE >> 12, self.store_port)
    }

    /// The PV console ring: guest frame and the guest's port.
    pub fn console_ring(&self) -> (u64, u32) {
        (arch::layout::XEN_CONSOLE_PAGE >> 12, self.console_port)
    }

    /// Guest memory (RAM and the special pages).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.ram.mem
    }

    /// Binds a backend in the VMM to the guest's unbound `guest_port`; `handler` hears the
    /// guest's notifications. Returns a handle that notifies the guest; the binding lasts as
    /// long as the domain.
    pub fn bind_backend(
        &self,
        guest_port: u32,
        handler: Arc<dyn BackendHandler>,
    ) -> std::result::Result<Arc<dyn Fn() + Send + Sync>, Errno> {
        let h = Arc::new(self.hv.evtchn().backend_bind(guest_port, handler)?);
        self.backends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(h.clone());
        Ok(Arc::new(move || {
            let _ = h.notify();
        }))
    }
}

impl pv_host::EventPort for BackendPort {
    fn kick(&self) -> &EventFd {
        &self.kick
    }

    fn notify(&self) {
        BackendPort::notify(self)
    }
}

impl pv_host::DomainHost for XenDomain {
    fn domid(&self) -> u32 {
        u32::from(self.hv.info().domid)
    }

    fn memory(&self) -> GuestMemoryMmap {
        self.ram.mem.clone()
    }

    fn grant_table(&self) -> GrantTable<GuestMemoryMmap> {
        XenDomain::grant_table(self)
    }

    fn bind_port(&self, guest_port: u32) -> std::io::Result<Box<dyn pv_host::EventPort>> {
        Ok(Box::new(self.backend_port(guest_port)?))
    }
}
