//! What a device (blkback, netback, ...) provides to the xenbus machine.

use std::time::Duration;

use crate::frontend::FrontendInfo;

/// A device's side of the negotiation. Every call comes from the device's back-end thread.
pub trait Driver: Send {
    /// Nodes written in the back end's directory just before InitWait, e.g. `feature-*`,
    /// `max-ring-page-order`, `multi-queue-max-queues` (names relative to the back end's
    /// directory). Called again whenever the device goes back to InitWait.
    fn advertise(&mut self) -> Vec<(String, String)>;

    /// The frontend is Initialised or Connected: read its ring references, event channels and
    /// protocol from `frontend`, map the rings and start serving. The frontend may already have
    /// queued requests and notified before this runs (Linux's blkfront does when it reconnects
    /// to a back end that shows Connected), so look at the rings once after mapping them.
    ///
    /// On error nothing must be left mapped: the message is written to the back end's error
    /// node ([`crate::DeviceId::error_path`]) and the back end switches to Closing, as
    /// `xenbus_dev_fatal` does. [`Driver::disconnect`] is not called for a failed connect.
    fn connect(&mut self, frontend: &FrontendInfo) -> Result<(), String>;

    /// Stop serving and unmap the rings. Called once after each successful connect, when the
    /// frontend closes or disappears, the device is removed or the back end is closed.
    fn disconnect(&mut self);

    /// Nodes written just before the back end switches to Connected, e.g. `sectors`, `info`,
    /// `sector-size` of a disk (names relative to the back end's directory).
    fn connected_nodes(&mut self) -> Vec<(String, String)>;

    /// What to show while the frontend is Closed and the device stays online; `None` (the
    /// default) picks [`ClosedPolicy::for_kind`].
    fn closed_policy(&self) -> Option<ClosedPolicy> {
        None
    }
}

impl<D: Driver + ?Sized> Driver for Box<D> {
    fn advertise(&mut self) -> Vec<(String, String)> {
        (**self).advertise()
    }
    fn connect(&mut self, frontend: &FrontendInfo) -> Result<(), String> {
        (**self).connect(frontend)
    }
    fn disconnect(&mut self) {
        (**self).disconnect()
    }
    fn connected_nodes(&mut self) -> Vec<(String, String)> {
        (**self).connected_nodes()
    }
    fn closed_policy(&self) -> Option<ClosedPolicy> {
        (**self).closed_policy()
    }
}

/// How a back end waits for a frontend that closed while the device stays online (its
/// driver was unbound or unloaded, or the guest is rebooting with kexec). See the crate
/// documentation for what Linux's frontends need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedPolicy {
    /// Stay Closed until the frontend writes Initialising, then go back to InitWait (what
    /// Linux's netback and QEMU do). Enough for netfront, which writes Initialising when
    /// bound again, and for the kexec reset; required for netfront, whose unbind waits for
    /// the back end to stay Closed.
    AwaitInitialising,
    /// As [`ClosedPolicy::AwaitInitialising`], and once the frontend has stayed Closed for
    /// `after`, show Connected again (with the connected nodes) without serving: a blkfront
    /// bound again writes nothing and acts only on a back end that is Connected, by writing its
    /// rings (Initialised) and then Connected.
    ParkConnected {
        /// How long the frontend must stay Closed first (the kexec reset writes Initialising
        /// right after seeing Closed, and is not disturbed).
        after: Duration,
    },
}

impl ClosedPolicy {
    /// The delay of [`ClosedPolicy::for_kind`]'s parking.
    pub const PARK_DELAY: Duration = Duration::from_secs(1);

    /// What Linux's frontend of this device class needs: parking for `vbd` (blkfront),
    /// waiting for Initialising for the others (netfront).
    pub fn for_kind(kind: &str) -> Self {
        match kind {
            "vbd" => ClosedPolicy::ParkConnected {
                after: Self::PARK_DELAY,
            },
            _ => ClosedPolicy::AwaitInitialising,
        }
    }
}
