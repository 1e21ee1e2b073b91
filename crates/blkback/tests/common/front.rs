//! A blkfront that talks to the back end as Linux's `xen-blkfront` does (6.12
//! `talk_to_blkback`, `blkfront_connect`), over a real Xenstore, real grant entries and
//! `xen_ring::FrontRing`s in guest memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use blkif::abi::*;
use vm_memory::{ByteValued, Bytes, GuestAddress};
use xen_ring::{FrontRing, GuestRingPages, RingPages, REQ_PROD_OFFSET};
use xenbus_backend::{DeviceId, XenbusState};
use xenstore::client::Client;

use super::{readable, wait_until, Domain, GuestPort, Mem, Store, WAIT};

/// Data pages each queue keeps granted: one full direct request.
const DATA_PAGES: usize = BLKIF_MAX_SEGMENTS_PER_REQUEST;

/// Frontend nodes as written: (name relative to the frontend's directory, value).
pub type Nodes = Vec<(String, String)>;

/// How the frontend connects.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub queues: u32,
    pub ring_order: u32,
    pub persistent: bool,
    pub protocol: Option<String>,
}

impl Default for FrontOptions {
    fn default() -> Self {
        FrontOptions {
            queues: 1,
            ring_order: 0,
            persistent: true,
            protocol: Some("x86_64-abi".into()),
        }
    }
}

/// One blkif ring with its event channel and granted data pages.
pub struct FrontQueue {
    pub ring: FrontRing<GuestRingPages<Mem>>,
    pub port: GuestPort,
    pub ring_grefs: Vec<u32>,
    dom: Arc<Domain>,
    data: Vec<(u32, GuestAddress)>,
    next_id: u64,
}

/// A guest's blkfront for one device, on its own Xenstore connection.
pub struct Blkfront {
    pub c: Client,
    pub id: DeviceId,
    pub dom: Arc<Domain>,
    pub queues: Vec<FrontQueue>,
    /// `sectors` as read when the back end was Connected.
    pub sectors: u64,
}

impl Blkfront {
    pub fn new(store: &Store, dom: &Arc<Domain>, id: &DeviceId) -> Blkfront {
        Blkfront {
            c: store.client(),
            id: id.clone(),
            dom: dom.clone(),
            queues: Vec::new(),
            sectors: 0,
        }
    }

    pub fn backend_node(&mut self, node: &str) -> Option<String> {
        let p = format!("{}/{node}", self.id.backend_path());
        self.c
            .read(0, &p)
            .ok()
            .map(|v| String::from_utf8(v).unwrap())
    }

    pub fn backend_state(&mut self) -> Option<XenbusState> {
        self.backend_node("state")
            .and_then(|v| XenbusState::parse(v.as_bytes()))
    }

    pub fn wait_backend(&mut self, want: XenbusState) {
        let what = format!("the back end of {} to be {want:?}", self.id);
        wait_until(&what, || self.backend_state() == Some(want));
    }

    pub fn set_state(&mut self, s: XenbusState) {
        let p = format!("{}/state", self.id.frontend_path());
        self.c.write(0, &p, s.to_string().as_bytes()).unwrap();
    }

    /// Writes frontend nodes in one transaction, as `talk_to_blkback` does.
    pub fn write_nodes(&mut self, nodes: &[(String, String)]) {
        let fe = self.id.frontend_path();
        let tx = self.c.transaction_start().unwrap();
        for (n, v) in nodes {
            self.c
                .write(tx, &format!("{fe}/{n}"), v.as_bytes())
                .unwrap();
        }
        self.c.transaction_end(tx, true).unwrap();
    }

    /// Reads what the back end advertised at InitWait and checks it allows `o`.
    pub fn check_features(&mut self, o: &FrontOptions) {
        let num = |f: &mut Self, k: &str| -> u32 {
            let v = f
                .backend_node(k)
                .unwrap_or_else(|| panic!("back end has no {k}"));
            v.parse().unwrap()
        };
        assert_eq!(num(self, "feature-flush-cache"), 1);
        assert!(num(self, "max-ring-page-order") >= o.ring_order);
        assert!(num(self, "multi-queue-max-queues") >= o.queues);
        assert_eq!(num(self, "sector-size"), 512);
    }

