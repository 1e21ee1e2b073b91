//! A vif served end to end: xenbus negotiation with a Linux-like netfront over a real
//! Xenstore, frames through netif rings in fake guest memory and a real tap, seen and
//! injected with an `AF_PACKET` socket on the tap.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use netback::VifConfig;
use netif::abi::NETIF_RSP_OKAY;
use tap::packet::PacketSocket;
use xenbus_backend::XenbusState::*;

const BROADCAST: [u8; 6] = [0xff; 6];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];

fn config(tag: &str) -> VifConfig {
    VifConfig {
        vifname: Some(tap_name(tag)),
        max_queues: 4,
        ..VifConfig::new([0; 6])
    }
}

fn socket(name: &str) -> PacketSocket {
    let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).unwrap();
    PacketSocket::bind(index.trim().parse().unwrap()).unwrap()
}

/// The next test frame `sock` sees, or `None` within `t`.
fn seen(sock: &PacketSocket, t: Duration) -> Option<Vec<u8>> {
    sock.recv_matching(t, is_test_frame).unwrap()
}

#[test]
fn frames_both_ways_through_the_tap() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(1);
    let cfg = VifConfig {
        mac: mac(1),
        mtu: Some(1400),
        ..config("a")
    };
    let (id, vif) = attach(&store, &dom, 0, cfg);
    assert_eq!(vif.tap_name(), tap_name("a"));
    let mut f = Netfront::new(&store, &dom, &id);
    f.wait_backend(InitWait);
    for (k, v) in [
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-ipv6-csum-offload", "1"),
        ("feature-split-event-channels", "1"),
        ("feature-multicast-control", "0"),
        ("multi-queue-max-queues", "4"),
        ("mac", "00:16:3e:00:00:01"),
        ("mtu", "1400"),
    ] {
        assert_eq!(f.backend_node(k).as_deref(), Some(v), "{k}");
    }
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", vif.tap_name())).unwrap();
    assert_eq!(mtu.trim(), "1400");
    let sock = socket(vif.tap_name());
    f.connect(&FrontOptions::default());
    wait_until("serving", || vif.is_connected());
    assert_eq!(dom.bound_ports(), 1);
    assert_eq!(dom.table.entries_in_use(), 2, "both ring pages mapped");

    // Guest → tap.
    for (seed, len) in [(1u8, 60usize), (2, 1400), (3, 4096)] {
        let out = frame(BROADCAST, mac(1), seed, len);
        assert_eq!(f.q(0).send(&out), NETIF_RSP_OKAY);
        assert_eq!(seen(&sock, WAIT), Some(out));
    }
    // Tap → guest.
    for (seed, len) in [(4u8, 60usize), (5, 1400)] {
        let back = frame(mac(1), HOST_MAC, seed, len);
        sock.send(&back).unwrap();
        assert_eq!(f.q(0).recv_matching(WAIT, is_test_frame), Some(back));
    }
    wait_until("metrics", || {
        let m = vif.metrics();
        m.tx_packets == 3 && m.rx_packets >= 2
    });
    let m = vif.metrics();
    assert_eq!(m.tx_bytes, 60 + 1400 + 4096);
    assert_eq!((m.tx_dropped, m.tap_write_errors), (0, 0));
    assert!(vif.failure().is_none());
    vif.close();
}

#[test]
fn two_queues_with_split_channels() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(2);
    let (id, vif) = attach(&store, &dom, 0, config("b"));
    let sock = socket(vif.tap_name());
    let mut f = Netfront::new(&store, &dom, &id);
    f.connect(&FrontOptions {
        queues: 2,
        split: true,
        ..FrontOptions::default()
    });
    wait_until("serving", || vif.is_connected());
    assert_eq!(dom.bound_ports(), 4);
    assert_eq!(dom.table.entries_in_use(), 4);

    for q in 0..2 {
        let out = frame(BROADCAST, mac(2), 10 + q as u8, 500);
        assert_eq!(f.q(q).send(&out), NETIF_RSP_OKAY);
        assert_eq!(seen(&sock, WAIT), Some(out));
    }
    // The kernel picks the tap queue (so the netif queue) of each frame.
    for seed in 0..6u8 {
        let mut back = frame(mac(2), HOST_MAC, seed, 100);
        back[6..12].copy_from_slice(&[2, 0, 0, 0, seed, 1]);
        sock.send(&back).unwrap();
        let end = Instant::now() + WAIT;
        let got = loop {
            assert!(Instant::now() < end, "frame {seed} never reached the guest");
            let got = (0..2).find_map(|q| {
                f.q(q)
                    .recv_matching(Duration::from_millis(20), |x| x == back.as_slice())
            });
            if let Some(g) = got {
                break g;
            }
        };
        assert_eq!(got, back);
    }
    f.close();
    assert!(!vif.is_connected());
    assert_eq!(dom.bound_ports(), 0);
    assert_eq!(dom.table.entries_in_use(), 0);

    // netfront bound again writes Initialising: InitWait, and a fresh connection (the same
    // shape: netfront leaves its old nodes behind, as Linux's does).
    f.set_state(Initialising);
    f.connect(&FrontOptions {
        queues: 2,
        split: true,
        ..FrontOptions::default()
    });
    wait_until("serving again", || vif.is_connected());
    for q in 0..2 {
        let out = frame(BROADCAST, mac(2), 20 + q as u8, 300);
        assert_eq!(f.q(q).send(&out), NETIF_RSP_OKAY);
        assert_eq!(seen(&sock, WAIT), Some(out));
    }
    vif.close();
}

