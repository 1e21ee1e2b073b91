//! One thread per device: watches the back end's `state` and `online` and the frontend's
//! `state`, and runs the [`Machine`] on every event with the device's [`Driver`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xenstore::client::{Client, ClientError};

use crate::driver::{ClosedPolicy, Driver};
use crate::frontend::FrontendInfo;
use crate::id::{DeviceId, XenbusState};
use crate::machine::{Effects, Flow, Machine, Nodes, Observed};
use crate::xs::{self, NodeState};
use crate::Error;

/// How long the thread waits for an event before looking at its stop flag.
const POLL: Duration = Duration::from_millis(50);
/// Pause between attempts to reach a restarting Xenstore.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// The token of the back end's watches.
const TOKEN: &str = "xenbus-backend";

/// Starts device back ends.
#[derive(Debug)]
pub struct Backend;

/// What the thread shares with its handle.
#[derive(Debug, Default)]
struct Status {
    state: AtomicU8,
    serving: AtomicBool,
    finished: AtomicBool,
}

impl Backend {
    /// Starts the back end of `id`, whose directories [`crate::create_device`] wrote, on
    /// Xenstore's socket `socket` (`xenstore::transport::unix::socket_path(None)` for the
    /// standard one). The thread writes the driver's advertised nodes and InitWait, then
    /// follows the frontend.
    pub fn spawn<D: Driver + 'static>(
        socket: impl AsRef<Path>,
        id: DeviceId,
        driver: D,
    ) -> Result<BackendHandle, Error> {
        let socket = socket.as_ref().to_path_buf();
        let connect = |what: &str| {
            Client::connect(&socket).map_err(|e| Error::xs(format!("{id}: {what}"), e))
        };
        let mut client = connect("connecting the back end")?;
        let writer_client = connect("connecting the node writer")?;
        if xs::read_opt(&mut client, 0, &id.backend_path())
            .map_err(|e| Error::xs(format!("{id}: reading the back end"), e))?
            .is_none()
        {
            return Err(Error::NoDevice(id));
        }
        watch(&mut client, &id).map_err(|e| Error::xs(format!("{id}: watching"), e))?;
        let policy = driver
            .closed_policy()
            .unwrap_or_else(|| ClosedPolicy::for_kind(&id.kind));
        let status = Arc::new(Status::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            client,
            socket,
            id: id.clone(),
            driver,
            machine: Machine::new(policy),
            status: status.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("xb-{}-{}-{}", id.kind, id.domid, id.devid))
            .spawn(move || worker.run())
            .map_err(|source| Error::Spawn {
                id: id.clone(),
                source,
            })?;
        Ok(BackendHandle {
            writer: NodeWriter {
                id,
                client: Arc::new(Mutex::new(writer_client)),
                status: status.clone(),
            },
            status,
            stop,
            thread: Some(thread),
        })
    }
}

fn watch(c: &mut Client, id: &DeviceId) -> Result<(), ClientError> {
    let be = id.backend_path();
    c.watch(&format!("{be}/state"), TOKEN)?;
    c.watch(&format!("{be}/online"), TOKEN)?;
    c.watch(&format!("{}/state", id.frontend_path()), TOKEN)
}

