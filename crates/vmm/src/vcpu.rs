//! vCPU threads: each runs KVM_RUN in a loop and hands port I/O to the bus. Exits that end the
//! domain (triple fault, failed entry, internal error) become [`VmEvent`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use devices::bus::IoBus;
use devices::warn_ratelimited;
use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::control::Control;
use crate::xen::XenDomain;
use crate::VmEvent;

/// Signal used to kick a vCPU thread out of KVM_RUN.
pub(crate) fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

/// Installs a do-nothing handler for the kick signal, so that it interrupts KVM_RUN with EINTR
/// instead of killing the process.
pub(crate) fn install_kick_handler() -> std::io::Result<()> {
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    vmm_sys_util::signal::register_signal_handler(kick_signal(), noop)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// What a vCPU thread hands its exits to.
pub(crate) struct Exits {
    /// Port I/O.
    pub bus: Arc<IoBus>,
    /// Work other threads queue for this vCPU.
    pub control: Arc<Control>,
    /// Hypercalls, for a Xen guest.
    pub xen: Option<Arc<XenDomain>>,
}

/// Runs `vcpu` until `stop` is set or the guest ends the domain.
pub(crate) fn run(
    id: u32,
    mut vcpu: VcpuFd,
    exits: Exits,
    stop: Arc<AtomicBool>,
    events: impl Fn(VmEvent),
) {
    exits.control.register(&mut vcpu);
    run_loop(id, &mut vcpu, &exits, &stop, events);
    // Before the VcpuFd (and its kvm_run mapping) goes away.
    exits.control.unregister();
}

fn run_loop(
    id: u32,
    vcpu: &mut VcpuFd,
    exits: &Exits,
    stop: &AtomicBool,
    events: impl Fn(VmEvent),
) {
    let bus = &exits.bus;
    while !stop.load(Ordering::Acquire) {
        exits.control.drain(vcpu);
        let mut xen_exit = false;
        match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => bus.read(port, data),
            Ok(VcpuExit::IoOut(port, data)) => bus.write(port, data),
            Ok(VcpuExit::MmioRead(addr, data)) => {
                data.fill(0xff);
                warn_ratelimited!(
                    5,
                    vcpu = id,
                    addr = format_args!("{addr:#x}"),
                    "read of unclaimed MMIO"
                );
            }
            Ok(VcpuExit::MmioWrite(addr, _)) => {
                warn_ratelimited!(
                    5,
                    vcpu = id,
                    addr = format_args!("{addr:#x}"),
                    "write to unclaimed MMIO"
                );
            }
            Ok(VcpuExit::Shutdown) => {
                // A triple fault: PCs reset, and so does Xen for HVM guests by default.
                events(VmEvent::Reset);
                return;
            }
            Ok(VcpuExit::Hlt) => {
                // Only reached without an in-kernel LAPIC; nothing to wake us but a kick.
                std::thread::yield_now();
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                events(match kind {
                    kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => VmEvent::Poweroff,
                    kvm_bindings::KVM_SYSTEM_EVENT_RESET => VmEvent::Reset,
                    kvm_bindings::KVM_SYSTEM_EVENT_CRASH => {
                        VmEvent::Crash(format!("vCPU {id}: guest crash event"))
                    }
                    other => VmEvent::Crash(format!("vCPU {id}: unexpected system event {other}")),
                });
                return;
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                events(VmEvent::Crash(format!("vCPU {id}: KVM failed to enter the guest (reason {reason:#x} on host CPU {cpu})")));
                return;
            }
            Ok(VcpuExit::InternalError) => {
                events(VmEvent::Crash(format!("vCPU {id}: KVM internal error")));
                return;
            }
            Ok(VcpuExit::Unsupported(kvm_bindings::KVM_EXIT_XEN)) if exits.xen.is_some() => {
                xen_exit = true;
            }
            Ok(other) => {
                warn_ratelimited!(5, vcpu = id, exit = ?other, "unhandled vCPU exit");
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
            Err(e) => {
                events(VmEvent::Crash(format!("vCPU {id}: KVM_RUN failed: {e}")));
                return;
            }
        }
        if xen_exit {
            if let Some(x) = &exits.xen {
                x.handle_exit(vcpu, id);
            }
        }
    }
}