    /// Sets up the rings and ports of `o` and returns the nodes `talk_to_blkback` writes
    /// (the queues are kept in `self.queues`).
    pub fn ring_nodes(&mut self, o: &FrontOptions) -> Nodes {
        let mut nodes = Vec::new();
        if o.ring_order > 0 {
            nodes.push(("ring-page-order".into(), o.ring_order.to_string()));
        }
        if o.queues > 1 {
            nodes.push(("multi-queue-num-queues".into(), o.queues.to_string()));
        }
        self.queues.clear();
        for q in 0..o.queues {
            let fq = FrontQueue::new(&self.dom, o.ring_order);
            let prefix = if o.queues > 1 {
                format!("queue-{q}/")
            } else {
                String::new()
            };
            if o.ring_order == 0 {
                nodes.push((format!("{prefix}ring-ref"), fq.ring_grefs[0].to_string()));
            } else {
                for (i, g) in fq.ring_grefs.iter().enumerate() {
                    nodes.push((format!("{prefix}ring-ref{i}"), g.to_string()));
                }
            }
            nodes.push((format!("{prefix}event-channel"), fq.port.port.to_string()));
            self.queues.push(fq);
        }
        if let Some(p) = &o.protocol {
            nodes.push(("protocol".into(), p.clone()));
        }
        nodes.push((
            "feature-persistent".into(),
            u8::from(o.persistent).to_string(),
        ));
        nodes
    }

    /// The back end is Connected: reads the disk's nodes and switches to Connected.
    pub fn finish_connect(&mut self) {
        self.sectors = self.backend_node("sectors").unwrap().parse().unwrap();
        assert_eq!(self.backend_node("sector-size").as_deref(), Some("512"));
        assert_eq!(self.backend_node("info").as_deref(), Some("0"));
        self.set_state(XenbusState::Connected);
    }

    /// A fresh blkfront's whole negotiation: InitWait → rings, Initialised; Connected → disk
    /// nodes, Connected.
    pub fn connect(&mut self, o: &FrontOptions) {
        self.wait_backend(XenbusState::InitWait);
        self.check_features(o);
        let nodes = self.ring_nodes(o);
        self.write_nodes(&nodes);
        self.set_state(XenbusState::Initialised);
        self.wait_backend(XenbusState::Connected);
        self.finish_connect();
    }

    /// What blkfront does when it is unbound: Closing, wait for the back end, Closed; then
    /// it frees its rings and ports.
    pub fn close(&mut self) {
        self.set_state(XenbusState::Closing);
        self.wait_backend(XenbusState::Closing);
        self.set_state(XenbusState::Closed);
        self.wait_backend(XenbusState::Closed);
        for q in self.queues.drain(..) {
            self.dom.close_port(q.port.port);
        }
    }

    pub fn q(&mut self, i: usize) -> &mut FrontQueue {
        &mut self.queues[i]
    }
}

impl FrontQueue {
    fn new(dom: &Arc<Domain>, order: u32) -> FrontQueue {
        let pages: Vec<GuestAddress> = (0..1u32 << order).map(|_| dom.alloc_page()).collect();
        let ring_grefs = pages.iter().map(|&p| dom.grant(p)).collect();
        let ring = FrontRing::new(
            GuestRingPages::new(dom.mem.clone(), pages).unwrap(),
            RING_ENTRY_SIZE,
        )
        .unwrap();
        let data = (0..DATA_PAGES)
            .map(|_| {
                let p = dom.alloc_page();
                (dom.grant(p), p)
            })
            .collect();
        FrontQueue {
            ring,
            port: dom.alloc_port(),
            ring_grefs,
            dom: dom.clone(),
            data,
            next_id: 1,
        }
    }

    /// Sends an event on the queue's port, as the guest's `notify_remote_via_irq`. As in
    /// Xen, a send on a port dom0 has not bound (yet) is lost.
    pub fn kick(&self) {
        if self.dom.is_bound(self.port.port) {
            self.port.kick.write(1).unwrap();
        }
    }

    /// Publishes the pushed requests and kicks if the back end asked for it.
    pub fn push_and_kick(&mut self) {
        if self.ring.push_requests_and_check_notify().unwrap() {
            self.kick();
        }
    }

    /// Waits for `n` responses, sleeping only on the queue's event channel: a back end that
    /// forgets to notify makes this time out.
    pub fn wait_responses(&mut self, n: usize) -> Vec<BlkifResponse> {
        let end = Instant::now() + WAIT;
        let mut out = Vec::new();
        let mut b = [0u8; RESPONSE_SIZE];
        loop {
            while out.len() < n && self.ring.next_response(&mut b).unwrap() {
                out.push(decode::<BlkifResponse>(&b).unwrap());
            }
            if out.len() == n {
                return out;
            }
            if self.ring.final_check_for_responses().unwrap() {
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                readable(&self.port.call, left),
                "no event from the back end: {} of {n} responses",
                out.len()
            );
            let _ = self.port.call.read();
        }
    }

