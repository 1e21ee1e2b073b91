//! The shared-ring interface a domain talks to Xenstore through (`struct
//! xenstore_domain_interface` on one guest page, see docs/misc/xenstore-ring.txt): a 1024-byte
//! request ring and a 1024-byte response ring, each with free-running consumer/producer
//! indices, plus feature, connection-state and error words. The page memory and the event
//! channel are behind traits so the VMM can plug in guest RAM and its event channels.

use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex};

use crate::server::{ConnId, Xenstore};
use crate::wire::{Decoder, FrameError};

/// Size of each ring.
pub const RING_SIZE: u32 = 1024;
/// Offset of the request ring.
pub const REQ_OFF: usize = 0;
/// Offset of the response ring.
pub const RSP_OFF: usize = 1024;
/// Offset of `req_cons`.
pub const REQ_CONS: usize = 2048;
/// Offset of `req_prod`.
pub const REQ_PROD: usize = 2052;
/// Offset of `rsp_cons`.
pub const RSP_CONS: usize = 2056;
/// Offset of `rsp_prod`.
pub const RSP_PROD: usize = 2060;
/// Offset of `server_features`.
pub const SERVER_FEATURES: usize = 2064;
/// Offset of `connection`.
pub const CONNECTION: usize = 2068;
/// Offset of `error`.
pub const ERROR: usize = 2072;
/// Bytes of the page the interface uses.
pub const INTERFACE_LEN: usize = 2080;

/// Server feature: the guest may reset the connection.
pub const FEATURE_RECONNECTION: u32 = 1;
/// Server feature: the error word is present.
pub const FEATURE_ERROR: u32 = 2;
/// Server feature: WATCH takes a depth.
pub const FEATURE_WATCHDEPTH: u32 = 4;
/// `connection`: steady state.
pub const CONNECTED: u32 = 0;
/// `connection`: the guest asked for a reconnect.
pub const RECONNECT: u32 = 1;
/// `error`: a ring index was out of range.
pub const ERROR_RINGIDX: u32 = 2;
/// `error`: protocol violation (payload too long).
pub const ERROR_PROTO: u32 = 3;

/// Access to the shared page. Implementations must make each call a single access of guest
/// memory (no caching), as the guest changes the page concurrently.
pub trait RingMemory {
    /// Reads a little-endian 32-bit word at `off`.
    fn read_u32(&self, off: usize) -> u32;
    /// Writes a little-endian 32-bit word at `off`.
    fn write_u32(&self, off: usize, v: u32);
    /// Copies bytes out of the page.
    fn read_bytes(&self, off: usize, buf: &mut [u8]);
    /// Copies bytes into the page.
    fn write_bytes(&self, off: usize, data: &[u8]);
}

/// Signals the other end (the guest's event channel).
pub trait Notify {
    /// Sends one notification.
    fn notify(&self);
}

/// Why a ring stopped being served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The guest put impossible producer/consumer indices in the page.
    #[error("ring indices out of range (cons {cons}, prod {prod})")]
    BadIndex {
        /// Consumer index read.
        cons: u32,
        /// Producer index read.
        prod: u32,
    },
    /// The guest sent a malformed message.
    #[error("malformed request: {0}")]
    Frame(#[from] FrameError),
}

/// One side's view of the two rings: Xenstore consumes requests and produces responses.
#[derive(Debug)]
pub struct RingChannel<M, N> {
    mem: M,
    notify: N,
    features: u32,
}

impl<M: RingMemory, N: Notify> RingChannel<M, N> {
    /// Wraps a page, advertising every feature this server supports.
    pub fn new(mem: M, notify: N) -> Self {
        Self::with_features(
            mem,
            notify,
            FEATURE_RECONNECTION | FEATURE_ERROR | FEATURE_WATCHDEPTH,
        )
    }

    /// Wraps a page, advertising the given features (as set with SET_FEATURE).
    pub fn with_features(mem: M, notify: N, features: u32) -> Self {
        // Features are only ever added: keep bits an earlier server advertised.
        let old = mem.read_u32(SERVER_FEATURES);
        mem.write_u32(SERVER_FEATURES, old | features);
        RingChannel {
            mem,
            notify,
            features: old | features,
        }
    }

