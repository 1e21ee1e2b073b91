//! Creating and removing devices as libxl does, with and without a live frontend, and devices
//! of two domains side by side.

mod common;

use std::time::{Duration, Instant};

use common::*;
use xenbus_backend::{create_device, force_remove, remove_device, Backend, XenbusState::*};
use xenstore::client::Client;

fn perms(c: &mut Client, path: &str) -> Vec<String> {
    c.get_perms(0, path).unwrap()
}

fn exists(c: &mut Client, path: &str) -> bool {
    c.read(0, path).is_ok()
}

#[test]
fn create_writes_both_directories_with_libxl_permissions() {
    let store = Store::start();
    let mut c = store.client();
    let id = vbd(3, 51712);
    let (be, fe) = disk_nodes(51712);
    // A stale node from an earlier device is cleared.
    c.write(0, &format!("{}/stale", id.backend_path()), b"x")
        .unwrap();
    create_device(&mut c, &id, &be, &fe).unwrap();
    let b = id.backend_path();
    let f = id.frontend_path();
    let read = |c: &mut Client, p: String| String::from_utf8(c.read(0, &p).unwrap()).unwrap();
    assert_eq!(read(&mut c, format!("{b}/frontend")), f);
    assert_eq!(read(&mut c, format!("{b}/frontend-id")), "3");
    assert_eq!(read(&mut c, format!("{b}/online")), "1");
    assert_eq!(read(&mut c, format!("{b}/state")), "1");
    assert_eq!(read(&mut c, format!("{b}/params")), "/images/disk.vhd");
    assert_eq!(read(&mut c, format!("{f}/backend")), b);
    assert_eq!(read(&mut c, format!("{f}/backend-id")), "0");
    assert_eq!(read(&mut c, format!("{f}/state")), "1");
    assert_eq!(read(&mut c, format!("{f}/virtual-device")), "51712");
    assert!(!exists(&mut c, &format!("{b}/stale")));
    for p in [b.clone(), format!("{b}/state"), format!("{b}/params")] {
        assert_eq!(perms(&mut c, &p), ["n0", "r3"], "{p}");
    }
    for p in [
        f.clone(),
        format!("{f}/state"),
        format!("{f}/virtual-device"),
    ] {
        assert_eq!(perms(&mut c, &p), ["n3", "r0"], "{p}");
    }
}

#[test]
fn remove_device_with_a_connected_frontend() {
    let store = Store::start();
    let mut c = store.client();
    let (id, rec, h, mut f) = connected_vbd(&store, 3, 51712);

    // The guest: blkback_changed(Closing) → blkfront_closing → Closed.
    let guest = std::thread::spawn(move || {
        f.wait_backend(Closing);
        std::thread::sleep(Duration::from_millis(100));
        f.set_state(Closed);
    });
    let out = remove_device(&mut c, &id, Duration::from_secs(10)).unwrap();
    guest.join().unwrap();
    assert!(out.frontend_closed);
    assert!(!exists(&mut c, &id.backend_path()));
    assert!(!exists(&mut c, &id.frontend_path()));
    wait_until("thread end", || h.is_finished());
    assert_eq!(rec.disconnects(), 1);
    assert!(!h.is_connected());
}

#[test]
fn remove_device_without_a_frontend_driver_does_not_wait() {
    let store = Store::start();
    let mut c = store.client();
    let (id, rec, h) = start_vbd(&store, 3, 768);
    Frontend::new(&store, &id).wait_backend(InitWait);
    let t = Instant::now();
    let out = remove_device(&mut c, &id, Duration::from_secs(10)).unwrap();
    assert!(out.frontend_closed);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(!exists(&mut c, &id.backend_path()));
    wait_until("thread end", || h.is_finished());
    assert_eq!(rec.connects(), 0);
    assert_eq!(rec.disconnects(), 0);
    // Removing again is harmless.
    remove_device(&mut c, &id, Duration::from_secs(1)).unwrap();
}

#[test]
fn remove_device_times_out_on_a_frontend_that_never_closes() {
    let store = Store::start();
    let mut c = store.client();
    let (id, rec, h, _f) = connected_vbd(&store, 3, 51712);
    let t = Instant::now();
    let out = remove_device(&mut c, &id, Duration::from_millis(500)).unwrap();
    assert!(!out.frontend_closed);
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert!(!exists(&mut c, &id.frontend_path()));
    wait_until("thread end", || h.is_finished());
    assert_eq!(rec.disconnects(), 1);
}

#[test]
fn force_remove_ends_the_back_end() {
    let store = Store::start();
    let mut c = store.client();
    let (id, rec, h, _f) = connected_vbd(&store, 3, 51712);
    c.write(0, &id.error_path(), b"old").unwrap();
    force_remove(&mut c, &id).unwrap();
    wait_until("thread end", || h.is_finished());
    assert_eq!(rec.disconnects(), 1);
    assert!(!exists(&mut c, &id.error_dir()));
    // Closing the finished handle does not bring the directory back.
    h.close();
    assert!(!exists(&mut c, &id.backend_path()));
}

#[test]
fn devices_of_two_domains_are_independent() {
    let store = Store::start();
    let mut c = store.client();
    let (a, b) = (vbd(3, 51712), vbd(4, 51712));
    let (be, fe) = disk_nodes(51712);
    create_device(&mut c, &a, &be, &fe).unwrap();
    create_device(&mut c, &b, &be, &fe).unwrap();
    let (ra, rb) = (Recorder::new(100), Recorder::new(200));
    let ha = Backend::spawn(&store.socket, a.clone(), ra.clone()).unwrap();
    let hb = Backend::spawn(&store.socket, b.clone(), rb.clone()).unwrap();
    let mut fa = Frontend::new(&store, &a);
    let mut fb = Frontend::new(&store, &b);
    assert_eq!(fa.blk_connect(8, 5), 100);
    assert_eq!(fb.blk_connect(8, 5), 200);
    wait_until("both connected", || ha.is_connected() && hb.is_connected());

    // Domain 3's frontend goes away; domain 4's device carries on.
    fa.set_state(Closing);
    fa.wait_backend(Closing);
    fa.set_state(Closed);
    fa.wait_backend(Closed);
    assert!(hb.is_connected());
    assert_eq!(fb.backend_state(), Some(Connected));
    force_remove(&mut c, &a).unwrap();
    wait_until("domain 3's thread end", || ha.is_finished());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!hb.is_finished());
    assert!(hb.is_connected());
    assert_eq!((rb.connects(), rb.disconnects()), (1, 0));
    assert!(exists(&mut c, &b.backend_path()));
    drop(hb);
    assert_eq!(rb.disconnects(), 1);
    assert_eq!(fb.backend_state(), Some(Closed));
}
