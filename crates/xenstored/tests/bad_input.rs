//! Hostile and broken clients: each gets Xen's error or is disconnected, and the daemon keeps
//! serving everyone else.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::Daemon;
use xenstore::client::{Client, ClientError};
use xenstore::wire::{Header, Message, MsgType};
use xenstore::XsError;

fn xs_err(e: Result<impl std::fmt::Debug, ClientError>) -> XsError {
    match e {
        Err(ClientError::Xs(x)) => x,
        other => panic!("expected a Xenstore error, got {other:?}"),
    }
}

fn closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn errors_by_name() {
    let d = Daemon::start(&["--no-persist"]);
    let mut c = Client::connect(&d.socket).unwrap();
    for bad in ["/a/", "/a//b", "/a b", "/a.b", "", "@foo"] {
        assert_eq!(xs_err(c.read(0, bad)), XsError::Inval, "{bad:?}");
        assert_eq!(xs_err(c.write(0, bad, b"x")), XsError::Inval, "{bad:?}");
    }
    let long = format!("/{}", "x".repeat(3100));
    assert_eq!(xs_err(c.write(0, &long, b"")), XsError::Inval);
    assert_eq!(xs_err(c.read(0, "/nope")), XsError::NoEnt);
    assert_eq!(xs_err(c.rm(0, "/nope/deeper")), XsError::NoEnt);
    c.rm(0, "/nope").unwrap();
    // Raw requests: (type, tx id, payload, expected error).
    let raw: &[(MsgType, u32, &[u8], XsError)] = &[
        (MsgType::Read, 0, b"/tool", XsError::Inval),
        (MsgType::Read, 77, b"/tool\0", XsError::NoEnt),
        (MsgType::TransactionEnd, 77, b"T\0", XsError::NoEnt),
        (MsgType::WatchEvent, 0, b"/a\0t\0", XsError::NoSys),
        (MsgType::Error, 0, b"EINVAL\0", XsError::NoSys),
        (MsgType::TransactionEnd, 0, b"X\0", XsError::Inval),
        (MsgType::SetPerms, 0, b"/tool\0q1\0", XsError::Inval),
        (MsgType::Introduce, 0, b"0\x001\x001\0", XsError::Inval),
        (MsgType::Release, 0, b"9\0", XsError::NoEnt),
        (MsgType::GetDomainPath, 0, b"x\0", XsError::Inval),
        (MsgType::Unwatch, 0, b"/w\0other\0", XsError::NoEnt),
    ];
    for (ty, tx, payload, want) in raw {
        assert_eq!(
            xs_err(c.request(*ty, *tx, payload)),
            *want,
            "{ty:?} {payload:?}"
        );
    }
    c.watch("/w", "t").unwrap();
    assert_eq!(xs_err(c.watch("/w", "t")), XsError::Exist);
    // A directory listing too large for one reply is E2BIG; DIRECTORY_PART pages it.
    for i in 0..700 {
        c.write(0, &format!("/big/entry-{i:05}"), b"").unwrap();
    }
    assert_eq!(xs_err(c.directory(0, "/big")), XsError::TooBig);
    let ls = d.ok("xenstore-list", &["/big"]);
    assert_eq!(ls.lines().count(), 700);
}

#[test]
fn unknown_types_get_enosys() {
    let d = Daemon::start(&["--no-persist"]);
    let mut s = UnixStream::connect(&d.socket).unwrap();
    for ty in [20u32, 27, 1000, 0xffff] {
        let h = Header {
            ty,
            req_id: ty,
            tx_id: 0,
            len: 0,
        };
        s.write_all(&h.to_bytes()).unwrap();
        let mut reply = [0u8; 16 + 7];
        s.read_exact(&mut reply).unwrap();
        let rh = Header::parse(reply[..16].try_into().unwrap());
        assert_eq!((rh.ty, rh.req_id), (MsgType::Error as u32, ty));
        assert_eq!(&reply[16..], b"ENOSYS\0");
    }
}

#[test]
fn oversized_payload_disconnects_only_that_client() {
    let d = Daemon::start(&["--no-persist"]);
    let mut good = Client::connect(&d.socket).unwrap();
    let mut bad = UnixStream::connect(&d.socket).unwrap();
    let h = Header {
        ty: MsgType::Write as u32,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    bad.write_all(&h.to_bytes()).unwrap();
    assert!(closed(&mut bad));
    // Garbage: a header claiming 2^32-1 bytes.
    let mut bad = UnixStream::connect(&d.socket).unwrap();
    bad.write_all(&[0xff; 16]).unwrap();
    assert!(closed(&mut bad));
    good.write(0, "/still", b"serving").unwrap();
    assert_eq!(good.read(0, "/still").unwrap(), b"serving");
}

#[test]
fn half_sent_message_does_not_block_others() {
    let d = Daemon::start(&["--no-persist"]);
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    let m = Message::new(MsgType::Write, 1, 0, b"/slow\0value".to_vec()).encode();
    slow.write_all(&m[..10]).unwrap();
    let mut good = Client::connect(&d.socket).unwrap();
    good.write(0, "/fast", b"1").unwrap();
    slow.write_all(&m[10..]).unwrap();
    let mut reply = [0u8; 16 + 3];
    slow.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[16..], b"OK\0");
    assert_eq!(good.read(0, "/slow").unwrap(), b"value");
}

