//! A backend attaching to a fake guest through a real socket, memfd and eventfds: data and
//! events both ways, refusals, hostile requests, version mismatches and the VMM going away.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backend_link::testing::FakeGuest;
use backend_link::{attach, socket_path_in, LinkError, LinkServer, PAGE_SIZE};
use vmm_sys_util::eventfd::EventFd;

const GFN: u64 = 0xfeff0;
const PORT: u32 = 5;

struct Setup {
    _dir: tempfile::TempDir,
    path: PathBuf,
    guest: Arc<FakeGuest>,
    server: Option<LinkServer>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path_in(dir.path(), 7);
    let guest = Arc::new(FakeGuest::new(GFN, 3).unwrap());
    let server = LinkServer::start(&path, guest.clone()).unwrap();
    Setup {
        _dir: dir,
        path,
        guest,
        server: Some(server),
    }
}

fn readable(fd: RawFd, ms: i32) -> bool {
    // SAFETY: the caller's descriptor stays open for the duration of this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    nix::poll::poll(&mut p, nix::poll::PollTimeout::try_from(ms).unwrap()).unwrap() > 0
}

/// Sends raw bytes as a backend would and returns the reply line ("" if the VMM just closed).
fn raw_request(path: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may close before taking everything: a failed write is part of the test.
    let _ = s.write_all(bytes);
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    // After an error reply the VMM closes the connection.
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    assert!(rest.is_empty(), "more after the reply: {rest:?}");
    line
}

#[test]
fn data_moves_both_ways_through_the_mapping() {
    let s = setup();
    let page = attach(&s.path, GFN + 1, PORT).unwrap();
    // Backend writes, guest reads.
    page.write_u32(2048, 0x1234_5678).unwrap();
    page.write_bytes(10, b"from the backend").unwrap();
    let mut b = [0u8; 16];
    s.guest.read(GFN + 1, 10, &mut b).unwrap();
    assert_eq!(&b, b"from the backend");
    s.guest.read(GFN + 1, 2048, &mut b[..4]).unwrap();
    assert_eq!(b[..4], 0x1234_5678u32.to_le_bytes());
    // Guest writes, backend reads.
    s.guest.write(GFN + 1, 4092, &7u32.to_le_bytes()).unwrap();
    s.guest.write(GFN + 1, 0, b"from the guest").unwrap();
    assert_eq!(page.read_u32(4092).unwrap(), 7);
    let mut b = [0u8; 14];
    page.read_bytes(0, &mut b).unwrap();
    assert_eq!(&b, b"from the guest");
    // It is exactly that frame: the neighbours are untouched.
    for gfn in [GFN, GFN + 2] {
        let mut n = vec![0u8; PAGE_SIZE];
        s.guest.read(gfn, 0, &mut n).unwrap();
        assert!(n.iter().all(|&x| x == 0), "frame {gfn:#x} changed");
    }
}

#[test]
fn accesses_outside_the_page_are_refused_and_touch_nothing() {
    let s = setup();
    let page = attach(&s.path, GFN + 1, PORT).unwrap();
    assert!(page.read_u32(4096).is_err());
    assert!(page.read_u32(4094).is_err());
    assert!(page.read_u32(2).is_err(), "misaligned word");
    assert!(page.write_u32(usize::MAX - 1, 1).is_err());
    assert!(page.write_bytes(4090, &[0xaa; 8]).is_err());
    assert!(page.write_bytes(usize::MAX, &[0xaa; 2]).is_err());
    let mut big = vec![0u8; PAGE_SIZE + 1];
    assert!(page.read_bytes(0, &mut big).is_err());
    // The last byte and the whole page are still reachable.
    page.write_bytes(4095, &[0x55]).unwrap();
    page.read_bytes(0, &mut big[..PAGE_SIZE]).unwrap();
    assert_eq!(big[PAGE_SIZE - 1], 0x55);
    assert!(big[4090..4095].iter().all(|&x| x == 0));
    let mut next = vec![0u8; PAGE_SIZE];
    s.guest.read(GFN + 2, 0, &mut next).unwrap();
    assert!(next.iter().all(|&x| x == 0));
}

