//! The back end against a real Xenstore daemon and a frontend that behaves like Linux's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use xenbus_backend::{create_device, Backend, DeviceId, Error, XenbusState::*};

#[test]
fn blkfront_connects() {
    let store = Store::start();
    let (id, rec, h) = start_vbd(&store, 3, 51712);
    let mut f = Frontend::new(&store, &id);
    f.wait_backend(InitWait);
    assert_eq!(f.backend_node("feature-flush-cache").as_deref(), Some("1"));
    assert_eq!(
        f.backend_node("sectors"),
        None,
        "disk nodes come with Connected"
    );
    assert_eq!(f.blk_connect(8, 5), 2048);
    assert_eq!(
        rec.calls(),
        vec![
            Call::Advertise,
            Call::Connect("8".into(), "5".into()),
            Call::ConnectedNodes
        ]
    );
    wait_until("connected", || h.is_connected());
    assert_eq!(h.state(), Connected);
    // The frontend's own Connected changes nothing.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rec.connects(), 1);
    h.close();
    f.wait_backend(Closed);
    assert_eq!(rec.disconnects(), 1);
}

#[test]
fn connect_error_is_reported_and_closes() {
    let store = Store::start();
    let (id, rec, h) = start_vbd(&store, 3, 768);
    *rec.fail.lock().unwrap() = Some("mapping ring-ref 8: denied".into());
    let mut f = Frontend::new(&store, &id);
    f.wait_backend(InitWait);
    f.blk_offer_rings(8, 5);
    f.wait_backend(Closing);
    let err = f.c.read(0, &id.error_path()).unwrap();
    assert_eq!(err, b"mapping ring-ref 8: denied");
    // blkfront answers Closing with Closed.
    f.set_state(Closed);
    f.wait_backend(Closed);
    assert!(!h.is_connected());
    assert_eq!(rec.disconnects(), 0, "a failed connect is not disconnected");
    // No parking after an error: the back end stays Closed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(f.backend_state(), Some(Closed));
    assert!(!h.is_finished());
}

#[test]
fn netfront_unbind_and_bind_again() {
    let store = Store::start();
    let id = DeviceId::new("vif", 5, 0);
    create_device(
        &mut store.client(),
        &id,
        &[
            ("mac", "00:16:3e:00:00:01".into()),
            ("bridge", "xenbr0".into()),
        ],
        &[("mac", "00:16:3e:00:00:01".into()), ("handle", "0".into())],
    )
    .unwrap();
    let rec = Recorder::new(0);
    let h = Backend::spawn(&store.socket, id.clone(), rec.clone()).unwrap();
    let mut f = Frontend::new(&store, &id);
    f.net_connect(10, 7);
    f.wait_backend(Connected);
    wait_until("connected", || h.is_connected());

    // Unbind (xennet_bus_close, then xenbus_dev_remove).
    f.set_state(Closing);
    f.wait_backend(Closing);
    f.set_state(Closed);
    f.wait_backend(Closed);
    wait_until("disconnected", || !h.is_connected());
    // netfront's unbind polls for the back end's Closed: it must stay Closed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(f.backend_state(), Some(Closed));

    // Bind again: xennet_create_dev writes Initialising.
    f.set_state(Initialising);
    f.net_connect(20, 9);
    f.wait_backend(Connected);
    wait_until("connected again", || h.is_connected());
    assert_eq!(rec.connects(), 2);
    assert_eq!(rec.disconnects(), 1);
    assert!(rec
        .calls()
        .contains(&Call::Connect("20".into(), "9".into())));
    assert_eq!(rec.count(|c| *c == Call::Advertise), 2);
}

#[test]
fn blkfront_unbind_and_bind_again() {
    let store = Store::start();
    let (_id, rec, h, mut f) = connected_vbd(&store, 4, 51712);

    // Unbind: xenbus_dev_remove writes Closed straight from Connected.
    f.set_state(Closed);
    f.wait_backend(Closed);
    wait_until("disconnected", || !h.is_connected());
    assert_eq!(rec.disconnects(), 1);
    // Then the back end parks in Connected, not serving, with the disk's nodes.
    let closed_at = Instant::now();
    f.wait_backend(Connected);
    assert!(closed_at.elapsed() >= Duration::from_millis(800));
    assert!(!h.is_connected());
    assert_eq!(f.backend_node("sectors").as_deref(), Some("2048"));

    // Bind again: blkfront writes nothing until its watch shows a Connected back end, then
    // talk_to_blkback (rings, Initialised) and blkfront_connect (reads, Connected) at once.
    f.blk_offer_rings(30, 11);
    assert_eq!(f.blk_finish_connect(), 2048);
    wait_until("connected again", || h.is_connected());
    assert!(rec
        .calls()
        .contains(&Call::Connect("30".into(), "11".into())));
    assert_eq!(rec.connects(), 2);
    assert_eq!(f.backend_state(), Some(Connected));
}

