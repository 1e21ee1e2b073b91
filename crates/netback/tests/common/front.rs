//! A netfront that negotiates as Linux's `xen-netfront` does (6.12 `talk_to_netback`): on
//! the back end's InitWait it writes its rings, ports and features in one transaction and
//! switches to Connected.

use std::sync::Arc;
use std::time::Instant;

use netif::abi::*;
use vm_memory::{Bytes, GuestAddress};
use xen_ring::{FrontRing, GuestRingPages, RingPages, REQ_PROD_OFFSET};
use xenbus_backend::{DeviceId, XenbusState};
use xenstore::client::Client;

use super::{readable, wait_until, Domain, GuestPort, Mem, Store, WAIT};

type Ring = FrontRing<GuestRingPages<Mem>>;
/// Receive buffers each queue keeps posted.
const RX_BUFS: u16 = 64;
/// Transmit buffers each queue cycles through.
const TX_BUFS: u16 = 16;

/// How the frontend connects.
#[derive(Debug, Clone)]
pub struct FrontOptions {
    pub queues: u32,
    pub split: bool,
    /// Extra nodes written (and overriding the defaults), e.g. `request-rx-copy` = 0.
    pub extra: Vec<(String, String)>,
    /// Post no receive buffers when connecting.
    pub no_rx_bufs: bool,
}

impl Default for FrontOptions {
    fn default() -> Self {
        FrontOptions {
            queues: 1,
            split: false,
            extra: Vec::new(),
            no_rx_bufs: false,
        }
    }
}

/// One queue: both rings, their ports and buffers.
pub struct FrontQueue {
    pub tx: Ring,
    pub rx: Ring,
    pub tx_port: GuestPort,
    /// `None`: `tx_port` serves both directions.
    pub rx_port: Option<GuestPort>,
    pub tx_ring_ref: u32,
    pub rx_ring_ref: u32,
    dom: Arc<Domain>,
    tx_bufs: Vec<(u32, GuestAddress)>,
    rx_bufs: Vec<(u32, GuestAddress)>,
    tx_next: u16,
}

/// A guest's netfront for one vif.
pub struct Netfront {
    pub c: Client,
    pub id: DeviceId,
    pub dom: Arc<Domain>,
    pub queues: Vec<FrontQueue>,
}

impl Netfront {
    pub fn new(store: &Store, dom: &Arc<Domain>, id: &DeviceId) -> Netfront {
        Netfront {
            c: store.client(),
            id: id.clone(),
            dom: dom.clone(),
            queues: Vec::new(),
        }
    }

    pub fn backend_node(&mut self, node: &str) -> Option<String> {
        let p = format!("{}/{node}", self.id.backend_path());
        let v = self.c.read(0, &p).ok()?;
        Some(String::from_utf8(v).unwrap())
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

    /// Sets up the queues of `o` and writes what `talk_to_netback` writes, then Connected.
    pub fn write_config(&mut self, o: &FrontOptions) {
        let mut nodes: Vec<(String, String)> = Vec::new();
        self.queues.clear();
        for q in 0..o.queues {
            let fq = FrontQueue::new(&self.dom, o.split);
            let p = if o.queues > 1 {
                format!("queue-{q}/")
            } else {
                String::new()
            };
            nodes.push((format!("{p}tx-ring-ref"), fq.tx_ring_ref.to_string()));
            nodes.push((format!("{p}rx-ring-ref"), fq.rx_ring_ref.to_string()));
            match &fq.rx_port {
                Some(rx) => {
                    nodes.push((format!("{p}event-channel-tx"), fq.tx_port.port.to_string()));
                    nodes.push((format!("{p}event-channel-rx"), rx.port.to_string()));
                }
                None => nodes.push((format!("{p}event-channel"), fq.tx_port.port.to_string())),
            }
            self.queues.push(fq);
        }
        if o.queues > 1 {
            nodes.push(("multi-queue-num-queues".into(), o.queues.to_string()));
        }
        for (k, v) in [
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-gso-tcpv6", "1"),
            ("feature-ipv6-csum-offload", "1"),
        ] {
            if !o.extra.iter().any(|(e, _)| e == k) {
                nodes.push((k.into(), v.into()));
            }
        }
        nodes.extend(o.extra.iter().cloned());
        let fe = self.id.frontend_path();
        let tx = self.c.transaction_start().unwrap();
        for (n, v) in &nodes {
            self.c
                .write(tx, &format!("{fe}/{n}"), v.as_bytes())
                .unwrap();
        }
        self.c.transaction_end(tx, true).unwrap();
        self.set_state(XenbusState::Connected);
    }

    /// The whole negotiation, then receive buffers posted on every queue.
    pub fn connect(&mut self, o: &FrontOptions) {
        self.wait_backend(XenbusState::InitWait);
        assert_eq!(self.backend_node("feature-rx-copy").as_deref(), Some("1"));
        let max: u32 = self
            .backend_node("multi-queue-max-queues")
            .unwrap()
            .parse()
            .unwrap();
        assert!(max >= o.queues);
        self.write_config(o);
        self.wait_backend(XenbusState::Connected);
        for q in &mut self.queues {
            if !o.no_rx_bufs {
                q.post_rx_all();
            }
        }
    }

    /// netfront's remove: Closing, wait, Closed, wait; then it frees its ports.
    pub fn close(&mut self) {
        self.set_state(XenbusState::Closing);
        self.wait_backend(XenbusState::Closing);
        self.set_state(XenbusState::Closed);
        self.wait_backend(XenbusState::Closed);
        self.queues.clear();
    }

    pub fn q(&mut self, i: usize) -> &mut FrontQueue {
        &mut self.queues[i]
    }
}

impl FrontQueue {
    fn new(dom: &Arc<Domain>, split: bool) -> FrontQueue {
        let ring = |size| {
            let (gref, gpa) = dom.granted_page();
            let pages = GuestRingPages::new(dom.mem.clone(), vec![gpa]).unwrap();
            (gref, FrontRing::new(pages, size).unwrap())
        };
        let (tx_ring_ref, tx) = ring(TX_SLOT_SIZE);
        let (rx_ring_ref, rx) = ring(RX_SLOT_SIZE);
        FrontQueue {
            tx,
            rx,
            tx_port: dom.alloc_port(),
            rx_port: split.then(|| dom.alloc_port()),
            tx_ring_ref,
            rx_ring_ref,
            dom: dom.clone(),
            tx_bufs: (0..TX_BUFS).map(|_| dom.granted_page()).collect(),
            rx_bufs: (0..RX_BUFS).map(|_| dom.granted_page()).collect(),
            tx_next: 0,
        }
    }

