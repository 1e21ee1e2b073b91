//! Handshake, data path and hostile-client tests over a socket pair, and the listeners with
//! several clients and qemu as a client.

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;

use block::raw::RawImage;
use block::vhd::{self, CreateOptions, OpenOptions, VhdImage};
use block::DiskImage;

use crate::proto::*;
use crate::testclient::Client;
use crate::{serve_connection, Export, Listener, Server};

const SIZE: u64 = 4 << 20;

fn raw(dir: &Path, writable: bool) -> Arc<dyn DiskImage> {
    let p = dir.join("disk.raw");
    if !p.exists() {
        RawImage::create(&p, SIZE).unwrap();
    }
    Arc::new(RawImage::open(&p, writable).unwrap())
}

fn vhd_image(dir: &Path) -> Arc<dyn DiskImage> {
    let p = dir.join("disk.vhd");
    let mut o = CreateOptions::dynamic(SIZE);
    o.block_size = 1 << 20;
    vhd::create(&p, &o).unwrap();
    Arc::new(VhdImage::open(&p, &OpenOptions::read_write()).unwrap())
}

type Conn = (Client<UnixStream>, JoinHandle<crate::Result<()>>);

fn connect(export: Arc<Export>, cflags: u32) -> Conn {
    let (a, mut b) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || serve_connection(&export, &mut b));
    (Client::start(a, cflags), t)
}

fn both_flags() -> u32 {
    FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES
}

fn go(export: Export) -> Conn {
    let (mut c, t) = connect(Arc::new(export), both_flags());
    c.go("");
    (c, t)
}

#[test]
fn go_read_write_flush_trim_zero_disc() {
    let d = tempfile::tempdir().unwrap();
    let (mut c, t) = connect(
        Arc::new(Export::new("disk", raw(d.path(), true))),
        both_flags(),
    );
    let (size, flags) = c.go("disk");
    assert_eq!(size, SIZE);
    assert_eq!(flags & TFLAG_READ_ONLY, 0);
    for f in [
        TFLAG_HAS_FLAGS,
        TFLAG_SEND_FLUSH,
        TFLAG_SEND_TRIM,
        TFLAG_SEND_WRITE_ZEROES,
    ] {
        assert_ne!(flags & f, 0, "flag {f:#x}");
    }
    assert_eq!(c.write(4096, &[0xaa; 8192]), 0);
    assert_eq!(c.read(4096, 8192).unwrap(), vec![0xaa; 8192]);
    assert_eq!(c.write_flags(CMD_FLAG_FUA, 100, &[1, 2, 3]), 0);
    assert_eq!(c.read(99, 5).unwrap(), vec![0, 1, 2, 3, 0]);
    assert_eq!(c.cmd(0, CMD_FLUSH, 0, 0), 0);
    assert_eq!(c.cmd(0, CMD_TRIM, 4096, 4096), 0);
    assert_eq!(c.read(4096, 4096).unwrap(), vec![0; 4096]);
    assert_eq!(c.cmd(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 8192 + 10, 100), 0);
    let back = c.read(8192, 4096).unwrap();
    assert!(back[..10].iter().all(|&b| b == 0xaa) && back[10..110].iter().all(|&b| b == 0));
    assert!(back[110..].iter().all(|&b| b == 0xaa));
    assert_eq!(c.cmd(0, CMD_WRITE_ZEROES, 0, SIZE as u32), 0);
    assert_eq!(c.read(8192, 4096).unwrap(), vec![0; 4096]);
    c.send_request(0, CMD_DISC, 0, 0);
    t.join().unwrap().unwrap();
    assert!(c.closed());
}

#[test]
fn export_name_with_and_without_zeroes() {
    let d = tempfile::tempdir().unwrap();
    let exp = Arc::new(Export::new("x", raw(d.path(), false)));
    for (cflags, tail) in [(both_flags(), 0usize), (FLAG_C_FIXED_NEWSTYLE, 124)] {
        let (mut c, t) = connect(exp.clone(), cflags);
        c.send_opt(OPT_EXPORT_NAME, b"x");
        let mut m = vec![0u8; 10 + tail];
        std::io::Read::read_exact(&mut c.s, &mut m).unwrap();
        assert_eq!(be64(&m, 0), SIZE);
        assert_ne!(be16(&m, 8) & TFLAG_READ_ONLY, 0);
        assert!(m[10..].iter().all(|&b| b == 0));
        assert_eq!(c.read(0, 512).unwrap(), vec![0; 512]);
        drop(c);
        t.join().unwrap().unwrap();
    }
    // An unknown name cannot be refused politely: the server hangs up.
    let (mut c, t) = connect(exp, both_flags());
    c.send_opt(OPT_EXPORT_NAME, b"nope");
    assert!(c.closed());
    assert!(t.join().unwrap().is_err());
}

