//! A guest's hypercalls, decoded and answered.
//!
//! The VMM hands every intercepted hypercall to [`Hypervisor::hypercall`] with the calling
//! vCPU's view of memory ([`GuestVirt`]: arguments are guest-virtual addresses) and gets the
//! value for RAX back. Handlers validate every argument before acting and answer with Xen's
//! errors; anything they need from KVM (shared info, vcpu_info, timers, upcall vectors, memory
//! release) goes through the [`Platform`] trait, so each handler is unit-tested against
//! synthetic guest memory and a recording platform.

mod evtchn;
pub mod fuzz;
mod gnttab;
pub mod harness;
mod hvm;
mod memory;
mod misc;
mod sched;
#[cfg(test)]
mod tests;
mod vcpu;

use std::sync::Mutex;

use vm_memory::{ByteValued, GuestMemoryBackend};

use crate::abi::errno::Errno;
use crate::abi::features::Features;
use crate::abi::hvm::HVM_NR_PARAMS;
use crate::abi::hypercall as nr;
use crate::abi::sched::ShutdownReason;
use crate::abi::DomId;
use crate::evtchn::EventChannels;
use crate::gnttab::GrantTable;

pub use memory::E820Entry;

/// Memory as the calling vCPU sees it: guest-virtual addresses, translated through its page
/// tables. Every failure (unmapped address, not RAM) is `EFAULT`.
pub trait GuestVirt {
    /// Copies `buf.len()` bytes from guest-virtual `gva`.
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Copies `data` to guest-virtual `gva`.
    fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno>;
    /// The guest-physical address behind `gva` (for areas KVM keeps updating, like runstate).
    fn translate(&self, gva: u64) -> Result<u64, Errno>;
}

/// What hypercalls need from the VMM and KVM. Methods naming a vCPU may be called from
/// another vCPU's thread (Linux sets up secondary vCPUs from the boot CPU).
pub trait Platform: Send + Sync {
    /// Overlay the shared-info page at guest frame `gfn`.
    fn map_shared_info(&self, gfn: u64) -> Result<(), Errno>;
    /// Use the 64-byte `vcpu_info` at guest-physical `gpa` for `vcpu`.
    fn set_vcpu_info(&self, vcpu: u32, gpa: u64) -> Result<(), Errno>;
    /// Keep `vcpu`'s runstate at guest-physical `gpa` (`None`: stop).
    fn set_runstate_area(&self, vcpu: u32, gpa: Option<u64>) -> Result<(), Errno>;
    /// Deliver upcalls as IDT `vector` on whichever vCPU an event targets (0: none).
    fn set_callback_vector(&self, vector: u8) -> Result<(), Errno>;
    /// Deliver `vcpu`'s upcalls as its own LAPIC `vector` (`HVMOP_set_evtchn_upcall_vector`).
    fn set_vcpu_upcall_vector(&self, vcpu: u32, vector: u8) -> Result<(), Errno>;
    /// Run `vcpu`'s single-shot timer in the kernel, raising `port` (0: no timer).
    fn set_timer_port(&self, vcpu: u32, port: u32) -> Result<(), Errno>;
    /// Give the RAM page at `gfn` back to the host (ballooned out).
    fn release_page(&self, gfn: u64) -> Result<(), Errno>;
    /// Bring the page at `gfn` back (ballooned in); its contents are zero.
    fn populate_page(&self, gfn: u64) -> Result<(), Errno>;
    /// The guest asked for its domain to end (`SCHEDOP_shutdown`).
    fn shutdown(&self, reason: ShutdownReason);
    /// Text from `CONSOLEIO_write` (Xen's own console, which `xl dmesg` shows).
    fn console_write(&self, text: &[u8]);
    /// Guest port `port` became an IPI to `vcpu`: the VMM may let KVM deliver sends on it
    /// without leaving the kernel.
    fn ipi_bound(&self, _port: u32, _vcpu: u32) {}
    /// A send on guest port `send_port` may raise guest port `to` on `vcpu` in the kernel (the
    /// two ends of a channel within the guest); called again when `to` moves to another vCPU.
    fn route(&self, _send_port: u32, _to: u32, _vcpu: u32) {}
    /// Guest port `port` was closed: undo any in-kernel delivery for it.
    fn port_closed(&self, _port: u32) {}
    /// Every guest port was closed (`EVTCHNOP_reset`).
    fn ports_reset(&self) {}
}

/// Fixed facts about the domain, set by the toolstack.
#[derive(Clone, Debug)]
pub struct DomainInfo {
    /// The guest's domain id.
    pub domid: DomId,
    /// vCPUs the guest may have.
    pub max_vcpus: u32,
    /// Xen version reported (major, minor).
    pub version: (u16, u16),
    /// Feature bits for `XENVER_get_features`.
    pub features: Features,
    /// The guest's e820 map, for `XENMEM_memory_map`.
    pub e820: Vec<E820Entry>,
    /// Most RAM pages the guest may have (`maxmem`).
    pub max_pages: u64,
    /// Guest frames that are RAM the balloon may release and repopulate.
    pub ram: Vec<std::ops::Range<u64>>,
}

/// Per-domain state hypercalls change.
#[derive(Debug)]
struct State {
    params: [u64; HVM_NR_PARAMS as usize],
    /// RAM pages currently populated.
    pages: u64,
    /// Frames released by the balloon (so a double release is refused).
    released: std::collections::BTreeSet<u64>,
    shared_info: Option<u64>,
    /// The domain handle (the toolstack's UUID for it).
    handle: [u8; 16],
    /// A vCPU registered its own upcall vector (`HVMOP_set_evtchn_upcall_vector`).
    percpu_upcall: bool,
}

