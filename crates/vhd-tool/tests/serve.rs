//! `oxen-vhd serve` seen through QEMU's NBD client: qemu-img and qemu-io (qemu-utils, installed
//! by scripts/deps.d/30-vhd.sh; a missing tool fails the test).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use block::crypt::Key;
use block::vhd::{OpenOptions, VhdImage};
use block::DiskImage;

const MIB: u64 = 1 << 20;
const OXEN: &str = env!("CARGO_BIN_EXE_oxen-vhd");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs a tool, returns stdout+stderr and whether it succeeded.
fn try_run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} could not run ({e}); install qemu-utils (scripts/deps.d/30-vhd.sh)")
    });
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let (ok, text) = try_run(cmd, args);
    assert!(ok, "{cmd} {args:?} failed: {text}");
    text
}

/// A running `oxen-vhd serve`; stopped with SIGTERM.
struct Served {
    child: Child,
    url: String,
}

fn serve(args: &[&str]) -> Served {
    let mut child = Command::new(OXEN)
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting oxen-vhd serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.is_empty() {
        let out = child.wait_with_output().unwrap();
        panic!(
            "serve {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let url = line.trim().rsplit(" at ").next().unwrap().to_string();
    Served { child, url }
}

impl Served {
    /// SIGTERM, then the exit status must be success (clean stop).
    fn stop(mut self) {
        // SAFETY: signals a child process we started and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        assert!(st.success(), "serve ended with {st}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn qemu_io(url: &str, cmds: &[String]) -> (bool, String) {
    // Pattern checks only read: -r works on read-only exports too.
    let ro = cmds.iter().all(|c| c.starts_with("read"));
    let mut args = if ro {
        vec!["-r", "-f", "raw"]
    } else {
        vec!["-f", "raw"]
    };
    for c in cmds {
        args.extend(["-c", c.as_str()]);
    }
    args.push(url);
    try_run("qemu-io", &args)
}

/// qemu-io reads `pattern` at every range through the URL.
fn check_patterns(url: &str, ranges: &[(u64, u64, u8)]) {
    let cmds: Vec<String> = ranges
        .iter()
        .map(|(o, l, b)| format!("read -P {b} {o} {l}"))
        .collect();
    let (ok, out) = qemu_io(url, &cmds);
    assert!(ok && !out.contains("failed"), "{out}");
}

fn write(img: &Path, key: Option<&Key>, ranges: &[(u64, u64, u8)]) {
    let i = VhdImage::open(img, &OpenOptions::read_write().with_key(key.cloned())).unwrap();
    for &(o, l, b) in ranges {
        i.write_at(&vec![b; l as usize], o).unwrap();
    }
    i.flush().unwrap();
}

fn virtual_size(url: &str) -> u64 {
    let info = run("qemu-img", &["info", "--output=json", url]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    v["virtual-size"].as_u64().unwrap()
}

const BASE: &[(u64, u64, u8)] = &[(0, 6 * MIB, 0x11), (20 * MIB, 4096, 0x12)];
const CHILD: &[(u64, u64, u8)] = &[
    (4096, 8192, 0x21),
    (3 * MIB, 512, 0x22),
    (40 * MIB, MIB, 0x23),
];

#[test]
fn dynamic_and_differencing_exports_match_the_images() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.vhd");
    let child = d.path().join("child.vhd");
    run(OXEN, &["create", s(&base), "-s", "64M"]);
    write(&base, None, BASE);
    run(OXEN, &["snapshot", "-n", s(&child), "-p", s(&base)]);
    write(&child, None, CHILD);
    let sock = d.path().join("nbd.sock");
    for (img, expect) in [(&child, [BASE, CHILD].concat()), (&base, BASE.to_vec())] {
        let raw = d.path().join("flat.raw");
        let _ = std::fs::remove_file(&raw);
        run(OXEN, &["convert", s(img), s(&raw)]);
        let srv = serve(&[s(img), "--socket", s(&sock)]);
        assert_eq!(srv.url, format!("nbd+unix:///?socket={}", sock.display()));
        assert_eq!(virtual_size(&srv.url), 64 * MIB);
        // The last write to each range wins; unwritten space reads as zeros.
        let later: Vec<_> = expect.iter().rev().take(3).copied().collect();
        check_patterns(&srv.url, &later);
        check_patterns(&srv.url, &[(50 * MIB, 4096, 0)]);
        run(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "raw", &srv.url, s(&raw)],
        );
        srv.stop();
        assert!(!sock.exists(), "socket file removed at exit");
    }
}

#[test]
fn read_write_export_is_seen_by_oxen_and_read_only_refuses() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.vhd");
    let child = d.path().join("child.vhd");
    run(
        OXEN,
        &["create", s(&base), "-s", "32M", "--block-size", "512K"],
    );
    write(&base, None, &[(0, MIB, 0x11)]);
    run(OXEN, &["snapshot", "-n", s(&child), "-p", s(&base)]);
    // TCP on a free port, with an export name.
    let srv = serve(&[s(&child), "--port", "0", "--name", "disk0", "--read-write"]);
    assert!(
        srv.url.starts_with("nbd://127.0.0.1:") && srv.url.ends_with("/disk0"),
        "{}",
        srv.url
    );
    let (ok, out) = qemu_io(
        &srv.url,
        &[
            format!("write -P 0x5c {} 4096", 10 * MIB),
            "write -P 0x5d 512 512".into(),
        ],
    );
    assert!(ok && !out.contains("failed"), "{out}");
    check_patterns(
        &srv.url,
        &[(0, 512, 0x11), (512, 512, 0x5d), (10 * MIB, 4096, 0x5c)],
    );
    srv.stop();
    // The writes landed in the child (block 20 of 512 KiB is allocated), the base is intact.
    let dump = run(OXEN, &["read", s(&child), "--bat"]);
    assert!(
        dump.contains("block 0:") && dump.contains("block 20:"),
        "{dump}"
    );
    let bm = run(OXEN, &["read", s(&child), "--bitmap", "0"]);
    assert!(bm.contains("(1 sectors present)"), "{bm}");
    run(OXEN, &["check", s(&child)]);
    let img = VhdImage::open(&child, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; 4096];
    img.read_at(&mut b, 10 * MIB).unwrap();
    assert!(b.iter().all(|&x| x == 0x5c));
    img.read_at(&mut b[..1024], 0).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0x11) && b[512..1024].iter().all(|&x| x == 0x5d));
    let bimg = VhdImage::open(&base, &OpenOptions::read_only()).unwrap();
    bimg.read_at(&mut b[..512], 512).unwrap();
    assert!(
        b[..512].iter().all(|&x| x == 0x11),
        "the base was not written"
    );

    // Read-only (the default): qemu cannot write, and nothing changes.
    let srv = serve(&[s(&child), "--port", "0"]);
    let (ok, out) = qemu_io(&srv.url, &["write -P 0x66 0 512".into()]);
    // qemu sees NBD_FLAG_READ_ONLY and refuses to open the export for writing (the server's
    // own EPERM for writes is covered by the nbd crate's tests).
    assert!(!ok && out.contains("Permission denied"), "{out}");
    check_patterns(&srv.url, &[(512, 512, 0x5d)]);
    srv.stop();
}