#[test]
fn options_list_info_unsupported_abort() {
    let d = tempfile::tempdir().unwrap();
    let exp = Export::new("disk", raw(d.path(), false)).with_description("a test disk");
    let (mut c, t) = connect(Arc::new(exp), both_flags());
    c.send_opt(OPT_LIST, &[]);
    let r = c.opt_replies();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].0, r[0].1), (OPT_LIST, REP_SERVER));
    assert_eq!(r[0].2, b"\0\0\0\x04disk");
    c.send_opt(OPT_LIST, b"junk");
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    let infos = [INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION, 999];
    c.send_opt(OPT_INFO, &Client::<UnixStream>::go_data("disk", &infos));
    let r = c.opt_replies();
    let kinds: Vec<u16> = r
        .iter()
        .filter(|x| x.1 == REP_INFO)
        .map(|x| be16(&x.2, 0))
        .collect();
    assert_eq!(
        kinds,
        vec![INFO_EXPORT, INFO_BLOCK_SIZE, INFO_NAME, INFO_DESCRIPTION]
    );
    let bs = &r[1].2;
    assert_eq!(
        (be32(bs, 2), be32(bs, 6), be32(bs, 10)),
        (512, 4096, 32 << 20)
    );
    assert_eq!(&r[2].2[2..], b"disk");
    assert_eq!(&r[3].2[2..], b"a test disk");
    c.send_opt(OPT_INFO, &Client::<UnixStream>::go_data("other", &[]));
    assert_eq!(c.opt_reply().1, REP_ERR_UNKNOWN);
    c.send_opt(OPT_GO, &Client::<UnixStream>::go_data("other", &[]));
    assert_eq!(c.opt_reply().1, REP_ERR_UNKNOWN);
    // Name length past the data, and a request count that does not match.
    c.send_opt(OPT_GO, &[0, 0, 0, 200, b'a']);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    let mut bad = Client::<UnixStream>::go_data("disk", &[INFO_NAME]);
    bad.push(0);
    c.send_opt(OPT_GO, &bad);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    c.send_opt(OPT_GO, &[0, 0]);
    assert_eq!(c.opt_reply().1, REP_ERR_INVALID);
    for opt in [OPT_STRUCTURED_REPLY, 42, OPT_STARTTLS] {
        c.send_opt(opt, &[]);
        let (o, kind, _) = c.opt_reply();
        assert_eq!(o, opt);
        assert!(
            kind == REP_ERR_UNSUP || kind == REP_ERR_POLICY,
            "{opt}: {kind:#x}"
        );
    }
    // Oversized option data is drained and refused; the session goes on.
    c.send_opt(99, &vec![7u8; 100 << 10]);
    assert_eq!(c.opt_reply().1, REP_ERR_TOO_BIG);
    c.send_opt(OPT_ABORT, &[]);
    assert_eq!(c.opt_reply().1, REP_ACK);
    t.join().unwrap().unwrap();
    assert!(c.closed());
}

#[test]
fn bad_requests_get_errors_and_the_session_survives() {
    let d = tempfile::tempdir().unwrap();
    let (mut c, t) = go(Export::new("", raw(d.path(), true)));
    assert_eq!(c.write(0, &[5u8; 512]), 0);
    // Past the end, straddling the end, overflowing u64, zero length.
    assert_eq!(c.read(SIZE, 512), Err(EINVAL));
    assert_eq!(c.read(SIZE - 512, 1024), Err(EINVAL));
    assert_eq!(c.read(u64::MAX - 100, 512), Err(EINVAL));
    assert_eq!(c.read(0, 0), Err(EINVAL));
    assert_eq!(c.write(SIZE - 1, &[1, 2]), EINVAL);
    assert_eq!(c.write(u64::MAX, &[1]), EINVAL);
    assert_eq!(c.cmd(0, CMD_TRIM, u64::MAX - 10, 4096), EINVAL);
    assert_eq!(c.cmd(0, CMD_WRITE_ZEROES, SIZE, 1), EINVAL);
    // Longer than the 32 MiB payload limit: refused; a write's payload is still consumed.
    assert_eq!(c.read(0, MAX_PAYLOAD + 1), Err(EOVERFLOW));
    assert_eq!(
        c.write(0, &vec![9u8; MAX_PAYLOAD as usize + 512]),
        EOVERFLOW
    );
    // Flags a command does not take, flags nobody defined, commands nobody defined.
    let h = c.send_request(CMD_FLAG_FUA, CMD_READ, 0, 512);
    assert_eq!(c.reply(h), EINVAL);
    assert_eq!(c.write_flags(CMD_FLAG_NO_HOLE, 0, &[1u8; 512]), EINVAL);
    assert_eq!(c.write_flags(1 << 12, 0, &[1u8; 512]), EINVAL);
    assert_eq!(c.cmd(0, 5, 0, 512), EINVAL);
    assert_eq!(c.cmd(0, 0xffff, 0, 512), EINVAL);
    // None of that changed anything.
    assert_eq!(c.read(0, 512).unwrap(), vec![5u8; 512]);
    // A bad request magic ends the connection.
    std::io::Write::write_all(&mut c.s, &[0u8; 28]).unwrap();
    assert!(c.closed());
    assert!(matches!(t.join().unwrap(), Err(crate::Error::Protocol(_))));
}