    fn rx_port(&self) -> &GuestPort {
        self.rx_port.as_ref().unwrap_or(&self.tx_port)
    }

    fn kick(&self, p: &GuestPort) {
        // As in Xen, a send on a port dom0 has not bound is lost.
        if self.dom.is_bound(p.port) {
            p.kick.write(1).unwrap();
        }
    }

    /// Posts receive buffer `id` (its page is `rx_bufs[id]`).
    fn post_rx(&mut self, id: u16) {
        let req = NetifRxRequest {
            id,
            pad: 0,
            gref: self.rx_bufs[usize::from(id)].0,
        };
        self.rx.push_request(&req.to_bytes()).unwrap();
    }

    pub fn post_rx_all(&mut self) {
        for id in 0..RX_BUFS {
            self.post_rx(id);
        }
        if self.rx.push_requests_and_check_notify().unwrap() {
            self.kick(self.rx_port());
        }
    }

    /// Transmits one frame of at most a page; returns the response status.
    pub fn send(&mut self, frame: &[u8]) -> i16 {
        self.send_with(frame, |_| {})
    }

    /// Like [`FrontQueue::send`], with `tamper` changing the request first (a hostile
    /// frontend's bad grant, size, offset or flags).
    pub fn send_with(&mut self, frame: &[u8], tamper: impl FnOnce(&mut NetifTxRequest)) -> i16 {
        let id = self.tx_next;
        self.tx_next = (self.tx_next + 1) % TX_BUFS;
        let (gref, gpa) = self.tx_bufs[usize::from(id)];
        self.dom.mem.write_slice(frame, gpa).unwrap();
        let mut req = NetifTxRequest {
            gref,
            offset: 0,
            flags: NETTXF_DATA_VALIDATED,
            id,
            size: frame.len() as u16,
        };
        tamper(&mut req);
        self.tx.push_request(&req.to_bytes()).unwrap();
        if self.tx.push_requests_and_check_notify().unwrap() {
            self.kick(&self.tx_port);
        }
        let mut b = [0u8; 4];
        let end = Instant::now() + WAIT;
        loop {
            if self.tx.next_response(&mut b).unwrap() {
                let r = NetifTxResponse::from_bytes(&b);
                assert_eq!(r.id, id);
                return r.status;
            }
            if self.tx.final_check_for_responses().unwrap() {
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for the tx response");
            if readable(&self.tx_port.call, left) {
                let _ = self.tx_port.call.read();
            }
        }
    }

    /// Moves the tx ring's request producer far past anything posted (more than a ring ahead
    /// of the back end) and kicks.
    pub fn write_wild_tx_indices(&mut self) {
        let n = self.tx.nr_ents();
        let pages = self.tx.pages();
        let prod = pages.load_u32(REQ_PROD_OFFSET).unwrap();
        pages
            .store_u32(REQ_PROD_OFFSET, prod.wrapping_add(n * 3 + 5))
            .unwrap();
        self.kick(&self.tx_port);
    }

    /// The next received frame for which `want` holds, sleeping only on the rx event
    /// channel (a backend that forgets to notify makes this time out); `None` after
    /// `timeout`. Each buffer is posted again once read.
    pub fn recv_matching(
        &mut self,
        timeout: std::time::Duration,
        mut want: impl FnMut(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let end = Instant::now() + timeout;
        let mut frame = Vec::new();
        let mut b = [0u8; RX_SLOT_SIZE];
        loop {
            while self.rx.next_response(&mut b).unwrap() {
                let id = u16::from_le_bytes([b[0], b[1]]);
                let flags = u16::from_le_bytes([b[4], b[5]]);
                let status = i16::from_le_bytes([b[6], b[7]]);
                assert!(status >= 0, "rx response status {status}");
                let mut data = vec![0u8; status as usize];
                let gpa = self.rx_bufs[usize::from(id)].1;
                self.dom.mem.read_slice(&mut data, gpa).unwrap();
                frame.extend_from_slice(&data);
                self.post_rx(id);
                if flags & NETRXF_EXTRA_INFO != 0 {
                    // A GSO extra-info slot (its buffer is not reposted: tests send no GSO).
                    assert!(self.rx.next_response(&mut b).unwrap());
                }
                if flags & NETRXF_MORE_DATA != 0 {
                    continue;
                }
                let f = std::mem::take(&mut frame);
                if want(&f) {
                    self.rx_push();
                    return Some(f);
                }
            }
            self.rx_push();
            if self.rx.final_check_for_responses().unwrap() {
                continue;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let call = &self.rx_port().call;
            if !readable(call, left) {
                // Not notified in time (a frame published without a notification counts as
                // not received).
                return None;
            }
            let _ = call.read();
        }
    }

    fn rx_push(&mut self) {
        if self.rx.push_requests_and_check_notify().unwrap() {
            self.kick(self.rx_port());
        }
    }
}
