//! Hostile frontends against a whole vif: malformed tx requests are answered with errors and
//! dropped while the vif keeps working; a broken ring stops only that domain's vif.

mod common;

use std::time::Duration;

use common::*;
use netback::VifConfig;
use netif::abi::{NETIF_RSP_ERROR, NETIF_RSP_OKAY};
use tap::packet::PacketSocket;
use xenbus_backend::XenbusState::*;

const BROADCAST: [u8; 6] = [0xff; 6];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x98];

/// What a hostile frontend changes in a tx request.
type Tamper = dyn Fn(&mut netif::abi::NetifTxRequest);

fn config(tag: &str, domid: u32) -> VifConfig {
    VifConfig {
        vifname: Some(tap_name(tag)),
        ..VifConfig::new(mac(domid))
    }
}

fn socket(name: &str) -> PacketSocket {
    let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).unwrap();
    PacketSocket::bind(index.trim().parse().unwrap()).unwrap()
}

#[test]
fn malformed_tx_requests_are_dropped_and_a_wild_ring_stops_only_its_vif() {
    require_tun();
    let store = Store::start();
    let (da, db) = (Domain::new(11), Domain::new(12));
    let (ia, va) = attach(&store, &da, 0, config("ha", 11));
    let (ib, vb) = attach(&store, &db, 0, config("hb", 12));
    let (sa, sb) = (socket(va.tap_name()), socket(vb.tap_name()));
    let mut fa = Netfront::new(&store, &da, &ia);
    let mut fb = Netfront::new(&store, &db, &ib);
    fa.connect(&FrontOptions::default());
    fb.connect(&FrontOptions::default());
    let seen = |s: &PacketSocket| s.recv_matching(WAIT, is_test_frame).unwrap();
    let none = |s: &PacketSocket| {
        s.recv_matching(Duration::from_millis(100), is_test_frame)
            .unwrap()
    };

    // Each malformed request gets an error response and reaches no tap; the next good
    // frame still goes through.
    let unused = da.unused_gref();
    let bad: [(&str, Box<Tamper>); 4] = [
        ("grant not granted", Box::new(move |r| r.gref = unused)),
        ("data past the page", Box::new(|r| r.offset = 4000)),
        ("shorter than a header", Box::new(|r| r.size = 6)),
        ("longer than a frame", Box::new(|r| r.size = u16::MAX)),
    ];
    for (i, (what, tamper)) in bad.iter().enumerate() {
        let f = frame(BROADCAST, mac(11), 10 + i as u8, 200);
        assert_eq!(fa.q(0).send_with(&f, tamper), NETIF_RSP_ERROR, "{what}");
        assert_eq!(none(&sa), None, "{what} reached the tap");
        let good = frame(BROADCAST, mac(11), 20 + i as u8, 150);
        assert_eq!(fa.q(0).send(&good), NETIF_RSP_OKAY, "after {what}");
        assert_eq!(seen(&sa), Some(good), "after {what}");
    }
    assert!(va.failure().is_none());
    wait_until("A's drops counted", || va.metrics().tx_dropped >= 4);

    // A wild producer index: A's vif stops and closes; B never notices.
    let port_a = fa.q(0).tx_port.port;
    fa.q(0).write_wild_tx_indices();
    wait_until("A's failure", || va.failure().is_some());
    wait_until("A's port unbound", || !da.is_bound(port_a));
    wait_until("A's back end Closing", || {
        fa.backend_state() == Some(Closing)
    });
    for seed in 0..5u8 {
        let f = frame(BROADCAST, mac(12), 40 + seed, 300);
        assert_eq!(fb.q(0).send(&f), NETIF_RSP_OKAY);
        assert_eq!(seen(&sb), Some(f));
        let to_b = frame(mac(12), HOST_MAC, 50 + seed, 120);
        sb.send(&to_b).unwrap();
        assert_eq!(fb.q(0).recv_matching(WAIT, is_test_frame), Some(to_b));
    }
    assert!(vb.failure().is_none());
    assert!(vb.is_connected());

    // A's guest reloads its driver: served again from a clean state.
    fa.close();
    fa.set_state(Initialising);
    fa.connect(&FrontOptions::default());
    assert!(va.failure().is_none(), "a new connection starts clean");
    let f = frame(BROADCAST, mac(11), 60, 180);
    assert_eq!(fa.q(0).send(&f), NETIF_RSP_OKAY);
    assert_eq!(seen(&sa), Some(f));
    va.close();
    vb.close();
}