#[test]
fn read_only_export_refuses_writes() {
    let d = tempfile::tempdir().unwrap();
    let img = raw(d.path(), true);
    img.write_at(&[3u8; 512], 0).unwrap();
    // Read-only by choice over a writable image, and over a read-only image.
    for exp in [
        Export::new("", img.clone()).read_only(),
        Export::new("", raw(d.path(), false)),
    ] {
        assert!(!exp.writable());
        let (mut c, t) = connect(Arc::new(exp), both_flags());
        let (_, flags) = c.go("");
        assert_ne!(flags & TFLAG_READ_ONLY, 0);
        assert_eq!(flags & (TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES), 0);
        assert_eq!(c.write(0, &[9u8; 512]), EPERM);
        assert_eq!(c.cmd(0, CMD_TRIM, 0, 512), EPERM);
        assert_eq!(c.cmd(0, CMD_WRITE_ZEROES, 0, 512), EPERM);
        assert_eq!(c.write(0, &vec![9u8; MAX_PAYLOAD as usize + 1]), EPERM);
        assert_eq!(c.cmd(0, CMD_FLUSH, 0, 0), 0);
        assert_eq!(c.read(0, 512).unwrap(), vec![3u8; 512]);
        drop(c);
        t.join().unwrap().unwrap();
    }
}

#[test]
fn handshake_violations_close_the_connection() {
    let d = tempfile::tempdir().unwrap();
    let exp = Arc::new(Export::new("", raw(d.path(), false)));
    let (mut c, t) = connect(exp.clone(), 1 << 5);
    assert!(c.closed());
    assert!(t.join().unwrap().is_err());
    let (mut c, t) = connect(exp.clone(), both_flags());
    std::io::Write::write_all(&mut c.s, &[0x55u8; 16]).unwrap();
    assert!(c.closed());
    assert!(t.join().unwrap().is_err());
    // A client vanishing mid-option is not a panic either.
    let (mut c, t) = connect(exp, both_flags());
    std::io::Write::write_all(&mut c.s, &IHAVEOPT.to_be_bytes()).unwrap();
    drop(c);
    assert!(t.join().unwrap().is_err());
}

#[test]
fn unaligned_io_on_a_vhd() {
    let d = tempfile::tempdir().unwrap();
    let (mut c, t) = go(Export::new("", vhd_image(d.path())));
    assert_eq!(c.write(0, &[1u8; 4096]), 0);
    assert_eq!(c.write(1000, &[2u8; 30]), 0);
    let b = c.read(990, 50).unwrap();
    assert_eq!(&b[..10], &[1u8; 10]);
    assert_eq!(&b[10..40], &[2u8; 30]);
    assert_eq!(&b[40..], &[1u8; 10]);
    // Spanning a 1 MiB block boundary, unaligned at both ends.
    let off = (1 << 20) - 300;
    assert_eq!(c.write(off, &[7u8; 1000]), 0);
    assert_eq!(c.read(off - 1, 1002).unwrap()[1..1001], [7u8; 1000]);
    assert_eq!(c.cmd(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 1001, 5000), 0);
    let b = c.read(0, 8192).unwrap();
    assert_eq!(&b[..1000], &[1u8; 1000]);
    assert_eq!(b[1000], 2);
    assert!(b[1001..6001].iter().all(|&x| x == 0));
    assert_eq!(c.cmd(0, CMD_TRIM, 1, 600), 0);
    assert_eq!(c.read(0, 2).unwrap(), vec![1, 1]);
    drop(c);
    t.join().unwrap().unwrap();
}

/// Runs a server on `listener` in a thread; returns its stop handle and thread.
fn start(
    exp: Export,
    listener: Listener,
) -> (crate::ShutdownHandle, String, JoinHandle<crate::Result<()>>) {
    let url = listener.url(exp.name());
    let s = Server::new(exp, listener).unwrap();
    let h = s.shutdown_handle();
    (h, url, std::thread::spawn(move || s.run()))
}