#[test]
fn kicks_and_calls_cross_the_event_channel() {
    let s = setup();
    let page = attach(&s.path, GFN, PORT).unwrap();
    assert!(s.guest.is_bound(PORT));
    assert_eq!(page.ack().unwrap(), 0, "no kick yet");
    assert!(!readable(page.kick_fd(), 0));
    s.guest.kick(PORT).unwrap();
    s.guest.kick(PORT).unwrap();
    assert!(readable(page.kick_fd(), 5000));
    assert_eq!(page.ack().unwrap(), 2);
    assert!(!readable(page.kick_fd(), 0), "ack drained the kicks");
    assert_eq!(s.guest.wait_call(PORT, Duration::ZERO).unwrap(), 0);
    page.notify().unwrap();
    assert_eq!(s.guest.wait_call(PORT, Duration::from_secs(5)).unwrap(), 1);
}

#[test]
fn bad_frames_and_ports_are_refused_with_the_vmm_reason() {
    let s = setup();
    for gfn in [0, GFN - 1, GFN + 3, u64::MAX] {
        match attach(&s.path, gfn, PORT) {
            Err(LinkError::Refused { reason, gfn: g, .. }) => {
                assert_eq!(g, gfn);
                assert!(reason.contains("not a page backends may map"), "{reason}");
            }
            other => panic!("gfn {gfn:#x}: {other:?}"),
        }
    }
    let e = attach(&s.path, GFN, 0).unwrap_err();
    assert!(
        e.to_string().contains("port 0: no event channel port 0"),
        "{e}"
    );
    // A refused frame binds no port.
    assert!(!s.guest.is_bound(PORT));
}

#[test]
fn garbage_requests_get_an_error_and_the_server_goes_on() {
    let s = setup();
    let cases: [(&[u8], &str); 7] = [
        (b"garbage\n", "bad request"),
        (b"\xff\xfe\x00\n", "bad request"),
        (b"{\"version\":1,\"op\":\"attach\"}\n", "bad request"),
        (
            b"{\"version\":1,\"op\":\"detach\",\"gfn\":1,\"port\":1}\n",
            "unknown op",
        ),
        (b"{\"op\":\"attach\",\"gfn\":1,\"port\":1}\n", "no version"),
        (b"[1,2,3]\n", "bad request"),
        (
            b"{\"version\":1,\"op\":\"attach\",\"gfn\":1,\"port\":1}\nextra",
            "data after the request line",
        ),
    ];
    for (req, want) in cases {
        let reply = raw_request(&s.path, req);
        assert!(reply.contains("\"ok\":false"), "{req:?}: {reply}");
        assert!(reply.contains(want), "{req:?}: {reply}");
    }
    // A huge line without a newline is cut off at the cap.
    let huge = vec![b'x'; 1 << 20];
    let reply = raw_request(&s.path, &huge);
    assert!(reply.contains("longer than 1024 bytes"), "{reply}");
    // Still serving.
    attach(&s.path, GFN, PORT).unwrap();
}

