//! A vbd served end to end: xenbus negotiation with a Linux-like blkfront over a real
//! Xenstore, requests through blkif rings in fake guest memory, reconnection and close.

mod common;

use std::time::Duration;

use blkback::Format;
use blkif::abi::{BLKIF_OP_READ, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY};
use common::*;
use xenbus_backend::XenbusState::*;

fn initial(sector: u64, len: usize) -> Vec<u8> {
    (sector * 512..sector * 512 + len as u64)
        .map(initial_byte)
        .collect()
}

#[test]
fn write_read_back_and_flush() {
    let r = Rig::new(1, Format::Raw);
    let Rig {
        vbd,
        mut f,
        dom,
        path,
        ..
    } = r;
    f.connect(&FrontOptions::default());
    assert_eq!(f.sectors, DISK_SIZE / 512);
    wait_until("serving", || vbd.is_connected());
    assert_eq!(dom.bound_ports(), 1);

    let q = f.q(0);
    assert_eq!(q.read(100, 4096).unwrap(), initial(100, 4096));
    // A full direct request: 11 pages.
    let big = pattern(1, 11 * 4096);
    assert_eq!(q.write(200, &big), BLKIF_RSP_OKAY);
    assert_eq!(q.read(200, big.len()).unwrap(), big);
    // Three sectors at an odd place; the neighbours keep their data.
    let small = pattern(2, 3 * 512);
    assert_eq!(q.write(7, &small), BLKIF_RSP_OKAY);
    let got = q.read(6, 4096).unwrap();
    assert_eq!(&got[..512], &initial(6, 512)[..]);
    assert_eq!(&got[512..2048], &small[..]);
    assert_eq!(&got[2048..], &initial(10, 2048)[..]);
    assert_eq!(q.flush(), BLKIF_RSP_OKAY);

    // Bad requests are answered with an error and the queue goes on.
    let bad = dom.unused_gref();
    let (rid, req) = q.read_with_gref(0, bad);
    assert_eq!(q.one(rid, req, BLKIF_OP_READ), BLKIF_RSP_ERROR);
    assert_eq!(q.write(DISK_SIZE / 512 - 1, &[1u8; 1024]), BLKIF_RSP_ERROR);
    assert_eq!(q.read(200, 4096).unwrap(), big[..4096]);

    // The data is in the file.
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[200 * 512..200 * 512 + big.len()], &big[..]);
    assert_eq!(&file[7 * 512..10 * 512], &small[..]);
    assert_eq!(file.len() as u64, DISK_SIZE);

    // Both ends offered persistent grants: data pages stay mapped beside the ring page.
    assert!(dom.table.entries_in_use() > 1);
    let want_written = (big.len() + small.len()) as u64;
    wait_until("metrics", || {
        let m = vbd.metrics();
        m.requests == 9 && m.bytes_written == want_written
    });
    let m = vbd.metrics();
    assert_eq!(m.flushes, 1);
    assert_eq!(m.bytes_read, (4096 + big.len() + 4096 + 4096) as u64);
    assert_eq!(m.errors.grant, 1);
    assert_eq!(m.errors.out_of_range, 1);
    assert!(vbd.failure().is_none());
    vbd.close();
}

