//! The back end's xenbus state machine, apart from Xenstore: it looks at what the store says
//! ([`Observed`]) and acts through [`Effects`]. Every step is idempotent, so it can run on
//! every watch event, whichever node fired.

use std::time::Instant;

use crate::driver::ClosedPolicy;
use crate::id::XenbusState::{self, *};
use crate::xs::NodeState;

/// What the store says about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The back end's directory exists.
    pub backend_dir: bool,
    /// `online` is 1 (the toolstack wants the device kept).
    pub online: bool,
    /// The back end's `state` node.
    pub backend: NodeState,
    /// The frontend's `state` node.
    pub frontend: NodeState,
}

/// Which device nodes to write with a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nodes {
    None,
    /// [`crate::Driver::advertise`]'s.
    Advertised,
    /// [`crate::Driver::connected_nodes`].
    Connected,
}

/// What the machine does to the world.
pub(crate) trait Effects {
    /// Writes `nodes` then `state` in one transaction, only while the back end's `state` node
    /// exists (a removed device is not brought back). Whether it was written.
    fn publish(&mut self, nodes: Nodes, state: Option<XenbusState>) -> bool;
    /// Reads the frontend's nodes and connects the driver.
    fn connect(&mut self) -> Result<(), String>;
    /// Disconnects the driver.
    fn disconnect(&mut self);
    /// Writes a fatal error's message to the error node.
    fn report_error(&mut self, msg: &str);
}

/// Whether the back end goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The device is gone or was removed: the thread ends.
    Exit,
}

#[derive(Debug)]
pub(crate) struct Machine {
    policy: ClosedPolicy,
    /// The back end's state as last written (or found); `None` before the first step.
    state: Option<XenbusState>,
    /// The driver is connected.
    serving: bool,
    /// The last connect failed; cleared when the frontend starts over (Initialising).
    failed: bool,
    /// Connected is shown for a Closed frontend ([`ClosedPolicy::ParkConnected`]).
    parked: bool,
    /// When to park, while the frontend stays Closed.
    park_at: Option<Instant>,
    now: Instant,
}

impl Machine {
    pub fn new(policy: ClosedPolicy) -> Self {
        Machine {
            policy,
            state: None,
            serving: false,
            failed: false,
            parked: false,
            park_at: None,
            now: Instant::now(),
        }
    }

    /// The back end's state as the machine last set it.
    pub fn state(&self) -> XenbusState {
        self.state.unwrap_or(Unknown)
    }

    /// Whether the driver is connected.
    pub fn serving(&self) -> bool {
        self.serving
    }

    /// When the machine wants a step without any event.
    pub fn deadline(&self) -> Option<Instant> {
        self.park_at
    }

    /// Reacts to the store's current state.
    pub fn step(&mut self, obs: &Observed, now: Instant, fx: &mut impl Effects) -> Flow {
        self.now = now;
        if !obs.backend_dir {
            self.stop(fx);
            return Flow::Exit;
        }
        self.follow_backend_node(obs.backend, fx);
        let online = obs.online;
        if matches!(self.state(), Unknown | Initialising) && online {
            self.set(InitWait, Nodes::Advertised, fx);
        }
        if !matches!(obs.frontend, NodeState::State(Closed)) {
            self.park_at = None;
        }
        match obs.frontend {
            NodeState::Missing | NodeState::State(Unknown) => {
                // The guest removed its directory (or state): drop the rings; a frontend may
                // be created there again.
                self.stop(fx);
                if !online {
                    return Flow::Exit;
                }
                if matches!(self.state(), Initialised | Connected) {
                    self.parked = false;
                    self.set(Closed, Nodes::None, fx);
                }
            }
            NodeState::Garbage | NodeState::State(InitWait | Reconfiguring | Reconfigured) => {
                tracing::debug!(frontend = ?obs.frontend, "ignoring the frontend's state");
            }
            NodeState::State(Initialising) => self.frontend_initialising(online, fx),
            NodeState::State(Initialised | Connected) => self.frontend_ready(online, fx),
            NodeState::State(Closing) => {
                self.stop(fx);
                self.parked = false;
                if !matches!(self.state(), Closing | Closed) {
                    self.set(Closing, Nodes::None, fx);
                }
            }
            NodeState::State(Closed) => return self.frontend_closed(online, fx),
        }
        Flow::Continue
    }

    /// Stops the device for good (the handle was closed): Closing then Closed.
    pub fn shutdown(&mut self, fx: &mut impl Effects) {
        self.stop(fx);
        if self.state != Some(Closed) {
            self.set(Closing, Nodes::None, fx);
            self.set(Closed, Nodes::None, fx);
        }
    }

    /// Someone else (the toolstack) wrote the back end's state: follow it.
    fn follow_backend_node(&mut self, node: NodeState, fx: &mut impl Effects) {
        let NodeState::State(s) = node else { return };
        if self.state == Some(s) {
            return;
        }
        if self.state.is_some() {
            tracing::debug!(from = ?self.state, to = ?s, "back-end state set by another writer");
        }
        if matches!(s, Unknown | Initialising) {
            // Re-created: start over.
            self.stop(fx);
            self.failed = false;
        }
        self.state = Some(s);
        self.parked = false;
    }

    fn frontend_initialising(&mut self, online: bool, fx: &mut impl Effects) {
        match self.state() {
            // Closing was asked (by us after an error, or by the toolstack): see it through.
            Closing => {}
            Closed if !online => {}
            InitWait => {}
            _ => {
                // A frontend starting over (netfront bound again, kexec reset): offer the
                // device again.
                self.stop(fx);
                self.failed = false;
                self.parked = false;
                self.set(InitWait, Nodes::Advertised, fx);
            }
        }
    }

    fn frontend_ready(&mut self, online: bool, fx: &mut impl Effects) {
        if self.serving {
            return;
        }
        let may = match self.state() {
            InitWait | Connected => true,
            Closed => online && !self.failed,
            _ => false,
        };
        if !may {
            return;
        }
        match fx.connect() {
            Ok(()) => {
                self.serving = true;
                self.parked = false;
                // Already Connected (parked): writing it again would make blkfront re-read
                // its capacity for nothing.
                if self.state() != Connected {
                    self.set(Connected, Nodes::Connected, fx);
                }
            }
            Err(msg) => {
                tracing::debug!(error = %msg, "connect failed");
                self.failed = true;
                self.parked = false;
                fx.report_error(&msg);
                self.set(Closing, Nodes::None, fx);
            }
        }
    }

    fn frontend_closed(&mut self, online: bool, fx: &mut impl Effects) -> Flow {
        self.stop(fx);
        if !(self.parked && online) && self.state() != Closed {
            self.parked = false;
            self.set(Closed, Nodes::None, fx);
        }
        if !online {
            return Flow::Exit;
        }
        if let ClosedPolicy::ParkConnected { after } = self.policy {
            if self.state() == Closed && !self.failed {
                let at = *self.park_at.get_or_insert(self.now + after);
                if self.now >= at && self.set(Connected, Nodes::Connected, fx) {
                    self.parked = true;
                    self.park_at = None;
                }
            }
        }
        Flow::Continue
    }

    fn stop(&mut self, fx: &mut impl Effects) {
        if self.serving {
            self.serving = false;
            fx.disconnect();
        }
    }

    fn set(&mut self, s: XenbusState, nodes: Nodes, fx: &mut impl Effects) -> bool {
        let ok = fx.publish(nodes, Some(s));
        if ok {
            self.state = Some(s);
        }
        ok
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