    /// The page.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    fn check(cons: u32, prod: u32) -> Result<u32, RingError> {
        let used = prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(RingError::BadIndex { cons, prod });
        }
        Ok(used)
    }

    /// Copies up to `max` request bytes out of the request ring into `out`.
    pub fn read_requests(&self, out: &mut Vec<u8>, max: usize) -> Result<usize, RingError> {
        let cons = self.mem.read_u32(REQ_CONS);
        let prod = self.mem.read_u32(REQ_PROD);
        let avail = (Self::check(cons, prod)? as usize).min(max);
        if avail == 0 {
            return Ok(0);
        }
        // Read the data only after seeing the producer index.
        fence(Ordering::Acquire);
        let start = (cons % RING_SIZE) as usize;
        let first = avail.min(RING_SIZE as usize - start);
        let base = out.len();
        out.resize(base + avail, 0);
        self.mem
            .read_bytes(REQ_OFF + start, &mut out[base..base + first]);
        self.mem.read_bytes(REQ_OFF, &mut out[base + first..]);
        // Finish reading before handing the space back.
        fence(Ordering::SeqCst);
        self.mem
            .write_u32(REQ_CONS, cons.wrapping_add(avail as u32));
        self.notify.notify();
        Ok(avail)
    }

    /// Copies as much of `data` as fits into the response ring; returns the bytes written.
    pub fn write_responses(&self, data: &[u8]) -> Result<usize, RingError> {
        let cons = self.mem.read_u32(RSP_CONS);
        let prod = self.mem.read_u32(RSP_PROD);
        let free = (RING_SIZE - Self::check(cons, prod)?) as usize;
        let n = free.min(data.len());
        if n == 0 {
            return Ok(0);
        }
        fence(Ordering::SeqCst);
        let start = (prod % RING_SIZE) as usize;
        let first = n.min(RING_SIZE as usize - start);
        self.mem.write_bytes(RSP_OFF + start, &data[..first]);
        self.mem.write_bytes(RSP_OFF, &data[first..n]);
        // Publish the data before the producer index.
        fence(Ordering::Release);
        self.mem.write_u32(RSP_PROD, prod.wrapping_add(n as u32));
        self.notify.notify();
        Ok(n)
    }

    /// Handles a guest-initiated reconnect: if requested, empties both rings and reports
    /// the connection as re-established. Returns whether a reset happened.
    pub fn handle_reconnect(&self) -> bool {
        if self.features & FEATURE_RECONNECTION == 0 || self.mem.read_u32(CONNECTION) != RECONNECT {
            return false;
        }
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, ERROR] {
            self.mem.write_u32(off, 0);
        }
        fence(Ordering::SeqCst);
        self.mem.write_u32(CONNECTION, CONNECTED);
        self.notify.notify();
        true
    }

    /// Reports a fatal error to the guest in the error word.
    pub fn set_error(&self, code: u32) {
        if self.features & FEATURE_ERROR != 0 {
            self.mem.write_u32(ERROR, code);
        }
        self.notify.notify();
    }
}

/// A domain's connection to Xenstore through its ring: the glue between a [`RingChannel`]
/// and the engine. Call [`RingConnection::pump`] whenever the guest notifies.
#[derive(Debug)]
pub struct RingConnection<M, N> {
    chan: RingChannel<M, N>,
    conn: ConnId,
    decoder: Decoder,
    out: Vec<u8>,
    /// Length of each message in `out`, first one possibly partly written already.
    out_msgs: std::collections::VecDeque<usize>,
    /// Bytes of the first message in `out_msgs` already written to the ring.
    head_written: usize,
    failed: bool,
}

impl<M: RingMemory, N: Notify> RingConnection<M, N> {
    /// Queues engine output, remembering where each message ends.
    fn enqueue(&mut self, bytes: Vec<u8>) {
        let mut rest = &bytes[..];
        while rest.len() >= crate::wire::HEADER_LEN {
            let mut h = [0u8; crate::wire::HEADER_LEN];
            h.copy_from_slice(&rest[..crate::wire::HEADER_LEN]);
            let len = crate::wire::HEADER_LEN + crate::wire::Header::parse(&h).len as usize;
            self.out_msgs.push_back(len);
            rest = &rest[len.min(rest.len())..];
        }
        self.out.extend_from_slice(&bytes);
    }

    /// Accounts for `n` bytes written to the ring.
    fn written(&mut self, n: usize) {
        self.out.drain(..n);
        let mut w = self.head_written + n;
        while let Some(&len) = self.out_msgs.front() {
            if w < len {
                break;
            }
            w -= len;
            self.out_msgs.pop_front();
        }
        self.head_written = w;
    }

