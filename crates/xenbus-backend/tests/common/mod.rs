//! A Xenstore daemon on a temporary socket, a recording driver, and a fake frontend that writes
//! its nodes and states as Linux's blkfront and netfront do.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xenbus_backend::{
    create_device, Backend, BackendHandle, ClosedPolicy, DeviceId, Driver, FrontendInfo,
    XenbusState,
};
use xenstore::client::Client;

pub const WAIT: Duration = Duration::from_secs(10);

/// An in-process Xenstore daemon.
pub type Store = xenstore::testing::TestDaemon;

/// Polls `f` until it holds, failing the test after [`WAIT`].
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the driver was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Advertise,
    /// The `ring-ref` and `event-channel` (or `tx-ring-ref`) the frontend gave.
    Connect(String, String),
    Disconnect,
    ConnectedNodes,
}

/// A driver that records its calls and fails to connect when told to.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub fail: Arc<Mutex<Option<String>>>,
    pub sectors: Arc<Mutex<u64>>,
    pub policy: Option<ClosedPolicy>,
}

impl Recorder {
    pub fn new(sectors: u64) -> Self {
        let r = Recorder::default();
        *r.sectors.lock().unwrap() = sectors;
        r
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn count(&self, f: impl Fn(&Call) -> bool) -> usize {
        self.calls().iter().filter(|c| f(c)).count()
    }
    pub fn connects(&self) -> usize {
        self.count(|c| matches!(c, Call::Connect(..)))
    }
    pub fn disconnects(&self) -> usize {
        self.count(|c| *c == Call::Disconnect)
    }
}

impl Driver for Recorder {
    fn advertise(&mut self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().push(Call::Advertise);
        vec![
            ("feature-flush-cache".into(), "1".into()),
            ("feature-rx-copy".into(), "1".into()),
        ]
    }
    fn connect(&mut self, f: &FrontendInfo) -> Result<(), String> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        let ring = f
            .read_u32("ring-ref")
            .or_else(|_| f.read_u32("tx-ring-ref"))?;
        let port = f.read_u32("event-channel")?;
        self.calls
            .lock()
            .unwrap()
            .push(Call::Connect(ring.to_string(), port.to_string()));
        Ok(())
    }
    fn disconnect(&mut self) {
        self.calls.lock().unwrap().push(Call::Disconnect);
    }
    fn connected_nodes(&mut self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().push(Call::ConnectedNodes);
        vec![
            ("sectors".into(), self.sectors.lock().unwrap().to_string()),
            ("info".into(), "0".into()),
            ("sector-size".into(), "512".into()),
        ]
    }
    fn closed_policy(&self) -> Option<ClosedPolicy> {
        self.policy
    }
}

/// A guest's frontend, on its own connection, writing what Linux writes.
pub struct Frontend {
    pub c: Client,
    pub id: DeviceId,
}

impl Frontend {
    pub fn new(store: &Store, id: &DeviceId) -> Self {
        Frontend {
            c: store.client(),
            id: id.clone(),
        }
    }

    fn fe(&self, node: &str) -> String {
        format!("{}/{node}", self.id.frontend_path())
    }

    fn be(&self, node: &str) -> String {
        format!("{}/{node}", self.id.backend_path())
    }