#[test]
fn two_queues_and_a_four_page_ring() {
    let r = Rig::new(2, Format::Raw);
    let Rig {
        vbd, mut f, dom, ..
    } = r;
    let opts = FrontOptions {
        queues: 2,
        ring_order: 2,
        persistent: false,
        ..FrontOptions::default()
    };
    f.connect(&opts);
    wait_until("serving", || vbd.is_connected());
    assert_eq!(dom.bound_ports(), 2);
    assert_eq!(f.q(0).ring.nr_ents(), 128, "4 pages of 112-byte slots");

    // What one queue writes, the other reads.
    let a = pattern(10, 8 * 4096);
    assert_eq!(f.q(0).write(0, &a), BLKIF_RSP_OKAY);
    assert_eq!(f.q(1).read(0, a.len()).unwrap(), a);
    let b = pattern(11, 4096);
    assert_eq!(f.q(1).write(1000, &b), BLKIF_RSP_OKAY);
    assert_eq!(f.q(0).read(1000, b.len()).unwrap(), b);

    // Both queues busy at once, each on its own thread and region.
    let mut queues: Vec<FrontQueue> = f.queues.drain(..).collect();
    let threads: Vec<_> = queues
        .drain(..)
        .enumerate()
        .map(|(i, mut q)| {
            std::thread::spawn(move || {
                for round in 0..20u32 {
                    let sector = 2048 + i as u64 * 1024 + u64::from(round) * 16;
                    let d = pattern(100 * i as u32 + round, 2 * 4096);
                    assert_eq!(q.write(sector, &d), BLKIF_RSP_OKAY);
                    assert_eq!(q.read(sector, d.len()).unwrap(), d);
                }
                q
            })
        })
        .collect();
    f.queues = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // 40 requests in flight at once: more than a one-page ring (32 slots) holds.
    let q = f.q(1);
    let mut ids = Vec::new();
    for k in 0..40 {
        let (rid, req) = q.small_read(k as u64, k);
        q.ring.push_request(&req).unwrap();
        ids.push(rid);
    }
    q.push_and_kick();
    let mut got: Vec<u64> = q
        .wait_responses(40)
        .iter()
        .map(|r| {
            assert_eq!(r.status, BLKIF_RSP_OKAY);
            r.id
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, ids);
    assert_eq!(q.data_bytes(40 * 512), a[..40 * 512]);

    // No persistent grants: only the 2 x 4 ring pages stay mapped.
    assert_eq!(dom.table.entries_in_use(), 8);
    vbd.close();
}

#[test]
fn frontend_closes_and_reconnects() {
    let r = Rig::new(3, Format::Raw);
    let Rig {
        vbd, mut f, dom, ..
    } = r;
    let opts = FrontOptions::default();
    f.connect(&opts);
    let d = pattern(20, 2 * 4096);
    assert_eq!(f.q(0).write(300, &d), BLKIF_RSP_OKAY);

    // Unbind: Closing, Closed. The rings are let go.
    f.close();
    assert!(!vbd.is_connected());
    assert_eq!(dom.bound_ports(), 0);
    assert_eq!(
        dom.table.entries_in_use(),
        0,
        "ring and data pages unmapped"
    );

    // blkfront bound again writes nothing until the back end shows Connected (parked), then
    // writes its rings, Initialised, reads the disk, Connected, and sends I/O at once, maybe
    // before the back end has mapped the ring. Here the request is queued even before
    // Initialised, so its kick is surely lost (the port is not bound yet, as in Xen).
    f.wait_backend(Connected);
    assert!(!vbd.is_connected(), "parked, not serving");
    let nodes = f.ring_nodes(&opts);
    f.write_nodes(&nodes);
    let q = f.q(0);
    let (early, req) = q.small_read(301, 0);
    q.ring.push_request(&req).unwrap();
    q.push_and_kick();
    f.set_state(Initialised);
    f.finish_connect();
    let r = f.q(0).wait_responses(1);
    assert_eq!((r[0].id, r[0].status), (early, BLKIF_RSP_OKAY));
    assert_eq!(f.q(0).data_bytes(512), d[512..1024]);
    assert_eq!(f.q(0).read(300, d.len()).unwrap(), d);
    wait_until("serving", || vbd.is_connected());

    // A kexec-style reset: Closed then Initialising brings InitWait and a fresh connection.
    f.close();
    f.set_state(Initialising);
    f.connect(&opts);
    assert_eq!(f.q(0).read(300, d.len()).unwrap(), d);
    let (binds, unbinds) = dom.bind_counts();
    assert_eq!((binds, unbinds), (3, 2));
    vbd.close();
}

#[test]
fn close_ends_the_queues_and_unbinds() {
    let r = Rig::new(4, Format::Raw);
    let Rig {
        vbd, mut f, dom, ..
    } = r;
    f.connect(&FrontOptions {
        queues: 2,
        ..FrontOptions::default()
    });
    assert_eq!(f.q(1).write(8, &pattern(30, 4096)), BLKIF_RSP_OKAY);
    assert_eq!(dom.bound_ports(), 2);

    vbd.close();
    // close() returns once the back end's thread has ended, and it took the queues down.
    assert_eq!(f.backend_state(), Some(Closed));
    assert_eq!(dom.bound_ports(), 0);
    assert_eq!(dom.bind_counts(), (2, 2));
    assert_eq!(dom.table.entries_in_use(), 0);
    // Nobody answers any more.
    let q = f.q(0);
    let (rid, req) = q.small_read(0, 0);
    let _ = rid;
    q.ring.push_request(&req).unwrap();
    q.ring.push_requests_and_check_notify().unwrap();
    q.port.kick.write(1).unwrap();
    assert!(!q.response_within(Duration::from_millis(100)));
}

#[test]
fn block_detach_closes_the_frontend_then_the_device() {
    let r = Rig::new(10, Format::Raw);
    let Rig {
        vbd,
        mut f,
        dom,
        id,
        store,
        ..
    } = r;
    f.connect(&FrontOptions::default());
    assert_eq!(f.q(0).write(8, &pattern(31, 4096)), BLKIF_RSP_OKAY);

    // xl block-detach: the toolstack asks the back end to close and waits for the frontend.
    let detach = {
        let (socket, id) = (store.socket.clone(), id.clone());
        std::thread::spawn(move || {
            let mut c = xenstore::client::Client::connect(socket).unwrap();
            xenbus_backend::remove_device(&mut c, &id, WAIT).unwrap()
        })
    };
    // blkfront follows the back end's Closing.
    f.wait_backend(Closing);
    f.set_state(Closing);
    f.set_state(Closed);
    assert!(detach.join().unwrap().frontend_closed);
    wait_until("the back end to end", || vbd.is_finished());
    assert!(!vbd.is_connected());
    assert_eq!(dom.bound_ports(), 0);
    assert_eq!(dom.table.entries_in_use(), 0);
    assert_eq!(store.read(&id.backend_path()), None);
    vbd.close();
}

#[test]
fn read_only_disk() {
    let r = Rig::with(11, Format::Raw, |c| c.read_only = true);
    let Rig {
        vbd, mut f, path, ..
    } = r;
    f.wait_backend(InitWait);
    assert_eq!(f.backend_node("feature-discard").as_deref(), Some("0"));
    let nodes = f.ring_nodes(&FrontOptions::default());
    f.write_nodes(&nodes);
    f.set_state(Initialised);
    f.wait_backend(Connected);
    assert_eq!(
        f.backend_node("info").as_deref(),
        Some("4"),
        "VDISK_READONLY"
    );
    f.set_state(Connected);
    assert_eq!(f.q(0).write(0, &[7u8; 4096]), BLKIF_RSP_ERROR);
    assert_eq!(f.q(0).read(0, 4096).unwrap(), initial(0, 4096));
    let file = std::fs::read(&path).unwrap();
    assert_eq!(&file[..4096], &initial(0, 4096)[..]);
    wait_until("metrics", || vbd.metrics().errors.read_only == 1);
    vbd.close();
}