/// A domain's hypervisor: event channels, grant table, HVM parameters, memory accounting.
pub struct Hypervisor<M: GuestMemoryBackend> {
    info: DomainInfo,
    evtchn: EventChannels,
    gnttab: GrantTable<M>,
    platform: std::sync::Arc<dyn Platform>,
    state: Mutex<State>,
}

impl<M: GuestMemoryBackend> std::fmt::Debug for Hypervisor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hypervisor")
            .field("domid", &self.info.domid)
            .field("evtchn", &self.evtchn)
            .finish()
    }
}

/// Reads a `T` at guest-virtual `gva`.
pub(crate) fn read_obj<T: ByteValued + Default>(g: &dyn GuestVirt, gva: u64) -> Result<T, Errno> {
    let mut v = T::default();
    g.read(gva, v.as_mut_slice())?;
    Ok(v)
}

/// Writes `v` at guest-virtual `gva`.
pub(crate) fn write_obj<T: ByteValued>(g: &dyn GuestVirt, gva: u64, v: &T) -> Result<(), Errno> {
    g.write(gva, v.as_slice())
}

/// Converts a handler result to the RAX value: the result, or `-errno`.
fn ret(r: Result<i64, Errno>) -> i64 {
    match r {
        Ok(v) => v,
        Err(e) => -i64::from(e.0),
    }
}

impl<M: GuestMemoryBackend> Hypervisor<M> {
    /// A domain's hypervisor state with its event channels and grant table.
    pub fn new(
        info: DomainInfo,
        evtchn: EventChannels,
        gnttab: GrantTable<M>,
        platform: std::sync::Arc<dyn Platform>,
    ) -> Self {
        let pages = info.ram.iter().map(|r| r.end - r.start).sum();
        Hypervisor {
            info,
            evtchn,
            gnttab,
            platform,
            state: Mutex::new(State {
                params: [0; HVM_NR_PARAMS as usize],
                pages,
                released: Default::default(),
                shared_info: None,
                handle: [0; 16],
                percpu_upcall: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The domain's event channels.
    pub fn evtchn(&self) -> &EventChannels {
        &self.evtchn
    }

    /// The domain's grant table.
    pub fn gnttab(&self) -> &GrantTable<M> {
        &self.gnttab
    }

    /// The domain facts.
    pub fn info(&self) -> &DomainInfo {
        &self.info
    }

    /// Sets an HVM parameter as the toolstack (store and console rings, which the guest may
    /// only read). `EINVAL` for an index beyond `HVM_NR_PARAMS`.
    pub fn set_param(&self, index: u32, value: u64) -> Result<(), Errno> {
        let mut s = self.state();
        *s.params.get_mut(index as usize).ok_or(Errno::EINVAL)? = value;
        Ok(())
    }

    /// Sets the domain handle `XENVER_guest_handle` reports (the domain's UUID).
    pub fn set_handle(&self, handle: [u8; 16]) {
        self.state().handle = handle;
    }

    /// Reads an HVM parameter.
    pub fn param(&self, index: u32) -> Option<u64> {
        self.state().params.get(index as usize).copied()
    }

    /// Where the guest placed shared info, once it has.
    pub fn shared_info_gfn(&self) -> Option<u64> {
        self.state().shared_info
    }

    /// RAM pages the guest currently has (after ballooning).
    pub fn current_pages(&self) -> u64 {
        self.state().pages
    }

    /// Runs hypercall `nr` with `args` (RDI, RSI, RDX, R10, R8, R9) for vCPU `vcpu`, and
    /// returns what goes in RAX. Unknown hypercalls are `-ENOSYS`.
    pub fn hypercall(&self, vcpu: u32, mem: &dyn GuestVirt, nr: u32, args: [u64; 6]) -> i64 {
        let r = match nr {
            nr::xen_version => self.xen_version(mem, args[0] as u32, args[1]),
            nr::memory_op => self.memory_op(mem, args[0], args[1]),
            nr::hvm_op => self.hvm_op(mem, args[0] as u32, args[1]),
            nr::event_channel_op => self.event_channel_op(mem, args[0] as u32, args[1]),
            nr::grant_table_op => self.grant_table_op(mem, args[0] as u32, args[1], args[2]),
            nr::sched_op => self.sched_op(mem, args[0] as u32, args[1]),
            nr::vcpu_op => self.vcpu_op(mem, vcpu, args[0] as u32, args[1] as u32, args[2]),
            nr::console_io => self.console_io(mem, args[0] as u32, args[1], args[2]),
            nr::set_timer_op => Ok(0),
            _ => Err(Errno::ENOSYS),
        };
        if let Err(e) = r {
            tracing::debug!(
                vcpu,
                hypercall = nr::name(nr).unwrap_or("?"),
                nr,
                args = ?args,
                error = ?e,
                "hypercall failed"
            );
        }
        ret(r)
    }

    /// Checks a domain argument names the caller (`DOMID_SELF` or its own id): `ESRCH`
    /// otherwise, as Xen answers for a domain the caller may not act on.
    fn check_self(&self, dom: DomId) -> Result<(), Errno> {
        if dom == crate::abi::DOMID_SELF || dom == self.info.domid {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    fn check_vcpu(&self, vcpu: u32) -> Result<(), Errno> {
        if vcpu < self.info.max_vcpus {
            Ok(())
        } else {
            Err(Errno::ENOENT)
        }
    }
}