#[test]
fn protocol_versions_must_match() {
    let s = setup();
    let reply = raw_request(
        &s.path,
        b"{\"version\":2,\"op\":\"attach\",\"gfn\":1,\"port\":1}\n",
    );
    assert!(
        reply.contains("protocol version 2 not supported (this VMM speaks version 1)"),
        "{reply}"
    );
    // A VMM of another version is refused by the backend too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        assert!(line.contains("\"version\":1"), "{line}");
        c.write_all(b"{\"version\":9,\"ok\":true,\"offset\":0}\n")
            .unwrap();
    });
    match attach(&path, 1, 1) {
        Err(
            e @ LinkError::Version {
                theirs: 9, ours: 1, ..
            },
        ) => {
            assert!(e.to_string().contains("protocol version 9"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    t.join().unwrap();
}

#[test]
fn a_granted_reply_without_descriptors_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = std::thread::spawn(move || {
        for reply in [
            &b"{\"version\":1,\"ok\":true,\"offset\":0}\n"[..],
            b"not json at all\n",
            b"",
        ] {
            let (mut c, _) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&c).read_line(&mut line).unwrap();
            c.write_all(reply).unwrap();
        }
    });
    for want in [
        "3 descriptors",
        "reply without a version",
        "closed the link",
    ] {
        match attach(&path, 1, 1) {
            Err(e @ LinkError::Protocol { .. }) => {
                assert!(e.to_string().contains(want), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
    t.join().unwrap();
}

#[test]
fn server_survives_backends_that_vanish_mid_request() {
    let s = setup();
    for partial in [
        &b""[..],
        b"{\"version\":1,\"op\":",
        b"{\"version\":1,\"op\":\"attach\",\"gfn\":1",
    ] {
        let mut c = UnixStream::connect(&s.path).unwrap();
        c.write_all(partial).unwrap();
        drop(c);
    }
    // A backend that attached and then went away.
    drop(attach(&s.path, GFN, PORT).unwrap());
    let page = attach(&s.path, GFN + 2, PORT).unwrap();
    page.write_u32(0, 42).unwrap();
    let mut b = [0u8; 4];
    s.guest.read(GFN + 2, 0, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 42);
}

#[test]
fn backend_sees_the_vmm_go_away() {
    let mut s = setup();
    let page = attach(&s.path, GFN, PORT).unwrap();
    assert!(!page.vmm_gone());
    assert!(!readable(page.link_fd(), 0));
    s.server = None;
    assert!(readable(page.link_fd(), 5000));
    assert!(page.vmm_gone());
    assert!(!s.path.exists(), "drop removes the socket file");
    // The mapping stays valid after the VMM is gone (the memfd lives while mapped).
    page.write_u32(0, 1).unwrap();
    assert!(matches!(
        attach(&s.path, GFN, PORT),
        Err(LinkError::Connect { .. })
    ));
}

#[test]
fn stale_sockets_are_replaced_but_live_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path_in(dir.path(), 3);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let guest = Arc::new(FakeGuest::new(GFN, 1).unwrap());
    let first = LinkServer::start(&path, guest.clone()).unwrap();
    let e = LinkServer::start(&path, guest.clone()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    attach(&path, GFN, PORT).unwrap();
    drop(first);
    std::fs::write(&path, b"not a socket").unwrap();
    assert!(LinkServer::start(&path, guest).is_err());
    assert!(path.exists(), "a non-socket file is never removed");
}

/// A VMM whose GuestLink has a bug: it panics on frame 13.
struct BuggyLink(FakeGuest);

impl backend_link::GuestLink for BuggyLink {
    fn page(&self, gfn: u64) -> Result<(BorrowedFd<'_>, u64), String> {
        assert_ne!(gfn, 13, "bug in the VMM");
        self.0.page(gfn)
    }
    fn bind(&self, port: u32) -> Result<(EventFd, EventFd), String> {
        self.0.bind(port)
    }
}

#[test]
fn a_panicking_guest_link_costs_one_request_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_path_in(dir.path(), 9);
    let link = Arc::new(BuggyLink(FakeGuest::new(GFN, 1).unwrap()));
    let _server = LinkServer::start(&path, link).unwrap();
    let e = attach(&path, 13, PORT).unwrap_err();
    assert!(e.to_string().contains("internal error in the VMM"), "{e}");
    attach(&path, GFN, PORT).unwrap();
}

fn memfd(sealable: bool, len: u64) -> std::fs::File {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    let mut flags = MFdFlags::MFD_CLOEXEC;
    if sealable {
        flags |= MFdFlags::MFD_ALLOW_SEALING;
    }
    let f = std::fs::File::from(memfd_create(c"test-mem", flags).unwrap());
    f.set_len(len).unwrap();
    f
}

/// A VMM that offers one file as every frame.
struct FileLink(std::fs::File);

impl backend_link::GuestLink for FileLink {
    fn page(&self, _gfn: u64) -> Result<(BorrowedFd<'_>, u64), String> {
        use std::os::fd::AsFd;
        Ok((self.0.as_fd(), 0))
    }
    fn bind(&self, _port: u32) -> Result<(EventFd, EventFd), String> {
        let e = || EventFd::new(0).map_err(|e| e.to_string());
        Ok((e()?, e()?))
    }
}

#[test]
fn the_server_seals_memory_against_shrinking_or_refuses() {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    let dir = tempfile::tempdir().unwrap();
    // A memfd that cannot take seals: a backend could be killed by its shrinking.
    let path = socket_path_in(dir.path(), 1);
    let _s = LinkServer::start(&path, Arc::new(FileLink(memfd(false, 4096)))).unwrap();
    let e = attach(&path, 1, 1).unwrap_err();
    assert!(e.to_string().contains("MFD_ALLOW_SEALING"), "{e}");
    // A sealable one is sealed on the first attach, and then cannot shrink.
    let mem = memfd(true, 4096);
    let probe = mem.try_clone().unwrap();
    let path = socket_path_in(dir.path(), 2);
    let _s = LinkServer::start(&path, Arc::new(FileLink(mem))).unwrap();
    let page = attach(&path, 1, 1).unwrap();
    let seals = SealFlag::from_bits_truncate(fcntl(&probe, FcntlArg::F_GET_SEALS).unwrap());
    assert!(seals.contains(SealFlag::F_SEAL_SHRINK));
    assert!(probe.set_len(0).is_err(), "a sealed file shrank");
    page.write_u32(0, 3).unwrap();
}

/// A rogue VMM: grants with the given memory file and call eventfd, whatever they are, then
/// writes `after` on the link.
fn rogue_vmm(
    path: &Path,
    mem: std::fs::File,
    call: EventFd,
    after: &'static [u8],
) -> std::thread::JoinHandle<()> {
    use std::os::fd::AsRawFd;
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&c).read_line(&mut line).unwrap();
        let kick = EventFd::new(0).unwrap();
        let reply = b"{\"version\":1,\"ok\":true,\"offset\":0}\n";
        let fds = [mem.as_raw_fd(), kick.as_raw_fd(), call.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(
            c.as_raw_fd(),
            &[std::io::IoSlice::new(reply)],
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        c.write_all(after).unwrap();
        // Hold the connection until the backend is done with it.
        let _ = c.read(&mut [0u8; 1]);
    })
}

fn sealed_memfd(len: u64) -> std::fs::File {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    let f = memfd(true, len);
    fcntl(&f, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).unwrap();
    f
}

#[test]
fn backends_refuse_memory_that_could_shrink_or_does_not_hold_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rogue.sock");
    let cases = [
        (memfd(true, 4096), "not sealed"),
        (sealed_memfd(100), "does not hold the page"),
    ];
    for (mem, want) in cases {
        let _ = std::fs::remove_file(&path);
        let t = rogue_vmm(&path, mem, EventFd::new(0).unwrap(), b"");
        match attach(&path, 1, 1) {
            Err(e @ LinkError::Mmap { .. }) => assert!(e.to_string().contains(want), "{e}"),
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
    }
}

#[test]
fn a_hostile_vmm_cannot_block_or_fool_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rogue.sock");
    // A call counter one short of its maximum: a blocking write would hang forever.
    let call = EventFd::new(0).unwrap();
    call.write(u64::MAX - 1).unwrap();
    let t = rogue_vmm(&path, sealed_memfd(4096), call, b"unsolicited");
    let page = attach(&path, 1, 1).unwrap();
    page.notify().unwrap();
    page.notify().unwrap();
    assert_eq!(page.ack().unwrap(), 0, "nothing to ack, and no blocking");
    // Writing on the link after the reply breaks the protocol: the page is to be dropped.
    assert!(readable(page.link_fd(), 5000));
    assert!(page.vmm_gone());
    drop(page);
    t.join().unwrap();
}