#[test]
fn flooding_client_that_never_reads() {
    let d = Daemon::start(&["--no-persist", "--max-backlog", "16384"]);
    let mut good = Client::connect(&d.socket).unwrap();
    good.write(0, "/flood/x", &[b'v'; 3000]).unwrap();
    // The flooder sends reads and never reads a reply: the daemon stops reading from it
    // (its own socket fills) and serves the others.
    let mut flooder = UnixStream::connect(&d.socket).unwrap();
    flooder.set_nonblocking(true).unwrap();
    let req = Message::new(MsgType::Read, 1, 0, b"/flood/x\0".to_vec()).encode();
    let mut sent = 0usize;
    for _ in 0..200_000 {
        match flooder.write(&req) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent > 0);
    for i in 0..50 {
        good.write(0, "/flood/y", format!("{i}").as_bytes())
            .unwrap();
        assert_eq!(good.read(0, "/flood/y").unwrap(), format!("{i}").as_bytes());
    }
    // A watcher that stops reading is disconnected once its events pass the backlog cap.
    let mut deaf = UnixStream::connect(&d.socket).unwrap();
    let w = Message::new(MsgType::Watch, 1, 0, b"/flood\0tok\0".to_vec()).encode();
    deaf.write_all(&w).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Each write sends the deaf watcher an event; stop once the daemon has dropped it.
    deaf.set_nonblocking(true).unwrap();
    let mut dropped = false;
    for i in 0..40_000 {
        good.write(0, "/flood/z", format!("{i}").as_bytes())
            .unwrap();
        if i % 500 == 0 && deaf.write(&[]).is_err() {
            dropped = true;
            break;
        }
    }
    deaf.set_nonblocking(false).unwrap();
    assert!(dropped || closed(&mut deaf), "deaf watcher still connected");
    assert_eq!(good.read(0, "/flood/y").unwrap(), b"49");
}

#[test]
fn pipelined_burst_is_fully_answered() {
    let d = Daemon::start(&["--no-persist"]);
    let mut c = Client::connect(&d.socket).unwrap();
    c.write(0, "/burst", &[b'b'; 2000]).unwrap();
    let s = UnixStream::connect(&d.socket).unwrap();
    let mut w = s.try_clone().unwrap();
    const N: u32 = 20_000;
    // Far more requests than any buffer holds, written without waiting for replies.
    let writer = std::thread::spawn(move || {
        let mut all = Vec::new();
        for i in 0..N {
            all.extend(Message::new(MsgType::Read, i, 0, b"/burst\0".to_vec()).encode());
        }
        w.write_all(&all).unwrap();
    });
    let mut r = s;
    r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reply = vec![0u8; 16 + 2000];
    for i in 0..N {
        r.read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("reply {i}: {e}"));
        let h = Header::parse(reply[..16].try_into().unwrap());
        assert_eq!((h.req_id, h.len), (i, 2000));
    }
    writer.join().unwrap();
}

#[test]
fn connection_flood_is_refused_past_the_limit() {
    let d = Daemon::start(&["--no-persist", "--max-clients", "4"]);
    // The daemon may still be closing the start-up probe connection: retry until four
    // clients are served.
    let mut held: Vec<Client> = Vec::new();
    for _ in 0..200 {
        if held.len() == 4 {
            break;
        }
        let mut c = Client::connect(&d.socket).unwrap();
        if c.write(0, "/flood", b"1").is_ok() {
            held.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(held.len(), 4);
    // A fifth connection is accepted by the kernel and closed by the daemon.
    let mut extra = UnixStream::connect(&d.socket).unwrap();
    assert!(closed(&mut extra));
    // The clients already connected are still served; a freed slot is usable again.
    assert_eq!(held[0].read(0, "/flood").unwrap(), b"1");
    held.pop();
    std::thread::sleep(Duration::from_millis(100));
    let mut again = Client::connect(&d.socket).unwrap();
    assert_eq!(again.read(0, "/flood").unwrap(), b"1");
}
