//! Real taps. These need `/dev/net/tun` and `CAP_NET_ADMIN` (root); without them they fail
//! and say so, rather than pass having tested nothing.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tap::packet::PacketSocket;
use tap::{Tap, TapError, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, VNET_HDR_LEN};

const WAIT: Duration = Duration::from_secs(5);
/// A local experimental ethertype, so that the kernel's own traffic is told apart.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("oxt{}-{n}", std::process::id() % 100_000)
}

fn open() -> Tap {
    assert!(
        Path::new("/dev/net/tun").exists(),
        "these tests need /dev/net/tun (modprobe tun) and CAP_NET_ADMIN"
    );
    match Tap::open(&unique_name()) {
        Ok(t) => t,
        Err(e) => panic!("{e} (these tests need CAP_NET_ADMIN: run them as root)"),
    }
}

fn sysfs(name: &str, attr: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{name}/{attr}"))
        .unwrap_or_else(|e| panic!("{name}/{attr}: {e}"))
        .trim()
        .to_string()
}

fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, tag, 0x02, 0, 0, 0, 1, tag];
    f.extend_from_slice(&ETHERTYPE);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_mul(7) ^ tag));
    f
}

fn is_ours(f: &[u8]) -> bool {
    f.len() >= 14 && f[12..14] == ETHERTYPE
}

#[test]
fn mtu_link_up_and_offloads() {
    let t = open();
    let name = t.name().to_string();
    t.set_mtu(9000).unwrap();
    assert_eq!(sysfs(&name, "mtu"), "9000");
    t.set_up(true).unwrap();
    let flags = u32::from_str_radix(sysfs(&name, "flags").trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flags & libc::IFF_UP as u32, 0, "link up");
    t.set_offload(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6).unwrap();
    t.set_offload(0).unwrap();
    // Segmentation without checksum offload is refused by the kernel; the error says where.
    let e = t.set_offload(TUN_F_TSO4).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("TUNSETOFFLOAD") && msg.contains(&name),
        "{msg}"
    );
    let e = t.set_mtu(10).unwrap_err();
    assert!(
        matches!(
            e,
            TapError::Ioctl {
                ioctl: "SIOCSIFMTU",
                ..
            }
        ),
        "{e}"
    );
    t.set_up(false).unwrap();
    let flags = u32::from_str_radix(sysfs(&name, "flags").trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & libc::IFF_UP as u32, 0, "link down");
}

#[test]
fn frames_both_ways_with_vnet_headers() {
    let t = open();
    t.set_up(true).unwrap();
    let sock = PacketSocket::bind(t.ifindex().unwrap()).unwrap();

    // Written to the tap: arrives on the interface without the header.
    let out = frame(1, 200);
    t.write_frame(&[0u8; VNET_HDR_LEN], &out).unwrap();
    let got = sock
        .recv_matching(WAIT, is_ours)
        .unwrap()
        .expect("frame on the interface");
    assert_eq!(got, out);

    // Sent out of the interface: read from the tap with a (zero) header first.
    let back = frame(2, 1000);
    sock.send(&back).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut seen = None;
    for _ in 0..500 {
        match t.read_frame(&mut buf).unwrap() {
            Some(n) if is_ours(&buf[VNET_HDR_LEN..n]) => {
                seen = Some(buf[..n].to_vec());
                break;
            }
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let seen = seen.expect("frame read from the tap");
    assert_eq!(&seen[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
    assert_eq!(&seen[VNET_HDR_LEN..], &back[..]);
}

#[test]
fn queues_share_the_interface_which_goes_with_the_last() {
    let t = open();
    let name = t.name().to_string();
    let q1 = t.attach_queue().unwrap();
    assert_eq!(q1.name(), name);
    assert_eq!(q1.ifindex().unwrap(), t.ifindex().unwrap());
    t.set_up(true).unwrap();
    let sock = PacketSocket::bind(t.ifindex().unwrap()).unwrap();
    let f = frame(3, 64);
    q1.write_frame(&[0u8; VNET_HDR_LEN], &f).unwrap();
    assert_eq!(sock.recv_matching(WAIT, is_ours).unwrap(), Some(f));
    // Nothing waiting: a read does not block.
    let mut buf = [0u8; 2048];
    while q1.read_frame(&mut buf).unwrap().is_some() {}

    drop(t);
    assert!(Path::new(&format!("/sys/class/net/{name}")).exists());
    drop(q1);
    assert!(!Path::new(&format!("/sys/class/net/{name}")).exists());
}
