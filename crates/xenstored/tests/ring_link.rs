//! The real `oxenstored` serving a guest ring that lives in another process's memfd: a
//! `LinkServer` over a fake guest plays the VMM, INTRODUCE comes from a dom0 socket client,
//! and the test drives the ring page as the guest kernel would.

mod common;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend_link::testing::FakeGuest;
use backend_link::{socket_path_in, LinkServer};
use common::Daemon;
use xenstore::client::Client;
use xenstore::transport::ring::{
    REQ_CONS, REQ_OFF, REQ_PROD, RING_SIZE, RSP_CONS, RSP_OFF, RSP_PROD,
};
use xenstore::wire::{Decoder, Message, MsgType};

const DOMID: u32 = 7;
const GFN: u64 = 0xfeffc;
const PORT: u32 = 3;

/// The guest kernel's side of the Xenstore ring, on the fake guest's memory.
struct Guest {
    mem: Arc<FakeGuest>,
    decoder: Decoder,
    next_req: u32,
    /// Messages received but not yet asked for.
    pending: VecDeque<Message>,
}

impl Guest {
    fn word(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        self.mem.read(GFN, off as u64, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn set_word(&self, off: usize, v: u32) {
        self.mem.write(GFN, off as u64, &v.to_le_bytes()).unwrap();
    }

    /// Puts a request in the request ring and sends on the event channel.
    fn send(&mut self, ty: MsgType, payload: &[u8]) -> u32 {
        self.next_req += 1;
        let bytes = Message::new(ty, self.next_req, 0, payload.to_vec()).encode();
        let prod = self.word(REQ_PROD);
        assert!(
            prod.wrapping_sub(self.word(REQ_CONS)) as usize + bytes.len() <= RING_SIZE as usize,
            "request ring full"
        );
        for (i, b) in bytes.iter().enumerate() {
            let at = REQ_OFF + (prod.wrapping_add(i as u32) % RING_SIZE) as usize;
            self.mem.write(GFN, at as u64, &[*b]).unwrap();
        }
        fence(Ordering::SeqCst);
        self.set_word(REQ_PROD, prod.wrapping_add(bytes.len() as u32));
        self.mem.kick(PORT).unwrap();
        self.next_req
    }

    /// Takes whatever the response ring holds and decodes complete messages.
    fn take(&mut self) -> Vec<Message> {
        let cons = self.word(RSP_CONS);
        let prod = self.word(RSP_PROD);
        let mut bytes = Vec::new();
        for i in 0..prod.wrapping_sub(cons) {
            let mut b = [0u8];
            let at = RSP_OFF + (cons.wrapping_add(i) % RING_SIZE) as usize;
            self.mem.read(GFN, at as u64, &mut b).unwrap();
            bytes.push(b[0]);
        }
        self.set_word(RSP_CONS, prod);
        self.decoder.feed(&bytes);
        std::iter::from_fn(|| self.decoder.next_message().unwrap()).collect()
    }

    /// Waits (bounded) for the next `want` messages, woken by Xenstore raising the port.
    fn receive(&mut self, want: usize) -> Vec<Message> {
        let end = Instant::now() + Duration::from_secs(10);
        while self.pending.len() < want {
            let got = &self.pending;
            assert!(Instant::now() < end, "no reply over the ring (got {got:?})");
            self.mem
                .wait_call(PORT, Duration::from_millis(100))
                .unwrap();
            let fresh = self.take();
            self.pending.extend(fresh);
        }
        self.pending.drain(..want).collect()
    }

    /// Sends a request and returns its reply payload (events that came first are kept).
    fn call(&mut self, ty: MsgType, payload: &[u8]) -> Vec<u8> {
        let id = self.send(ty, payload);
        let m = self.receive(1).remove(0);
        assert_eq!(m.header.req_id, id, "{m:?}");
        assert_eq!(
            m.header.ty,
            ty as u32,
            "{m:?}: {:?}",
            String::from_utf8_lossy(&m.payload)
        );
        m.payload
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` has the fake guest's memfd mapped.
fn maps_guest(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .contains("memfd:fake-guest")
}

fn watch_event(m: &Message) -> (String, String) {
    assert_eq!(m.header.ty, MsgType::WatchEvent as u32, "{m:?}");
    let parts: Vec<String> = m
        .payload
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    (parts[0].clone(), parts[1].clone())
}

fn start(run_dir: &Path) -> Daemon {
    Daemon::start(&["--run-dir", run_dir.to_str().unwrap()])
}

#[test]
fn guest_ring_in_another_process_is_served_released_and_reattached() {
    let run = tempfile::tempdir().unwrap();
    let mem = Arc::new(FakeGuest::new(GFN, 1).unwrap());
    let _vmm = LinkServer::start(&socket_path_in(run.path(), DOMID), mem.clone()).unwrap();
    let mut d = start(run.path());
    let mut dom0 = Client::connect(&d.socket).unwrap();
    dom0.mkdir(0, "/local/domain/7").unwrap();
    dom0.set_perms(0, "/local/domain/7", &["n7"]).unwrap();
    dom0.introduce(DOMID, GFN as i64, PORT).unwrap();
    wait_for("oxenstored to attach the ring", || mem.is_bound(PORT));
    assert!(maps_guest(d.child.id()));

    let mut g = Guest {
        mem: mem.clone(),
        decoder: Decoder::new(),
        next_req: 0,
        pending: VecDeque::new(),
    };
    assert_eq!(g.call(MsgType::Write, b"data/key\0from the ring"), b"OK\0");
    assert_eq!(g.call(MsgType::Read, b"data/key\0"), b"from the ring");
    assert_eq!(
        dom0.read(0, "/local/domain/7/data/key").unwrap(),
        b"from the ring"
    );
    // A watch fires over the ring: once when set, then on dom0's change.
    assert_eq!(g.call(MsgType::Watch, b"data\0tok\0"), b"OK\0");
    assert_eq!(watch_event(&g.receive(1)[0]), ("data".into(), "tok".into()));
    dom0.write(0, "/local/domain/7/data/other", b"x").unwrap();
    assert_eq!(
        watch_event(&g.receive(1)[0]),
        ("data/other".into(), "tok".into())
    );

    // Restart: oxenstored maps the ring again from its state file, watch included.
    d.stop();
    d.restart(&["--run-dir", run.path().to_str().unwrap()]);
    wait_for("the restarted oxenstored to map the ring", || {
        maps_guest(d.child.id())
    });
    assert_eq!(g.call(MsgType::Read, b"data/key\0"), b"from the ring");
    dom0.reconnect(Duration::from_secs(5)).unwrap();
    dom0.write(0, "/local/domain/7/data/again", b"y").unwrap();
    assert_eq!(
        watch_event(&g.receive(1)[0]),
        ("data/again".into(), "tok".into())
    );

    // RELEASE: the mapping goes and the ring is no longer served.
    dom0.request(MsgType::Release, 0, b"7\0").unwrap();
    wait_for("oxenstored to unmap the ring", || !maps_guest(d.child.id()));
    let prod = g.word(RSP_PROD);
    g.send(MsgType::Read, b"data/key\0");
    assert_eq!(mem.wait_call(PORT, Duration::from_millis(300)).unwrap(), 0);
    assert_eq!(g.word(RSP_PROD), prod, "a released ring got a reply");
    assert!(!dom0.is_domain_introduced(DOMID).unwrap());
}

#[test]
fn introduce_without_a_vmm_socket_is_logged_and_harmless() {
    let run = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socket");
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oxenstored"))
        .arg("--socket")
        .arg(&socket)
        .arg("--no-persist")
        .arg("--run-dir")
        .arg(run.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket);
    let mut dom0 = Client::connect(&socket).unwrap();
    dom0.introduce(8, GFN as i64, PORT).unwrap();
    assert!(dom0.is_domain_introduced(8).unwrap());
    dom0.write(0, "/still/serving", b"yes").unwrap();
    let want = socket_path_in(run.path(), 8).display().to_string();
    wait_for("the warning", || {
        std::fs::read_to_string(&log).unwrap().contains(&want)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Xenstore ring not served"), "{text}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_vmm_that_exits_without_release_gets_its_memory_back() {
    let run = tempfile::tempdir().unwrap();
    let mem = Arc::new(FakeGuest::new(GFN, 1).unwrap());
    let vmm = LinkServer::start(&socket_path_in(run.path(), DOMID), mem.clone()).unwrap();
    let d = start(run.path());
    let mut dom0 = Client::connect(&d.socket).unwrap();
    dom0.introduce(DOMID, GFN as i64, PORT).unwrap();
    wait_for("oxenstored to map the ring", || maps_guest(d.child.id()));
    // The VMM crashes: no RELEASE comes, but oxenstored must not pin the guest's memory.
    drop(vmm);
    wait_for("oxenstored to unmap the ring", || !maps_guest(d.child.id()));
    assert!(dom0.is_domain_introduced(DOMID).unwrap());
    dom0.write(0, "/still/serving", b"yes").unwrap();
    dom0.request(MsgType::Release, 0, b"7\0").unwrap();
    assert!(!dom0.is_domain_introduced(DOMID).unwrap());
}