#[test]
fn bad_frontend_configs_fail_with_the_error_node() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(3);
    let bad_gref = dom.unused_gref().to_string();
    let cases: [(Vec<(&str, String)>, &str); 4] = [
        (vec![("request-rx-copy", "0".into())], "request-rx-copy"),
        (
            vec![("multi-queue-num-queues", "5".into())],
            "multi-queue-num-queues 5",
        ),
        (vec![("tx-ring-ref", bad_gref.clone())], "tx-ring-ref"),
        (vec![("event-channel", "999".into())], "event channel 999"),
    ];
    for (devid, (extra, want)) in cases.into_iter().enumerate() {
        let cfg = VifConfig {
            vifname: Some(tap_name(&format!("c{devid}"))),
            ..config("")
        };
        let (id, vif) = attach(&store, &dom, devid as u32, cfg);
        let mut f = Netfront::new(&store, &dom, &id);
        f.wait_backend(InitWait);
        f.write_config(&FrontOptions {
            extra: extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..FrontOptions::default()
        });
        f.wait_backend(Closing);
        let err = store.read(&id.error_path()).expect("error node");
        assert!(err.contains(want), "{want}: {err}");
        assert!(!vif.is_connected());
        assert_eq!(dom.bound_ports(), 0, "{want}: nothing stays bound");
        assert_eq!(
            dom.table.entries_in_use(),
            0,
            "{want}: nothing stays mapped"
        );
        vif.close();
    }
}

#[test]
fn two_domains_are_independent() {
    require_tun();
    let store = Store::start();
    let (da, db) = (Domain::new(4), Domain::new(5));
    let (ia, va) = attach(
        &store,
        &da,
        0,
        VifConfig {
            mac: mac(4),
            ..config("d")
        },
    );
    let (ib, vb) = attach(
        &store,
        &db,
        0,
        VifConfig {
            mac: mac(5),
            ..config("e")
        },
    );
    let (sa, sb) = (socket(va.tap_name()), socket(vb.tap_name()));
    let mut fa = Netfront::new(&store, &da, &ia);
    let mut fb = Netfront::new(&store, &db, &ib);
    fa.connect(&FrontOptions::default());
    fb.connect(&FrontOptions::default());

    let from_a = frame(BROADCAST, mac(4), 1, 200);
    assert_eq!(fa.q(0).send(&from_a), NETIF_RSP_OKAY);
    assert_eq!(seen(&sa, WAIT), Some(from_a));
    let from_b = frame(BROADCAST, mac(5), 2, 300);
    assert_eq!(fb.q(0).send(&from_b), NETIF_RSP_OKAY);
    assert_eq!(seen(&sb, WAIT), Some(from_b));
    assert_eq!(
        seen(&sa, Duration::from_millis(100)),
        None,
        "b's frame stayed on b's tap"
    );

    // Closing a leaves b working.
    va.close();
    assert_eq!(da.bound_ports(), 0);
    assert!(!Path::new(&format!("/sys/class/net/{}", tap_name("d"))).exists());
    let to_b = frame(mac(5), HOST_MAC, 3, 120);
    sb.send(&to_b).unwrap();
    assert_eq!(fb.q(0).recv_matching(WAIT, is_test_frame), Some(to_b));
    assert_eq!(db.bound_ports(), 1);
    wait_until("metrics", || vb.metrics().tx_packets == 1);
    vb.close();
}

#[test]
fn close_unbinds_unmaps_and_removes_the_tap() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(6);
    // The default name is Xen's.
    let cfg = VifConfig {
        vifname: None,
        ..config("")
    };
    let (id, vif) = attach(&store, &dom, 7, cfg);
    assert_eq!(vif.tap_name(), "vif6.7");
    let mut f = Netfront::new(&store, &dom, &id);
    f.connect(&FrontOptions {
        queues: 3,
        ..FrontOptions::default()
    });
    wait_until("serving", || vif.is_connected());
    assert_eq!((dom.bound_ports(), dom.table.entries_in_use()), (3, 6));
    vif.close();
    assert_eq!((dom.bound_ports(), dom.table.entries_in_use()), (0, 0));
    assert!(!Path::new("/sys/class/net/vif6.7").exists());
    assert_eq!(backend_state(&store, &id), Some(Closed));
}