    pub fn backend_node(&mut self, node: &str) -> Option<String> {
        let p = self.be(node);
        self.c
            .read(0, &p)
            .ok()
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub fn backend_state(&mut self) -> Option<XenbusState> {
        let p = self.be("state");
        self.c.read(0, &p).ok().and_then(|v| XenbusState::parse(&v))
    }

    pub fn wait_backend(&mut self, want: XenbusState) {
        let what = format!("back end of {} to be {want:?}", self.id);
        wait_until(&what, || self.backend_state() == Some(want));
    }

    /// Writes the state node raw (a guest may write anything).
    pub fn write_state_raw(&mut self, v: &[u8]) {
        let p = self.fe("state");
        self.c.write(0, &p, v).unwrap();
    }

    pub fn set_state(&mut self, s: XenbusState) {
        self.write_state_raw(s.to_string().as_bytes());
    }

    /// Writes frontend nodes in one transaction, as the frontends do.
    fn write_nodes(&mut self, nodes: &[(&str, String)]) {
        let tx = self.c.transaction_start().unwrap();
        for (n, v) in nodes {
            let p = self.fe(n);
            self.c.write(tx, &p, v.as_bytes()).unwrap();
        }
        self.c.transaction_end(tx, true).unwrap();
    }

    /// blkfront's `talk_to_blkback`: rings and protocol in a transaction, then Initialised.
    pub fn blk_offer_rings(&mut self, ring: u32, port: u32) {
        self.write_nodes(&[
            ("ring-ref", ring.to_string()),
            ("event-channel", port.to_string()),
            ("protocol", "x86_64-abi".to_string()),
            ("feature-persistent", "1".to_string()),
        ]);
        self.set_state(XenbusState::Initialised);
    }

    /// blkfront's `blkfront_connect`: reads the disk's nodes, then Connected. Returns `sectors`.
    pub fn blk_finish_connect(&mut self) -> u64 {
        let sectors = self.backend_node("sectors").expect("sectors");
        assert!(self.backend_node("info").is_some());
        assert_eq!(self.backend_node("sector-size").as_deref(), Some("512"));
        self.set_state(XenbusState::Connected);
        sectors.parse().unwrap()
    }

    /// A fresh blkfront: InitWait → rings, Initialised; Connected → Connected.
    pub fn blk_connect(&mut self, ring: u32, port: u32) -> u64 {
        self.wait_backend(XenbusState::InitWait);
        self.blk_offer_rings(ring, port);
        self.wait_backend(XenbusState::Connected);
        self.blk_finish_connect()
    }

    /// netfront's `xennet_connect` on InitWait: rings and features, then Connected directly.
    pub fn net_connect(&mut self, ring: u32, port: u32) {
        self.wait_backend(XenbusState::InitWait);
        assert_eq!(self.backend_node("feature-rx-copy").as_deref(), Some("1"));
        self.write_nodes(&[
            ("tx-ring-ref", ring.to_string()),
            ("rx-ring-ref", (ring + 1).to_string()),
            ("event-channel", port.to_string()),
            ("request-rx-copy", "1".to_string()),
            ("feature-rx-notify", "1".to_string()),
        ]);
        self.set_state(XenbusState::Connected);
    }
}

pub fn vbd(domid: u32, devid: u32) -> DeviceId {
    DeviceId::new("vbd", domid, devid)
}

/// Device nodes as `create_device` takes them.
pub type Nodes = Vec<(&'static str, String)>;

/// The nodes libxl gives a disk: the back end's, the frontend's.
pub fn disk_nodes(devid: u32) -> (Nodes, Nodes) {
    (
        vec![
            ("params", "/images/disk.vhd".into()),
            ("type", "vhd".into()),
            ("mode", "w".into()),
            ("dev", "xvda".into()),
            ("removable", "0".into()),
        ],
        vec![
            ("virtual-device", devid.to_string()),
            ("device-type", "disk".into()),
        ],
    )
}

/// A disk created as libxl does, with its back end running on a [`Recorder`] of `sectors`.
pub fn start_vbd(store: &Store, domid: u32, devid: u32) -> (DeviceId, Recorder, BackendHandle) {
    let id = vbd(domid, devid);
    let (be, fe) = disk_nodes(devid);
    create_device(&mut store.client(), &id, &be, &fe).unwrap();
    let rec = Recorder::new(2048);
    let h = Backend::spawn(&store.socket, id.clone(), rec.clone()).unwrap();
    (id, rec, h)
}

/// [`start_vbd`] with a blkfront connected to it.
pub fn connected_vbd(
    store: &Store,
    domid: u32,
    devid: u32,
) -> (DeviceId, Recorder, BackendHandle, Frontend) {
    let (id, rec, h) = start_vbd(store, domid, devid);
    let mut f = Frontend::new(store, &id);
    f.blk_connect(8, 5);
    wait_until("connected", || h.is_connected());
    (id, rec, h, f)
}