/// A running back end. Dropping it closes the device like [`BackendHandle::close`].
#[derive(Debug)]
pub struct BackendHandle {
    writer: NodeWriter,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BackendHandle {
    /// The device.
    pub fn id(&self) -> &DeviceId {
        &self.writer.id
    }

    /// The back end's state as its thread last set it.
    pub fn state(&self) -> XenbusState {
        XenbusState::from_number(self.status.state.load(Ordering::Acquire).into())
            .unwrap_or(XenbusState::Unknown)
    }

    /// Whether the driver is connected to the frontend.
    pub fn is_connected(&self) -> bool {
        self.status.serving.load(Ordering::Acquire)
    }

    /// Whether the thread has ended (the device was removed, or the handle closed).
    pub fn is_finished(&self) -> bool {
        self.status.finished.load(Ordering::Acquire)
    }

    /// Writes a node of the back end's directory (see [`NodeWriter::write_node`]).
    pub fn write_node(&self, name: &str, value: &str) -> Result<(), Error> {
        self.writer.write_node(name, value)
    }

    /// Writes nodes and tells a connected frontend to re-read them (see
    /// [`NodeWriter::write_nodes_and_notify`]).
    pub fn write_nodes_and_notify(&self, nodes: &[(&str, String)]) -> Result<bool, Error> {
        self.writer.write_nodes_and_notify(nodes)
    }

    /// A writer of live nodes for the device's own threads.
    pub fn node_writer(&self) -> NodeWriter {
        self.writer.clone()
    }

    /// Stops the thread: the driver is disconnected and the back end switches to Closing then
    /// Closed (if its directory still exists). Returns once the thread has ended.
    pub fn close(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!(device = %self.writer.id, "the back-end thread panicked");
            }
        }
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Writes nodes of a device's back-end directory while it runs, on its own Xenstore
/// connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeWriter {
    id: DeviceId,
    client: Arc<Mutex<Client>>,
    status: Arc<Status>,
}

impl NodeWriter {
    /// Writes `<backend>/<name>`. Fails with [`Error::NoDevice`] once the device is removed.
    pub fn write_node(&self, name: &str, value: &str) -> Result<(), Error> {
        self.write(&[(name, value.to_string())], false).map(drop)
    }

    /// Writes the nodes and, if the driver is connected, the back end's `state` (Connected)
    /// again in the same transaction: what blkback does for an online resize, since blkfront
    /// re-reads `sectors` when the back end's state is written Connected while it is
    /// connected. Returns whether the frontend was notified.
    pub fn write_nodes_and_notify(&self, nodes: &[(&str, String)]) -> Result<bool, Error> {
        self.write(nodes, true)
    }

    fn write(&self, nodes: &[(&str, String)], notify: bool) -> Result<bool, Error> {
        for (name, _) in nodes {
            check_name(name)?;
        }
        let be = self.id.backend_path();
        let state_path = format!("{be}/state");
        let serving = self.status.serving.load(Ordering::Acquire);
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let r = c.transact(|c, tx| {
            let state = xs::read_state(c, tx, &state_path)?;
            if state == NodeState::Missing {
                return Ok(None);
            }
            for (name, value) in nodes {
                c.write(tx, &format!("{be}/{name}"), value.as_bytes())?;
            }
            let renotify = notify && serving && state == NodeState::State(XenbusState::Connected);
            if renotify {
                let v = XenbusState::Connected.to_string();
                c.write(tx, &state_path, v.as_bytes())?;
            }
            Ok(Some(renotify))
        });
        match r {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(Error::NoDevice(self.id.clone())),
            Err(e) => Err(Error::xs(format!("{}: writing nodes", self.id), e)),
        }
    }
}

/// A node name must stay inside the device's directory.
fn check_name(name: &str) -> Result<(), Error> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.ends_with('/')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        return Err(Error::InvalidNode(name.to_string()));
    }
    Ok(())
}

struct Worker<D> {
    client: Client,
    socket: PathBuf,
    id: DeviceId,
    driver: D,
    machine: Machine,
    status: Arc<Status>,
    stop: Arc<AtomicBool>,
}

