//! The daemon serving a domain's ring: INTRODUCE over the socket attaches the ring through
//! the VMM's [`RingAttacher`]; the guest's requests and watch events flow over the page; after
//! a restart the ring and the guest's watches come back without the guest doing anything.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use xenstore::client::Client;
use xenstore::daemon::{Daemon, DaemonConfig, RingAttacher, RingPort};
use xenstore::quota::Quotas;
use xenstore::transport::ring::{GuestEnd, MemPage, Notify, RingMemory};
use xenstore::wire::{Decoder, Message, MsgType};

fn eventfd() -> OwnedFd {
    // SAFETY: eventfd(2) with valid flags; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd");
    // SAFETY: fd is a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn signal(fd: RawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a valid buffer to an eventfd.
    let _ = unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
}

/// A guest page plus two event channels emulated by eventfds.
struct TestPort {
    page: MemPage,
    to_daemon: Arc<OwnedFd>,
}

impl RingMemory for TestPort {
    fn read_u32(&self, off: usize) -> u32 {
        self.page.read_u32(off)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.page.write_u32(off, v)
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.page.read_bytes(off, buf)
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.page.write_bytes(off, data)
    }
}

impl Notify for TestPort {
    fn notify(&self) {}
}

impl RingPort for TestPort {
    fn event_fd(&self) -> RawFd {
        self.to_daemon.as_raw_fd()
    }
    fn ack_event(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads 8 bytes into a valid buffer from an eventfd.
        let _ = unsafe { libc::read(self.to_daemon.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }
}

struct Attacher {
    page: MemPage,
    to_daemon: Arc<OwnedFd>,
    attached: mpsc::Sender<(u32, i64, u32)>,
}

impl RingAttacher for Attacher {
    fn attach(&mut self, domid: u32, gfn: i64, evtchn: u32) -> Option<Arc<dyn RingPort>> {
        self.attached.send((domid, gfn, evtchn)).ok()?;
        Some(Arc::new(TestPort {
            page: self.page.clone(),
            to_daemon: self.to_daemon.clone(),
        }))
    }
}

struct Running {
    stop: UnixStream,
    thread: std::thread::JoinHandle<()>,
}

fn start(
    cfg: DaemonConfig,
    page: MemPage,
    fd: Arc<OwnedFd>,
    tx: mpsc::Sender<(u32, i64, u32)>,
) -> Running {
    let (stop_rx, stop) = UnixStream::pair().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let att = Attacher {
            page,
            to_daemon: fd,
            attached: tx,
        };
        let mut d = Daemon::new(cfg, Some(Box::new(att))).expect("daemon");
        ready_tx.send(()).unwrap();
        d.run(Some(stop_rx)).expect("run");
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Running { stop, thread }
}

fn stop(r: Running) {
    use std::io::Write;
    (&r.stop).write_all(b"x").unwrap();
    r.thread.join().unwrap();
}

/// Sends a request over the ring and waits for messages until `pred` is satisfied.
fn guest_call(g: &GuestEnd, fd: RawFd, m: Option<Message>, want: usize) -> Vec<Message> {
    if let Some(m) = m {
        assert_eq!(g.send(&m.encode()), m.encode().len());
        signal(fd);
    }
    let mut d = Decoder::new();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < want {
        assert!(Instant::now() < end, "no reply over the ring (got {got:?})");
        d.feed(&g.receive());
        while let Some(m) = d.next_message().unwrap() {
            got.push(m);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    got
}

#[test]
fn daemon_serves_ring_and_restores_it_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DaemonConfig {
        socket: dir.path().join("sock"),
        state_file: Some(dir.path().join("state.json")),
        save_interval: Duration::from_secs(60),
        quotas: Quotas::default(),
        max_clients: 1024,
    };
    let page = MemPage::default();
    let guest = GuestEnd { page: page.clone() };
    let fd = Arc::new(eventfd());
    let (tx, rx) = mpsc::channel();
    let run = start(cfg.clone(), page.clone(), fd.clone(), tx.clone());

    let mut dom0 = Client::connect(&cfg.socket).unwrap();
    dom0.mkdir(0, "/local/domain/12").unwrap();
    dom0.set_perms(0, "/local/domain/12", &["n12"]).unwrap();
    dom0.write(0, "/local/domain/12/name", b"guest12").unwrap();
    dom0.introduce(12, 0x1234, 7).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (12, 0x1234, 7)
    );

    let raw = fd.as_raw_fd();
    let r = guest_call(
        &guest,
        raw,
        Some(Message::new(MsgType::Read, 1, 0, b"name\0".to_vec())),
        1,
    );
    assert_eq!(
        (r[0].header.req_id, &r[0].payload[..]),
        (1, &b"guest12"[..])
    );
    let r = guest_call(
        &guest,
        raw,
        Some(Message::new(
            MsgType::Watch,
            2,
            0,
            b"device\0tok\0".to_vec(),
        )),
        2,
    );
    assert_eq!(r[0].payload, b"OK\0");
    assert_eq!(r[1].payload, b"device\0tok\0");
    dom0.write(0, "/local/domain/12/device/vif", b"1").unwrap();
    let r = guest_call(&guest, raw, None, 1);
    assert_eq!(r[0].header.ty, MsgType::WatchEvent as u32);
    assert_eq!(r[0].payload, b"device/vif\0tok\0");

    // Upgrade: stop and start; the ring is attached again and the guest's watch still works.
    stop(run);
    let run = start(cfg.clone(), page.clone(), fd.clone(), tx);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (12, 0x1234, 7)
    );
    let mut dom0 = Client::connect_retry(&cfg.socket, Duration::from_secs(5)).unwrap();
    dom0.write(0, "/local/domain/12/device/vbd", b"2").unwrap();
    let r = guest_call(&guest, raw, None, 1);
    assert_eq!(r[0].payload, b"device/vbd\0tok\0");
    let r = guest_call(
        &guest,
        raw,
        Some(Message::new(MsgType::Read, 3, 0, b"device/vif\0".to_vec())),
        1,
    );
    assert_eq!(r[0].payload, b"1");
    // RELEASE detaches the ring: the guest is no longer answered.
    dom0.request(MsgType::Release, 0, b"12\0").unwrap();
    guest.send(&Message::new(MsgType::Read, 4, 0, b"name\0".to_vec()).encode());
    signal(raw);
    std::thread::sleep(Duration::from_millis(100));
    assert!(guest.receive().is_empty());
    stop(run);
}
