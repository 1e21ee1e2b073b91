//! The narrow seam between a PV device backend (blkback, netback) and the domain it serves.
//!
//! A backend needs three things from the VMM: the guest's grant table (to map and copy the
//! pages the frontend granted), guest memory, and an event channel bound to the port the
//! frontend allocated. [`DomainHost`] gives exactly those, so backends are tested in-process
//! against synthetic guest memory and the VMM implements it over KVM.
#![deny(missing_docs)]

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

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

/// Blocks until one of `fds` is readable (negative entries are ignored) or `timeout` passes,
/// and says which are: the wait of every backend queue thread (guest kick, stop, tap).
/// A timeout or a signal gives all `false`; only a failing `poll` is an error.
pub fn wait_readable<const N: usize>(
    fds: &[RawFd; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.map_or(-1, |t| {
        // Round up, so that a timer is never polled early in a loop.
        (t.as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
    });
    // SAFETY: `p` is an array of N valid pollfds for the duration of the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok([false; N])
        } else {
            Err(e)
        };
    }
    Ok(p.map(|p| n > 0 && p.revents != 0))
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

    #[test]
    fn wait_readable_reports_which_fds_are_ready() {
        use std::os::fd::AsRawFd;
        let p = EventFdPort::new().unwrap();
        let fds = [p.kick.as_raw_fd(), -1, p.call.as_raw_fd()];
        let none = wait_readable(&fds, Some(Duration::from_millis(1))).unwrap();
        assert_eq!(none, [false; 3], "timeout");
        p.notify();
        let ready = wait_readable(&fds, None).unwrap();
        assert_eq!(ready, [false, false, true]);
    }
}