impl<D: Driver> Worker<D> {
    fn run(mut self) {
        tracing::debug!(device = %self.id, "back end started");
        let mut pending = true;
        loop {
            if self.stop.load(Ordering::Acquire) {
                let (m, mut fx) = self.parts();
                m.shutdown(&mut fx);
                break;
            }
            if pending || self.machine.deadline().is_some_and(|d| Instant::now() >= d) {
                pending = false;
                match self.step() {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Exit) => break,
                    Err(e) => {
                        tracing::debug!(device = %self.id, "xenstore: {e}");
                        pending = self.reconnect();
                        continue;
                    }
                }
            }
            let wait = self.machine.deadline().map_or(POLL, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), POLL)
            });
            match self.client.next_event(wait) {
                Ok(Some(_)) => pending = true,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(device = %self.id, "xenstore: {e}");
                    pending = self.reconnect();
                }
            }
        }
        self.publish_status();
        self.status.finished.store(true, Ordering::Release);
        tracing::debug!(device = %self.id, "back end ended");
    }

    /// Reads the store and runs the machine once.
    fn step(&mut self) -> Result<Flow, ClientError> {
        let obs = observe(&mut self.client, &self.id)?;
        let (m, mut fx) = self.parts();
        let flow = m.step(&obs, Instant::now(), &mut fx);
        self.publish_status();
        Ok(flow)
    }

    /// Connects again after Xenstore went away (a daemon restart); the driver keeps serving
    /// meanwhile. Returns whether a step is due (false when stopping).
    fn reconnect(&mut self) -> bool {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(RECONNECT_PAUSE);
            if let Ok(mut c) = Client::connect(&self.socket) {
                if watch(&mut c, &self.id).is_ok() {
                    self.client = c;
                    return true;
                }
            }
        }
        false
    }

    fn publish_status(&self) {
        let s = &self.status;
        s.state
            .store(self.machine.state().number(), Ordering::Release);
        s.serving.store(self.machine.serving(), Ordering::Release);
    }

    fn parts(&mut self) -> (&mut Machine, Fx<'_, D>) {
        let fx = Fx {
            c: &mut self.client,
            id: &self.id,
            driver: &mut self.driver,
        };
        (&mut self.machine, fx)
    }
}

fn observe(c: &mut Client, id: &DeviceId) -> Result<Observed, ClientError> {
    let be = id.backend_path();
    let backend_dir = xs::read_opt(c, 0, &be)?.is_some();
    let online = xs::read_opt(c, 0, &format!("{be}/online"))?;
    Ok(Observed {
        backend_dir,
        online: online.is_some_and(|v| v.trim_ascii() == b"1"),
        backend: xs::read_state(c, 0, &format!("{be}/state"))?,
        frontend: xs::read_state(c, 0, &format!("{}/state", id.frontend_path()))?,
    })
}

/// The machine's effects on Xenstore and the driver.
struct Fx<'a, D> {
    c: &'a mut Client,
    id: &'a DeviceId,
    driver: &'a mut D,
}

impl<D: Driver> Effects for Fx<'_, D> {
    fn publish(&mut self, nodes: Nodes, state: Option<XenbusState>) -> bool {
        let list = match nodes {
            Nodes::None => Vec::new(),
            Nodes::Advertised => self.driver.advertise(),
            Nodes::Connected => self.driver.connected_nodes(),
        };
        let be = self.id.backend_path();
        let state_path = format!("{be}/state");
        let r = self.c.transact(|c, tx| -> Result<bool, ClientError> {
            if xs::read_state(c, tx, &state_path)? == NodeState::Missing {
                return Ok(false);
            }
            for (name, value) in &list {
                if check_name(name).is_err() {
                    tracing::warn!(device = %self.id, name, "driver node name skipped");
                    continue;
                }
                c.write(tx, &format!("{be}/{name}"), value.as_bytes())?;
            }
            if let Some(s) = state {
                c.write(tx, &state_path, s.to_string().as_bytes())?;
            }
            Ok(true)
        });
        match r {
            Ok(written) => {
                if written {
                    tracing::debug!(device = %self.id, ?state, "back-end state");
                }
                written
            }
            Err(e) => {
                tracing::debug!(device = %self.id, "writing the back end's nodes: {e}");
                false
            }
        }
    }

    fn connect(&mut self) -> Result<(), String> {
        let info = FrontendInfo::read(self.c, self.id)
            .map_err(|e| format!("reading the frontend: {e}"))?;
        self.driver.connect(&info)
    }

    fn disconnect(&mut self) {
        self.driver.disconnect();
    }

    fn report_error(&mut self, msg: &str) {
        if let Err(e) = self.c.write(0, &self.id.error_path(), msg.as_bytes()) {
            tracing::debug!(device = %self.id, "writing the error node: {e}");
        }
        tracing::warn!(device = %self.id, "{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn node_names_stay_inside_the_directory() {
        for ok in ["sectors", "queue-0/x", "feature-persistent"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a/", "./x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