#[test]
fn several_clients_on_unix_and_tcp_and_clean_stop() {
    let d = tempfile::tempdir().unwrap();
    let img = raw(d.path(), true);
    let sock = d.path().join("nbd.sock");
    let (stop_u, url, tu) = start(
        Export::new("u", img.clone()),
        Listener::bind_unix(&sock).unwrap(),
    );
    assert_eq!(url, format!("nbd+unix:///u?socket={}", sock.display()));
    let tcp = Listener::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr: SocketAddr = tcp.local_addr().unwrap();
    let (stop_t, url, tt) = start(Export::new("t", img.clone()), tcp);
    assert_eq!(url, format!("nbd://{addr}/t"));
    let workers: Vec<_> = (0..6u8)
        .map(|i| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let off = u64::from(i) * 65536;
                let pat = vec![i + 1; 65536];
                if i % 2 == 0 {
                    let mut c = Client::start(UnixStream::connect(&sock).unwrap(), both_flags());
                    c.go("u");
                    assert_eq!(c.write(off, &pat), 0);
                    assert_eq!(c.read(off, 65536).unwrap(), pat);
                } else {
                    let s = std::net::TcpStream::connect(addr).unwrap();
                    let mut c = Client::start(s, both_flags());
                    c.go("t");
                    assert_eq!(c.write(off, &pat), 0);
                    assert_eq!(c.read(off, 65536).unwrap(), pat);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // A client still connected when the server stops is disconnected.
    let mut idle = Client::start(UnixStream::connect(&sock).unwrap(), both_flags());
    idle.go("u");
    stop_u.shutdown();
    stop_t.shutdown();
    tu.join().unwrap().unwrap();
    tt.join().unwrap().unwrap();
    assert!(idle.closed());
    assert!(!sock.exists(), "the socket file is removed");
    let mut b = vec![0u8; 65536];
    img.read_at(&mut b, 5 * 65536).unwrap();
    assert_eq!(b, vec![6u8; 65536]);
}

#[test]
fn client_limit_and_stale_socket() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("s");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap()); // stale socket file
    let l = Listener::bind_unix(&sock).unwrap();
    let s = Server::new(Export::new("", raw(d.path(), false)), l)
        .unwrap()
        .max_clients(1);
    let h = s.shutdown_handle();
    let t = std::thread::spawn(move || s.run());
    let mut first = Client::start(UnixStream::connect(&sock).unwrap(), both_flags());
    first.go("");
    assert!(
        Listener::bind_unix(&sock).is_err(),
        "a live socket is not replaced"
    );
    let mut second = UnixStream::connect(&sock).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        std::io::Read::read(&mut second, &mut b).unwrap(),
        0,
        "over the limit"
    );
    assert_eq!(first.read(0, 512).unwrap(), vec![0u8; 512]);
    h.shutdown();
    t.join().unwrap().unwrap();
    let f = d.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(
        Listener::bind_unix(&f).is_err(),
        "a regular file is never removed"
    );
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} could not run ({e}): install qemu-utils (scripts/deps.d/30-vhd.sh)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd} {args:?} failed: {text}");
    text
}

#[test]
fn qemu_reads_and_writes_through_the_server() {
    let d = tempfile::tempdir().unwrap();
    let img = vhd_image(d.path());
    let sock = d.path().join("q.sock");
    let (stop, url, t) = start(
        Export::new("", img.clone()),
        Listener::bind_unix(&sock).unwrap(),
    );
    let info = tool("qemu-img", &["info", "--output=json", &url]);
    assert!(
        info.contains(&format!("\"virtual-size\": {SIZE}")),
        "{info}"
    );
    let out = tool(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 1536 70000",
            "-c",
            "read -P 0x5a 1536 70000",
            &url,
        ],
    );
    assert!(!out.contains("failed"), "{out}");
    let mut b = vec![0u8; 70000];
    img.read_at(&mut b[..69632], 1536).unwrap();
    assert!(b[..69632].iter().all(|&x| x == 0x5a));
    stop.shutdown();
    t.join().unwrap().unwrap();
    // Over TCP, read-only: qemu-io's write fails, its read works.
    let tcp = Listener::bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let (stop, url, t) = start(Export::new("ro", img).read_only(), tcp);
    let out = tool(
        "qemu-io",
        &["-f", "raw", "-r", "-c", "read -P 0x5a 1536 512", &url],
    );
    assert!(!out.contains("failed"), "{out}");
    let w = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 1 0 512", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&w.stdout).to_string() + &String::from_utf8_lossy(&w.stderr);
    assert!(
        !w.status.success() || text.contains("failed") || text.contains("read-only"),
        "{text}"
    );
    stop.shutdown();
    t.join().unwrap().unwrap();
}