    fn reset_output(&mut self) {
        self.out.clear();
        self.out_msgs.clear();
        self.head_written = 0;
    }

    /// Connects domain `domid`'s ring to the engine.
    pub fn new(xs: &mut Xenstore, domid: u32, chan: RingChannel<M, N>) -> Self {
        let conn = xs.connect(crate::server::ConnKind::Domain(domid));
        RingConnection {
            chan,
            conn,
            decoder: Decoder::new(),
            out: Vec::new(),
            out_msgs: std::collections::VecDeque::new(),
            head_written: 0,
            failed: false,
        }
    }

    /// The engine's id for this connection.
    pub fn conn_id(&self) -> ConnId {
        self.conn
    }

    /// The channel.
    pub fn channel(&self) -> &RingChannel<M, N> {
        &self.chan
    }

    /// Moves requests in and replies/events out until neither can progress. Requests are
    /// not taken while replies are backed up past the outstanding-request quota, so a guest
    /// that never reads its responses only stalls itself.
    pub fn pump(&mut self, xs: &mut Xenstore) -> Result<(), RingError> {
        // A guest-requested reconnect resets everything, even after an error.
        if self.chan.handle_reconnect() {
            self.decoder = Decoder::new();
            self.reset_output();
            self.failed = false;
            xs.reset_connection(self.conn);
        }
        if self.failed {
            return Ok(());
        }
        let r = self.pump_inner(xs);
        if let Err(e) = &r {
            self.failed = true;
            self.decoder = Decoder::new();
            self.reset_output();
            xs.reset_connection(self.conn);
            let code = match e {
                RingError::BadIndex { .. } => ERROR_RINGIDX,
                RingError::Frame(_) => ERROR_PROTO,
            };
            self.chan.set_error(code);
        }
        r
    }

    fn pump_inner(&mut self, xs: &mut Xenstore) -> Result<(), RingError> {
        // Replies (and events) the guest has not consumed yet count as outstanding requests:
        // past the quota no more requests are taken, so a guest that never reads its
        // responses only stalls itself.
        let limit = xs.quotas().outstanding_requests;
        loop {
            let fresh = xs.take_output(self.conn);
            self.enqueue(fresh);
            let wrote = self.chan.write_responses(&self.out)?;
            self.written(wrote);
            if self.out_msgs.len() >= limit {
                return Ok(());
            }
            let mut buf = Vec::new();
            let got = self.chan.read_requests(&mut buf, RING_SIZE as usize)?;
            self.decoder.feed(&buf);
            let mut handled = false;
            while self.out_msgs.len() < limit {
                let Some(msg) = self.decoder.next_message()? else {
                    break;
                };
                xs.handle(self.conn, &msg);
                let fresh = xs.take_output(self.conn);
                self.enqueue(fresh);
                handled = true;
            }
            if got == 0 && wrote == 0 && !handled && !xs.has_output(self.conn) {
                return Ok(());
            }
        }
    }
}

/// A page in ordinary memory, for tests and for a Xenstore that lives in the same process as
/// its guest.
#[derive(Debug, Clone)]
pub struct MemPage(Arc<Mutex<Vec<u8>>>);

impl Default for MemPage {
    fn default() -> Self {
        MemPage(Arc::new(Mutex::new(vec![0u8; 4096])))
    }
}

impl MemPage {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
}

impl RingMemory for MemPage {
    fn read_u32(&self, off: usize) -> u32 {
        self.with(|p| u32::from_le_bytes([p[off], p[off + 1], p[off + 2], p[off + 3]]))
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.with(|p| p[off..off + 4].copy_from_slice(&v.to_le_bytes()))
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.with(|p| buf.copy_from_slice(&p[off..off + buf.len()]))
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.with(|p| p[off..off + data.len()].copy_from_slice(data))
    }
}

/// The guest's side of a ring, as a guest kernel drives it (used in tests).
#[derive(Debug, Clone, Default)]
pub struct GuestEnd {
    /// The shared page.
    pub page: MemPage,
}

