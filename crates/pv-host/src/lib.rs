//! The narrow seam between a PV device backend (blkback, netback) and the domain it serves.
//!
//! A backend needs three things from the VMM: the guest's grant table (to map and copy the
//! pages the frontend granted), guest memory, and an event channel bound to the port the
//! frontend allocated. [`DomainHost`] gives exactly those, so backends are tested in-process
//! against synthetic guest memory and the VMM implements it over KVM.
#![deny(missing_docs)]

use std::io;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;
use xen::gnttab::GrantTable;

/// A backend's end of one event channel with the guest. Dropping it unbinds the channel, so a
/// reconnecting frontend can bind a fresh one.
pub trait EventPort: Send + Sync + std::fmt::Debug {
    /// Becomes readable (an eventfd counter) each time the guest sends on its port.
    fn kick(&self) -> &EventFd;
    /// Raises the guest's port.
    fn notify(&self);
}

/// What a backend may use of the domain it serves.
pub trait DomainHost: Send + Sync + std::fmt::Debug {
    /// The guest's domain id.
    fn domid(&self) -> u32;
    /// Guest memory, where the granted pages live.
    fn memory(&self) -> GuestMemoryMmap;
    /// The guest's grant table (backends act as the backend domain, dom0).
    fn grant_table(&self) -> GrantTable<GuestMemoryMmap>;
    /// Binds the guest's unbound port `guest_port` (allocated by the frontend for dom0).
    fn bind_port(&self, guest_port: u32) -> io::Result<Box<dyn EventPort>>;
}

/// An [`EventPort`] made of two eventfds, for tests and for backends in another process:
/// `kick` is signalled by the guest side, `call` is written to notify the guest.
#[derive(Debug)]
pub struct EventFdPort {
    /// Signalled when the guest sends.
    pub kick: EventFd,
    /// Written when the backend notifies.
    pub call: EventFd,
}

impl EventFdPort {
    /// A pair of fresh non-blocking eventfds.
    pub fn new() -> io::Result<EventFdPort> {
        Ok(EventFdPort {
            kick: EventFd::new(libc::EFD_NONBLOCK)?,
            call: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }
}

impl EventPort for EventFdPort {
    fn kick(&self) -> &EventFd {
        &self.kick
    }

    fn notify(&self) {
        let _ = self.call.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_port_notifies_through_call_and_hears_kick() {
        let p = EventFdPort::new().unwrap();
        p.notify();
        p.notify();
        assert_eq!(p.call.read().unwrap(), 2);
        assert!(
            p.kick().read().is_err(),
            "nothing kicked yet (non-blocking)"
        );
        p.kick.write(1).unwrap();
        assert_eq!(p.kick().read().unwrap(), 1);
    }
}