#[test]
fn kexec_reset_of_a_parked_disk() {
    let store = Store::start();
    let (id, rec, h) = start_vbd(&store, 4, 5632);
    let mut f = Frontend::new(&store, &id);
    f.blk_connect(8, 5);
    f.set_state(Closed);
    f.wait_backend(Closed);
    f.wait_backend(Connected);
    // xenbus_reset_frontend with the back end Connected.
    f.set_state(Closing);
    f.wait_backend(Closing);
    f.set_state(Closed);
    f.wait_backend(Closed);
    f.set_state(Initialising);
    f.wait_backend(InitWait);
    assert_eq!(f.blk_connect(9, 6), 2048);
    wait_until("connected", || h.is_connected());
    assert_eq!(rec.connects(), 2);
}

#[test]
fn online_resize_is_seen_by_a_connected_frontend() {
    let store = Store::start();
    let (id, rec, h, mut f) = connected_vbd(&store, 3, 51728);
    // blkfront watches the back end's state.
    let state = format!("{}/state", id.backend_path());
    f.c.watch(&state, "be").unwrap();
    while f
        .c
        .next_event(Duration::from_millis(100))
        .unwrap()
        .is_some()
    {}

    *rec.sectors.lock().unwrap() = 4096;
    assert!(h
        .write_nodes_and_notify(&[("sectors", "4096".into())])
        .unwrap());
    let ev = f.c.next_event(WAIT).unwrap().expect("a state event");
    assert_eq!(ev, (state.clone(), "be".into()));
    // What blkfront_connect does on Connected while connected: re-read sectors.
    assert_eq!(f.backend_state(), Some(Connected));
    assert_eq!(f.backend_node("sectors").as_deref(), Some("4096"));

    // A plain node write does not touch the state.
    h.node_writer()
        .write_node("physical-sector-size", "4096")
        .unwrap();
    assert_eq!(f.c.next_event(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(
        f.backend_node("physical-sector-size").as_deref(),
        Some("4096")
    );
    assert!(matches!(
        h.write_node("../escape", "1"),
        Err(Error::InvalidNode(_))
    ));

    // Not connected: the nodes are written, the frontend is not told.
    f.set_state(Closed);
    wait_until("disconnected", || !h.is_connected());
    assert!(!h
        .write_nodes_and_notify(&[("sectors", "8192".into())])
        .unwrap());
    assert_eq!(f.backend_node("sectors").as_deref(), Some("8192"));
}

#[test]
fn garbage_and_vanishing_frontends_neither_crash_nor_hang_it() {
    let store = Store::start();
    let (id, rec, h) = start_vbd(&store, 6, 51712);
    let mut f = Frontend::new(&store, &id);
    f.wait_backend(InitWait);
    for junk in [&b"banana"[..], b"99", b"", b"-4", b"\xff\xfe", b"2"] {
        f.write_state_raw(junk);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(f.backend_state(), Some(InitWait));
    assert_eq!(rec.connects(), 0);

    // Initialised without any ring: the connect fails cleanly.
    f.set_state(Initialised);
    f.wait_backend(Closing);
    let err = String::from_utf8(f.c.read(0, &id.error_path()).unwrap()).unwrap();
    assert!(err.contains("ring-ref"), "{err}");

    // Starting over works; then junk while connected leaves it connected.
    f.set_state(Closed);
    f.wait_backend(Closed);
    f.set_state(Initialising);
    f.blk_connect(8, 5);
    wait_until("connected", || h.is_connected());
    f.write_state_raw(b"7x");
    std::thread::sleep(Duration::from_millis(200));
    assert!(h.is_connected());

    // The guest removes its whole directory: the rings are dropped, the device waits.
    f.c.rm(0, &id.frontend_path()).unwrap();
    wait_until("disconnected", || !h.is_connected());
    f.wait_backend(Closed);
    assert!(!h.is_finished());
    let t = Instant::now();
    h.close();
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn spawning_a_missing_device_fails() {
    let store = Store::start();
    let r = Backend::spawn(&store.socket, vbd(9, 1), Recorder::new(1));
    assert!(matches!(r, Err(Error::NoDevice(_))));
}
