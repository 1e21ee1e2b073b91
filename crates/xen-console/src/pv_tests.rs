//! The PV console end to end: guest (a page in host memory), backend thread and socket clients.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::io::{ErrorKind, Read};
use std::os::unix::net::{UnixListener, UnixStream};

use super::*;
use crate::ring::guest;
use crate::server::SCROLLBACK;
use crate::MemoryPage;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

/// A log the test can read back.
#[derive(Clone, Default)]
struct SharedLog(Arc<Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Setup {
    page: Arc<MemoryPage>,
    kick: EventFd,
    notified: Arc<AtomicUsize>,
    log: SharedLog,
    console: PvConsole,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let page = Arc::new(MemoryPage::default());
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let notified = Arc::new(AtomicUsize::new(0));
    let n = notified.clone();
    let log = SharedLog::default();
    let console = PvConsole::start(
        page.clone(),
        kick.try_clone().unwrap(),
        Box::new(move || {
            n.fetch_add(1, Ordering::SeqCst);
        }),
        &dir.path().join("c.sock"),
        Some(Box::new(log.clone())),
    )
    .unwrap();
    Setup {
        page,
        kick,
        notified,
        log,
        console,
        _dir: dir,
    }
}

fn client(s: &Setup) -> UnixStream {
    let c = UnixStream::connect(s.console.socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    c
}

/// Reads from `c` until `want` has arrived (everything read is returned).
fn read_until(c: &mut UnixStream, want: &[u8]) -> Vec<u8> {
    let end = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let mut scanned = 0;
    while !got[scanned..].windows(want.len()).any(|w| w == want) {
        scanned = got.len().saturating_sub(want.len());
        assert!(
            Instant::now() < end,
            "timed out waiting for {:?}; got {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
        match c.read(&mut buf) {
            Ok(0) => panic!("console closed"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// Plays the guest: writes all of `data` to the out ring, kicking the backend as it goes.
fn guest_write_all(s: &Setup, mut data: &[u8]) {
    let end = Instant::now() + Duration::from_secs(10);
    while !data.is_empty() {
        assert!(Instant::now() < end, "backend does not drain the out ring");
        let n = guest::write_output(&*s.page, data);
        data = &data[n..];
        s.kick.write(1).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn output_reaches_log_and_clients_and_a_late_client_gets_the_scrollback() {
    let s = setup();
    let mut early = client(&s);
    // Let the backend accept the first client before the guest writes.
    std::thread::sleep(Duration::from_millis(100));
    guest_write_all(&s, b"Debian GNU/Linux\nlogin: ");
    read_until(&mut early, b"login: ");
    let mut late = client(&s);
    let got = read_until(&mut late, b"login: ");
    assert_eq!(got, b"Debian GNU/Linux\nlogin: ");
    guest_write_all(&s, b"more");
    read_until(&mut early, b"more");
    read_until(&mut late, b"more");
    wait_for("the log", || {
        s.log.0.lock().unwrap().as_slice() == b"Debian GNU/Linux\nlogin: more"
    });
    assert!(
        s.notified.load(Ordering::SeqCst) > 0,
        "guest told space is free"
    );
}

#[test]
fn scrollback_keeps_only_the_last_64k() {
    let s = setup();
    let data: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    guest_write_all(&s, &data);
    guest_write_all(&s, b"END");
    wait_for("the out ring to drain", || {
        s.page.read_u32(ring::OUT_CONS) == s.page.read_u32(ring::OUT_PROD)
    });
    let mut c = client(&s);
    let got = read_until(&mut c, b"END");
    assert_eq!(got.len(), SCROLLBACK);
    let mut all = data.clone();
    all.extend_from_slice(b"END");
    assert_eq!(got, &all[all.len() - SCROLLBACK..]);
}

#[test]
fn input_from_two_clients_larger_than_the_ring_arrives_in_order() {
    let s = setup();
    let mut a = client(&s);
    let mut b = client(&s);
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    a.write_all(&big).unwrap();
    // Nothing more than the ring holds goes in before the guest reads.
    wait_for("the first ring-full", || {
        s.page.read_u32(ring::IN_PROD) == ring::IN_SIZE as u32
    });
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while got.len() < big.len() {
        assert!(Instant::now() < end, "input stalled at {}", got.len());
        let chunk = guest::read_input(&*s.page);
        if chunk.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        got.extend(chunk);
        // The guest notifies after consuming input.
        s.kick.write(1).unwrap();
    }
    assert_eq!(got, big);
    b.write_all(b"from b").unwrap();
    let mut got = Vec::new();
    wait_for("b's input", || {
        got.extend(guest::read_input(&*s.page));
        got == b"from b"
    });
    // Both still get output.
    guest_write_all(&s, b"echo");
    read_until(&mut a, b"echo");
    read_until(&mut b, b"echo");
}

#[test]
fn a_client_that_never_reads_does_not_hold_up_the_guest() {
    let s = setup();
    let stuck = client(&s);
    let mut live = client(&s);
    std::thread::sleep(Duration::from_millis(100));
    // Far more than the socket buffers and the client backlog hold.
    let data = vec![b'x'; 3 << 20];
    let reader = std::thread::spawn(move || {
        read_until(&mut live, b"DONE");
    });
    guest_write_all(&s, &data);
    guest_write_all(&s, b"DONE");
    reader.join().unwrap();
    drop(stuck);
}

#[test]
fn hostile_indices_are_survived_and_the_ring_recovers() {
    let s = setup();
    let mut c = client(&s);
    s.page.write_u32(ring::OUT_CONS, 5);
    s.page.write_u32(ring::OUT_PROD, 0x9000_0000);
    s.page.write_u32(ring::IN_CONS, 900);
    s.page.write_u32(ring::IN_PROD, 3);
    s.kick.write(1).unwrap();
    wait_for("the out ring reset", || {
        s.page.read_u32(ring::OUT_CONS) == 0x9000_0000
    });
    c.write_all(b"key").unwrap();
    // The ring is reset to empty at the guest's in_cons, and the input goes in after it.
    wait_for("input after the in ring reset", || {
        s.page.read_u32(ring::IN_PROD) == 903
    });
    assert_eq!(guest::read_input(&*s.page), b"key");
    guest_write_all(&s, b"still alive");
    read_until(&mut c, b"still alive");
}

#[test]
fn drop_stops_the_thread_and_removes_the_socket() {
    let s = setup();
    let path = s.console.socket().to_path_buf();
    let mut c = client(&s);
    assert!(path.exists());
    guest_write_all(&s, b"hi");
    read_until(&mut c, b"hi");
    drop(s.console);
    assert!(!path.exists());
    let mut buf = [0u8; 8];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        c.read(&mut buf).unwrap(),
        0,
        "clients see the console close"
    );
}

#[test]
fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(UnixListener::bind(&path).unwrap());
    let start = || {
        PvConsole::start(
            Arc::new(MemoryPage::default()),
            EventFd::new(EFD_NONBLOCK).unwrap(),
            Box::new(|| {}),
            &path,
            None,
        )
    };
    let first = start().unwrap();
    let err = start().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    drop(first);
}