#[test]
fn rate_limit_paces_without_dropping() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(7);
    // 2000 bytes per 50 ms.
    let cfg = VifConfig {
        rate: Some((2000, 50_000)),
        ..config("r")
    };
    let (id, vif) = attach(&store, &dom, 0, cfg);
    let sock = socket(vif.tap_name());
    let mut f = Netfront::new(&store, &dom, &id);
    f.connect(&FrontOptions::default());
    let start = Instant::now();
    let frames: Vec<Vec<u8>> = (0..10u8)
        .map(|i| frame(BROADCAST, mac(7), i, 1000))
        .collect();
    for fr in &frames {
        assert_eq!(f.q(0).send(fr), NETIF_RSP_OKAY);
    }
    for fr in &frames {
        assert_eq!(
            seen(&sock, WAIT).as_ref(),
            Some(fr),
            "every frame, in order"
        );
    }
    let took = start.elapsed();
    // Two frames go with the first credit, then two per interval: the last after 4 intervals.
    assert!(took >= Duration::from_millis(190), "{took:?}");
    wait_until("metrics", || vif.metrics().tx_packets == 10);
    assert!(vif.metrics().tx_rate_waits > 0);
    vif.close();
}

/// A bridge for one test, deleted at the end.
struct Bridge(String);

impl Bridge {
    fn new(name: String) -> Bridge {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &name])
            .output();
        let ok = std::process::Command::new("ip")
            .args(["link", "add", &name, "type", "bridge"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link add {name} type bridge");
        Bridge(name)
    }

    fn has(&self, tap: &str) -> bool {
        std::fs::read_link(format!("/sys/class/net/{tap}/master"))
            .is_ok_and(|p| p.file_name().is_some_and(|n| n == self.0.as_str()))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

#[test]
fn bridge_directly_or_through_the_hotplug_script() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(8);
    let br = Bridge::new(tap_name("br"));
    let direct = VifConfig {
        bridge: Some(br.0.clone()),
        ..config("f")
    };
    let (_, v1) = attach(&store, &dom, 0, direct);
    assert!(br.has(v1.tap_name()), "ip link set master");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/hotplug/vif-bridge");
    let scripted = VifConfig {
        bridge: Some(br.0.clone()),
        script: Some(script.clone()),
        ..config("g")
    };
    let (_, v2) = attach(&store, &dom, 1, scripted);
    assert!(br.has(v2.tap_name()), "vif-bridge online");
    v2.close();
    assert!(!Path::new(&format!("/sys/class/net/{}", tap_name("g"))).exists());

    // A failing script fails the start, and names the script.
    let failing = VifConfig {
        script: Some(script),
        bridge: None,
        ..config("h")
    };
    let id = xenbus_backend::DeviceId::new("vif", 8, 2);
    xenbus_backend::create_device(&mut store.client(), &id, &[], &[]).unwrap();
    let e = netback::Vif::start(dom.host(), &store.socket, id, failing).unwrap_err();
    assert!(e.to_string().contains("vif-bridge"), "{e}");
    assert!(!Path::new(&format!("/sys/class/net/{}", tap_name("h"))).exists());
    v1.close();
}

#[test]
fn frames_wait_for_the_guests_buffers() {
    require_tun();
    let store = Store::start();
    let dom = Domain::new(9);
    let (id, vif) = attach(
        &store,
        &dom,
        0,
        VifConfig {
            mac: mac(9),
            ..config("n")
        },
    );
    let sock = socket(vif.tap_name());
    let mut f = Netfront::new(&store, &dom, &id);
    f.connect(&FrontOptions {
        no_rx_bufs: true,
        ..FrontOptions::default()
    });
    wait_until("serving", || vif.is_connected());
    let back = frame(mac(9), HOST_MAC, 7, 700);
    sock.send(&back).unwrap();
    wait_until("the frame to wait", || vif.metrics().rx_no_slots > 0);
    assert_eq!(
        f.q(0)
            .recv_matching(Duration::from_millis(100), is_test_frame),
        None
    );
    // Buffers posted (and the rx event channel kicked): the held frame goes in.
    f.q(0).post_rx_all();
    assert_eq!(f.q(0).recv_matching(WAIT, is_test_frame), Some(back));
    assert_eq!(vif.metrics().rx_dropped, 0);
    vif.close();
}