#[test]
fn encrypted_and_raw_images() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("k");
    run(OXEN, &["keygen", s(&key)]);
    let enc = d.path().join("enc.vhd");
    run(OXEN, &["create", s(&enc), "-s", "16M", "--key", s(&key)]);
    let k = Key::from_file(&key).unwrap();
    write(&enc, Some(&k), &[(MIB, 8192, 0x42)]);
    let sock = d.path().join("e.sock");
    let out = Command::new(OXEN)
        .args(["serve", s(&enc), "--socket", s(&sock)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key file is required"));
    let srv = serve(&[s(&enc), "--socket", s(&sock), "--key", s(&key)]);
    check_patterns(&srv.url, &[(MIB, 8192, 0x42), (0, MIB, 0)]);
    srv.stop();

    let raw = d.path().join("disk.img");
    std::fs::write(&raw, vec![0x33u8; 3 * MIB as usize]).unwrap();
    let srv = serve(&[s(&raw), "--socket", s(&sock), "--read-write"]);
    assert_eq!(virtual_size(&srv.url), 3 * MIB);
    let (ok, out) = qemu_io(&srv.url, &["write -P 0x44 4096 4096".into()]);
    assert!(ok && !out.contains("failed"), "{out}");
    srv.stop();
    let data = std::fs::read(&raw).unwrap();
    assert!(data[4096..8192].iter().all(|&x| x == 0x44) && data[8192] == 0x33);
    let out = Command::new(OXEN)
        .args(["serve", s(&raw), "--socket", s(&sock), "--key", s(&key)])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--key on a raw image is refused");
}

#[test]
fn live_image_shows_blocks_the_writer_flushed() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("live.vhd");
    run(OXEN, &["create", s(&img), "-s", "16M"]);
    let w = VhdImage::open(&img, &OpenOptions::read_write()).unwrap();
    w.write_at(&[1u8; 4096], 0).unwrap();
    w.flush().unwrap();
    let sock = d.path().join("l.sock");
    let srv = serve(&[s(&img), "--socket", s(&sock)]);
    check_patterns(&srv.url, &[(0, 4096, 1), (9 * MIB, 4096, 0)]);
    // The "domain" keeps writing: a new block, flushed.
    w.write_at(&[7u8; 4096], 9 * MIB).unwrap();
    w.flush().unwrap();
    check_patterns(&srv.url, &[(0, 4096, 1), (9 * MIB, 4096, 7)]);
    srv.stop();
}