    /// Whether a response or an event arrives within `t` (for queues that must have
    /// stopped). Events left from earlier responses are dropped first.
    pub fn response_within(&mut self, t: Duration) -> bool {
        let _ = self.port.call.read();
        let mut b = [0u8; RESPONSE_SIZE];
        readable(&self.port.call, t) || self.ring.next_response(&mut b).unwrap()
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A direct request of `sectors` sectors over the data pages, from the first.
    fn rw_request(&mut self, op: u8, sector: u64, sectors: usize) -> (u64, [u8; REQUEST_SIZE]) {
        assert!(
            sectors > 0 && sectors <= DATA_PAGES * 8,
            "{sectors} sectors"
        );
        let id = self.id();
        let mut r = BlkifRequest {
            operation: op,
            nr_segments: sectors.div_ceil(8) as u8,
            id,
            sector_number: sector,
            ..Default::default()
        };
        for (i, seg) in r.seg.iter_mut().take(sectors.div_ceil(8)).enumerate() {
            let n = (sectors - i * 8).min(8);
            *seg = BlkifRequestSegment {
                gref: self.data[i].0,
                first_sect: 0,
                last_sect: (n - 1) as u8,
                _pad: 0,
            };
        }
        (id, slot(&r))
    }

    /// Pushes one request, kicks and returns its response's status.
    pub fn one(&mut self, id: u64, req: [u8; REQUEST_SIZE], op: u8) -> i16 {
        self.ring.push_request(&req).unwrap();
        self.push_and_kick();
        let r = self.wait_responses(1);
        assert_eq!(
            (r[0].id, r[0].operation),
            (id, op),
            "response to the request"
        );
        r[0].status
    }

    /// Writes `data` (whole sectors, at most 11 pages) at `sector`.
    pub fn write(&mut self, sector: u64, data: &[u8]) -> i16 {
        assert!(data.len().is_multiple_of(512));
        for (i, chunk) in data.chunks(4096).enumerate() {
            self.dom.mem.write_slice(chunk, self.data[i].1).unwrap();
        }
        let (id, req) = self.rw_request(BLKIF_OP_WRITE, sector, data.len() / 512);
        self.one(id, req, BLKIF_OP_WRITE)
    }

    /// Reads `len` bytes at `sector`; the status on failure.
    pub fn read(&mut self, sector: u64, len: usize) -> Result<Vec<u8>, i16> {
        assert!(len.is_multiple_of(512));
        for (_, gpa) in &self.data[..len.div_ceil(4096)] {
            self.dom.mem.write_slice(&[0xeeu8; 4096], *gpa).unwrap();
        }
        let (id, req) = self.rw_request(BLKIF_OP_READ, sector, len / 512);
        match self.one(id, req, BLKIF_OP_READ) {
            BLKIF_RSP_OKAY => Ok(self.data_bytes(len)),
            s => Err(s),
        }
    }

    /// The first `len` bytes of the data pages.
    pub fn data_bytes(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for (i, chunk) in out.chunks_mut(4096).enumerate() {
            self.dom.mem.read_slice(chunk, self.data[i].1).unwrap();
        }
        out
    }

    pub fn flush(&mut self) -> i16 {
        let id = self.id();
        let r = BlkifRequest {
            operation: BLKIF_OP_FLUSH_DISKCACHE,
            id,
            ..Default::default()
        };
        self.one(id, slot(&r), BLKIF_OP_FLUSH_DISKCACHE)
    }

    /// A read of one sector into sector `k % 8` of data page `k / 8` (many fit the pages).
    pub fn small_read(&mut self, sector: u64, k: usize) -> (u64, [u8; REQUEST_SIZE]) {
        let id = self.id();
        let s = (k % 8) as u8;
        let mut r = BlkifRequest {
            operation: BLKIF_OP_READ,
            nr_segments: 1,
            id,
            sector_number: sector,
            ..Default::default()
        };
        r.seg[0] = BlkifRequestSegment {
            gref: self.data[k / 8].0,
            first_sect: s,
            last_sect: s,
            _pad: 0,
        };
        (id, slot(&r))
    }

    /// A read whose only segment names `gref`.
    pub fn read_with_gref(&mut self, sector: u64, gref: u32) -> (u64, [u8; REQUEST_SIZE]) {
        let (id, mut req) = self.rw_request(BLKIF_OP_READ, sector, 8);
        // The segment's gref is the first field of seg[0], at offset 24.
        req[24..28].copy_from_slice(&gref.to_ne_bytes());
        (id, req)
    }

    /// A hostile guest: publishes a `req_prod` far beyond the ring's size and kicks.
    pub fn write_wild_indices(&mut self) {
        let n = self.ring.nr_ents();
        let pages = self.ring.pages();
        let prod = pages.load_u32(REQ_PROD_OFFSET).unwrap();
        pages
            .store_u32(REQ_PROD_OFFSET, prod.wrapping_add(n * 3 + 5))
            .unwrap();
        self.kick();
    }
}

fn slot<T: ByteValued>(v: &T) -> [u8; REQUEST_SIZE] {
    let mut b = [0u8; REQUEST_SIZE];
    b[..std::mem::size_of::<T>()].copy_from_slice(v.as_slice());
    b
}