impl GuestEnd {
    /// Writes as much of `data` into the request ring as fits; returns the bytes written.
    pub fn send(&self, data: &[u8]) -> usize {
        let p = &self.page;
        let cons = p.read_u32(REQ_CONS);
        let prod = p.read_u32(REQ_PROD);
        let free = (RING_SIZE - prod.wrapping_sub(cons)) as usize;
        let n = free.min(data.len());
        for (i, b) in data[..n].iter().enumerate() {
            p.write_bytes(
                REQ_OFF + (prod.wrapping_add(i as u32) % RING_SIZE) as usize,
                &[*b],
            );
        }
        p.write_u32(REQ_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Takes every byte waiting in the response ring.
    pub fn receive(&self) -> Vec<u8> {
        let p = &self.page;
        let cons = p.read_u32(RSP_CONS);
        let prod = p.read_u32(RSP_PROD);
        let mut out = Vec::new();
        for i in 0..prod.wrapping_sub(cons) {
            let mut b = [0u8];
            p.read_bytes(
                RSP_OFF + (cons.wrapping_add(i) % RING_SIZE) as usize,
                &mut b,
            );
            out.push(b[0]);
        }
        p.write_u32(RSP_CONS, prod);
        out
    }
}

/// A [`Notify`] that counts notifications (tests) .
#[derive(Debug, Clone, Default)]
pub struct CountingNotify(pub Arc<std::sync::atomic::AtomicUsize>);

impl Notify for CountingNotify {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Decoder, Header, Message, MsgType};

    fn setup() -> (
        Xenstore,
        GuestEnd,
        RingConnection<MemPage, CountingNotify>,
        CountingNotify,
    ) {
        let mut xs = Xenstore::default();
        let guest = GuestEnd::default();
        let n = CountingNotify::default();
        let chan = RingChannel::new(guest.page.clone(), n.clone());
        let rc = RingConnection::new(&mut xs, 5, chan);
        (xs, guest, rc, n)
    }

    fn replies(bytes: &[u8]) -> Vec<Message> {
        let mut d = Decoder::new();
        d.feed(bytes);
        std::iter::from_fn(|| d.next_message().unwrap()).collect()
    }

    #[test]
    fn request_reply_over_ring_with_wraparound() {
        let (mut xs, guest, mut rc, n) = setup();
        assert_eq!(
            guest.page.read_u32(SERVER_FEATURES),
            FEATURE_RECONNECTION | FEATURE_ERROR | FEATURE_WATCHDEPTH
        );
        // Domain 5 may not write under /, so give it a home it owns.
        let admin = xs.connect(crate::server::ConnKind::Socket);
        xs.handle(
            admin,
            &Message::new(MsgType::Write, 1, 0, b"/local/domain/5\0".to_vec()),
        );
        xs.handle(
            admin,
            &Message::new(MsgType::SetPerms, 2, 0, b"/local/domain/5\0n5\0".to_vec()),
        );
        xs.take_output(admin);
        // Enough traffic to wrap both 1024-byte rings several times.
        for i in 0..200u32 {
            let value = format!("value-{i}-{}", "x".repeat(i as usize % 50));
            let mut p = format!("data/k{i}").into_bytes();
            p.push(0);
            p.extend_from_slice(value.as_bytes());
            assert!(guest.send(&Message::new(MsgType::Write, i, 0, p).encode()) > 0);
            rc.pump(&mut xs).unwrap();
            let r = replies(&guest.receive());
            assert_eq!(r.len(), 1);
            assert_eq!((r[0].header.req_id, &r[0].payload[..]), (i, &b"OK\0"[..]));
            guest.send(
                &Message::new(MsgType::Read, i, 0, format!("data/k{i}\0").into_bytes()).encode(),
            );
            rc.pump(&mut xs).unwrap();
            let r = replies(&guest.receive());
            assert_eq!(r[0].payload, value.as_bytes());
        }
        assert!(n.0.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn reply_larger_than_ring_is_delivered_in_pieces() {
        let (mut xs, guest, mut rc, _) = setup();
        let admin = xs.connect(crate::server::ConnKind::Socket);
        let mut p = b"/big\0".to_vec();
        p.extend(std::iter::repeat_n(b'z', 3000));
        xs.handle(admin, &Message::new(MsgType::Write, 1, 0, p));
        xs.handle(
            admin,
            &Message::new(MsgType::SetPerms, 2, 0, b"/big\0n0\0r5\0".to_vec()),
        );
        guest.send(&Message::new(MsgType::Read, 9, 0, b"/big\0".to_vec()).encode());
        let mut got = Vec::new();
        for _ in 0..10 {
            rc.pump(&mut xs).unwrap();
            got.extend(guest.receive());
        }
        let r = replies(&got);
        assert_eq!(r[0].payload.len(), 3000);
    }

    #[test]
    fn bad_indices_and_oversized_payloads_stop_the_ring() {
        let (mut xs, guest, mut rc, _) = setup();
        guest.page.write_u32(REQ_PROD, 5000);
        assert!(matches!(rc.pump(&mut xs), Err(RingError::BadIndex { .. })));
        assert_eq!(guest.page.read_u32(ERROR), ERROR_RINGIDX);

        let (mut xs, guest, mut rc, _) = setup();
        let h = Header {
            ty: MsgType::Read as u32,
            req_id: 1,
            tx_id: 0,
            len: 5000,
        };
        guest.send(&h.to_bytes());
        assert!(matches!(rc.pump(&mut xs), Err(RingError::Frame(_))));
        assert_eq!(guest.page.read_u32(ERROR), ERROR_PROTO);
    }

    #[test]
    fn guest_that_never_reads_replies_only_stalls_itself() {
        let (mut xs, guest, mut rc, _) = setup();
        let req = Message::new(MsgType::GetDomainPath, 1, 0, b"5\0".to_vec()).encode();
        // Fill the request ring again and again without ever consuming a response.
        let mut sent = 0;
        for _ in 0..200 {
            sent += guest.send(&req);
            rc.pump(&mut xs).unwrap();
        }
        let unread = guest
            .page
            .read_u32(REQ_PROD)
            .wrapping_sub(guest.page.read_u32(REQ_CONS));
        assert!(
            unread > 0,
            "Xenstore kept taking requests from a guest that reads nothing"
        );
        // Replies waiting in Xenstore stay bounded by the outstanding-request quota.
        let limit = xs.quotas().outstanding_requests * 64;
        assert!(
            rc.out.len() <= limit + RING_SIZE as usize,
            "backlog {}",
            rc.out.len()
        );
        assert!(sent > RING_SIZE as usize);
        // Once the guest reads, service resumes.
        let mut replies_seen = 0;
        for _ in 0..200 {
            replies_seen += replies(&guest.receive()).len();
            rc.pump(&mut xs).unwrap();
        }
        replies_seen += replies(&guest.receive()).len();
        // Every complete request got its reply (a trailing partial one waits for its rest).
        assert_eq!(replies_seen, sent / req.len());
    }

    #[test]
    fn guest_reconnect_resets_the_rings() {
        let (mut xs, guest, mut rc, _) = setup();
        guest.send(&Message::new(MsgType::Watch, 1, 0, b"/\0t\0".to_vec()).encode());
        rc.pump(&mut xs).unwrap();
        assert_eq!(replies(&guest.receive()).len(), 2);
        guest.send(b"partial");
        guest.page.write_u32(CONNECTION, RECONNECT);
        rc.pump(&mut xs).unwrap();
        assert_eq!(guest.page.read_u32(CONNECTION), CONNECTED);
        assert_eq!(guest.page.read_u32(REQ_PROD), 0);
        guest.send(&Message::new(MsgType::GetDomainPath, 3, 0, b"5\0".to_vec()).encode());
        rc.pump(&mut xs).unwrap();
        assert_eq!(replies(&guest.receive())[0].payload, b"/local/domain/5\0");
        // The watch was discarded with the old connection state.
        assert_eq!(
            replies(&{
                guest.send(&Message::new(MsgType::Unwatch, 4, 0, b"/\0t\0".to_vec()).encode());
                rc.pump(&mut xs).unwrap();
                guest.receive()
            })[0]
                .payload,
            b"ENOENT\0"
        );
        // After a protocol error, a reconnect brings the ring back.
        guest.send(
            &Header {
                ty: 2,
                req_id: 1,
                tx_id: 0,
                len: 9999,
            }
            .to_bytes(),
        );
        assert!(rc.pump(&mut xs).is_err());
        guest.page.write_u32(CONNECTION, RECONNECT);
        rc.pump(&mut xs).unwrap();
        guest.send(&Message::new(MsgType::GetDomainPath, 5, 0, b"5\0".to_vec()).encode());
        rc.pump(&mut xs).unwrap();
        assert_eq!(replies(&guest.receive())[0].header.req_id, 5);
    }
}
