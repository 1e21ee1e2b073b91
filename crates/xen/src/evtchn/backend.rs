//! A device backend's owned event-channel port.

use super::table::Side;
use super::EventChannels;
use crate::abi::errno::Errno;
use crate::abi::evtchn::Port;

/// A backend's port. Dropping it closes the port; the guest's end falls back to unbound.
#[derive(Debug)]
pub struct BackendHandle {
    chans: EventChannels,
    port: Port,
    closed: bool,
}

impl BackendHandle {
    pub(super) fn new(chans: EventChannels, port: Port) -> BackendHandle {
        BackendHandle {
            chans,
            port,
            closed: false,
        }
    }

    /// The backend-side port number.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The guest port this one is connected to, if the guest has bound it.
    pub fn guest_port(&self) -> Option<Port> {
        let t = self.chans.lock();
        match t.backend.get(self.port).map(|c| &c.state) {
            Some(super::table::State::Interdomain {
                side: Side::Guest,
                port,
            }) => Some(*port),
            _ => None,
        }
    }

    /// Sends an event to the guest (dropped, as in Xen, while the guest has not bound it).
    pub fn notify(&self) -> Result<(), Errno> {
        let d = self.chans.lock().send(Side::Backend, self.port)?;
        if let Some(d) = d {
            self.chans.run(d);
        }
        Ok(())
    }

    /// Closes the port now rather than on drop.
    pub fn close(mut self) -> Result<(), Errno> {
        self.closed = true;
        self.chans.lock().close(Side::Backend, self.port)
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.chans.lock().close(Side::Backend, self.port) {
                tracing::warn!(port = self.port, error = %e, "evtchn: closing backend port");
            }
        }
    }
}
