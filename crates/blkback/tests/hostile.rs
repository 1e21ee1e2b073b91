//! Hostile frontends: a broken ring stops only its own domain's vbd, and bad frontend nodes
//! make the connect fail with the error node written and nothing left mapped or bound.

mod common;

use std::time::Duration;

use blkback::Format;
use blkif::abi::BLKIF_RSP_OKAY;
use common::*;
use xenbus_backend::XenbusState::*;

#[test]
fn wild_ring_indices_stop_only_that_domain() {
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let (dom_a, dom_b) = (Domain::new(7), Domain::new(8));
    let disk_a = raw_disk(dir.path(), "a.img");
    let disk_b = raw_disk(dir.path(), "b.img");
    let (id_a, vbd_a) = attach(&store, &dom_a, DEV, config(&disk_a, Format::Raw));
    let (id_b, vbd_b) = attach(&store, &dom_b, DEV, config(&disk_b, Format::Raw));
    let opts = FrontOptions::default();
    let mut fa = Blkfront::new(&store, &dom_a, &id_a);
    let mut fb = Blkfront::new(&store, &dom_b, &id_b);
    fa.connect(&opts);
    fb.connect(&opts);
    let da = pattern(60, 4096);
    let db = pattern(61, 4096);
    assert_eq!(fa.q(0).write(16, &da), BLKIF_RSP_OKAY);
    assert_eq!(fb.q(0).write(16, &db), BLKIF_RSP_OKAY);
    let port_a = fa.q(0).port.port;

    fa.q(0).write_wild_indices();
    wait_until("A's failure", || vbd_a.failure().is_some());
    let why = vbd_a.failure().unwrap();
    assert!(why.contains("overflow"), "{why}");
    // A's queue thread is gone: its port is unbound and its ring unmapped.
    wait_until("A's port unbound", || !dom_a.is_bound(port_a));
    // The device closes, as xenbus_dev_fatal would make it, so A's frontend learns of it.
    wait_until("A's back end Closing", || {
        fa.backend_state() == Some(Closing)
    });
    assert_eq!(dom_a.table.entries_in_use(), 0);
    fa.q(0).port.kick.write(1).unwrap();
    assert!(!fa.q(0).response_within(Duration::from_millis(50)));

    // B never noticed.
    for round in 0..5u32 {
        let d = pattern(70 + round, 3 * 4096);
        assert_eq!(fb.q(0).write(64, &d), BLKIF_RSP_OKAY);
        assert_eq!(fb.q(0).read(64, d.len()).unwrap(), d);
    }
    assert_eq!(fb.q(0).read(16, 4096).unwrap(), db);
    assert!(vbd_b.failure().is_none());
    assert!(vbd_b.is_connected());
    assert_eq!(dom_b.bound_ports(), 1);
    assert_eq!(
        std::fs::read(&disk_a).unwrap()[16 * 512..20 * 512],
        da[..2048]
    );

    // A's guest reloads its driver: Closing, Closed, Initialising; served again.
    fa.close();
    fa.set_state(Initialising);
    fa.connect(&opts);
    assert!(vbd_a.failure().is_none(), "a new connection starts clean");
    assert_eq!(fa.q(0).read(16, 4096).unwrap(), da);
    vbd_a.close();
    vbd_b.close();
}

/// One bad frontend: what it changes in the nodes blkfront would write, and a piece of the
/// error the back end must report.
struct Case {
    name: &'static str,
    opts: FrontOptions,
    tamper: fn(&Domain, &mut Nodes),
    error: &'static str,
}

fn set(nodes: &mut [(String, String)], key: &str, value: String) {
    let n = nodes.iter_mut().find(|(k, _)| k == key).unwrap();
    n.1 = value;
}

fn cases() -> Vec<Case> {
    let one = FrontOptions::default();
    let two = FrontOptions {
        queues: 2,
        ..FrontOptions::default()
    };
    vec![
        Case {
            name: "ring-ref never granted",
            opts: one.clone(),
            tamper: |d, n| set(n, "ring-ref", d.unused_gref().to_string()),
            error: "queue 0: ring page 0, grant",
        },
        Case {
            name: "ring-ref not a number",
            opts: one.clone(),
            tamper: |_, n| set(n, "ring-ref", "0x12".into()),
            error: "ring-ref",
        },
        Case {
            name: "ring-page-order too large",
            opts: one.clone(),
            tamper: |_, n| n.push(("ring-page-order".into(), "9".into())),
            error: "ring-page-order",
        },
        Case {
            name: "event channel never allocated",
            opts: one.clone(),
            tamper: |d, n| set(n, "event-channel", d.unallocated_port().to_string()),
            error: "event channel",
        },
        Case {
            name: "second queue's event channel bad (the first was bound)",
            opts: two.clone(),
            tamper: |d, n| set(n, "queue-1/event-channel", d.unallocated_port().to_string()),
            error: "queue 1",
        },
        Case {
            name: "32-bit protocol",
            opts: FrontOptions {
                protocol: Some("x86_32-abi".into()),
                ..one.clone()
            },
            tamper: |_, _| {},
            error: "protocol",
        },
        Case {
            name: "more queues than offered",
            opts: FrontOptions {
                queues: 5,
                ..one.clone()
            },
            tamper: |_, _| {},
            error: "multi-queue-num-queues 5",
        },
        Case {
            name: "zero queues",
            opts: two,
            tamper: |_, n| set(n, "multi-queue-num-queues", "0".into()),
            error: "multi-queue-num-queues 0",
        },
    ]
}

#[test]
fn bad_frontend_nodes_fail_the_connect() {
    let store = Store::start();
    let dir = tempfile::tempdir().unwrap();
    let disk = raw_disk(dir.path(), "d.img");
    let dom = Domain::new(9);
    for (i, case) in cases().into_iter().enumerate() {
        let (id, vbd) = attach(&store, &dom, 768 + i as u32, config(&disk, Format::Raw));
        let mut f = Blkfront::new(&store, &dom, &id);
        f.wait_backend(InitWait);
        let mut nodes = f.ring_nodes(&case.opts);
        (case.tamper)(&dom, &mut nodes);
        f.write_nodes(&nodes);
        f.set_state(Initialised);
        f.wait_backend(Closing);
        let err = store
            .read(&id.error_path())
            .unwrap_or_else(|| panic!("{}: no error node", case.name));
        assert!(err.contains(case.error), "{}: {err}", case.name);
        assert!(!vbd.is_connected(), "{}", case.name);
        assert_eq!(dom.bound_ports(), 0, "{}: a port stayed bound", case.name);
        assert_eq!(
            dom.table.entries_in_use(),
            0,
            "{}: a grant stayed mapped",
            case.name
        );
        // blkfront answers Closing with Closed.
        f.set_state(Closed);
        f.wait_backend(Closed);
        vbd.close();
    }
    // The first queue of the two-queue case was bound, then let go.
    let (binds, unbinds) = dom.bind_counts();
    assert_eq!(binds, unbinds);
    assert!(binds >= 1);
}
