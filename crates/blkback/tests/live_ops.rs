//! Operations on a disk the guest is using: online resize and live snapshot.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use blkback::Format;
use blkif::abi::{BLKIF_RSP_ERROR, BLKIF_RSP_OKAY};
use block::vhd::{OpenOptions, VhdImage};
use block::DiskImage;
use common::*;
use xenbus_backend::XenbusState::*;

/// Grows a connected disk of `format` from [`DISK_SIZE`] to twice that.
fn online_resize(format: Format) {
    let r = Rig::new(5, format);
    let Rig {
        vbd,
        mut f,
        id,
        path,
        ..
    } = r;
    f.connect(&FrontOptions::default());
    wait_until("serving", || vbd.is_connected());
    let old = DISK_SIZE / 512;
    assert_eq!(f.sectors, old);
    let end = pattern(39, 4096);
    assert_eq!(f.q(0).write(old - 8, &end), BLKIF_RSP_OKAY);
    let tail = pattern(40, 4096);
    assert_eq!(f.q(0).write(old, &tail), BLKIF_RSP_ERROR, "beyond the disk");

    // blkfront watches the back end's state; the watch fires once when set.
    let state = format!("{}/state", id.backend_path());
    f.c.watch(&state, "be").unwrap();
    assert_eq!(f.c.next_event(WAIT).unwrap().unwrap().0, state);

    assert!(
        vbd.resize(DISK_SIZE * 2 + 100).is_err(),
        "not whole sectors"
    );
    vbd.resize(DISK_SIZE * 2).unwrap();
    let ev = f.c.next_event(WAIT).unwrap().expect("state re-written");
    assert_eq!(ev.0, state);
    assert_eq!(f.backend_state(), Some(Connected));
    assert_eq!(
        f.backend_node("sectors").unwrap(),
        (DISK_SIZE * 2 / 512).to_string()
    );
    // blkfront re-reads the capacity; the new sectors work and the old ones are intact.
    f.finish_connect();
    assert_eq!(f.sectors, old * 2);
    assert_eq!(f.q(0).write(old, &tail), BLKIF_RSP_OKAY);
    assert_eq!(f.q(0).read(old, 4096).unwrap(), tail);
    assert_eq!(f.q(0).read(old * 2 - 8, 4096).unwrap(), vec![0u8; 4096]);
    assert_eq!(f.q(0).read(old - 8, 4096).unwrap(), end);
    assert!(vbd.is_connected());
    assert_eq!(f.q(0).flush(), BLKIF_RSP_OKAY);
    vbd.close();
    match format {
        Format::Raw => assert_eq!(std::fs::metadata(&path).unwrap().len(), DISK_SIZE * 2),
        Format::Vhd => {
            check_vhd(&path);
            assert_eq!(read_image(&path, old, 4096), tail);
            let img = VhdImage::open(&path, &OpenOptions::read_only()).unwrap();
            assert_eq!(img.size(), DISK_SIZE * 2);
        }
    }
}

#[test]
fn online_resize_of_a_raw_disk() {
    online_resize(Format::Raw);
}

#[test]
fn online_resize_of_a_dynamic_vhd() {
    online_resize(Format::Vhd);
}

/// A 4 KiB block whose every 8-byte word is `v`.
fn stamp(v: u64) -> Vec<u8> {
    v.to_le_bytes().repeat(512)
}

/// The value of a block written by [`stamp`], failing on a torn one.
fn unstamp(b: &[u8]) -> u64 {
    let v = u64::from_le_bytes(b[..8].try_into().unwrap());
    assert_eq!(b, &stamp(v)[..], "torn block");
    v
}

fn read_image(path: &Path, sector: u64, len: usize) -> Vec<u8> {
    let img = VhdImage::open(path, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; len];
    img.read_at(&mut b, sector * 512).unwrap();
    b
}

fn check_vhd(path: &Path) {
    let r = block::vhd::check::check(path, None, &|_, _| {}).unwrap();
    assert!(r.is_ok(), "{}: {:?}", path.display(), r.problems);
}

#[test]
fn live_snapshot_while_writing() {
    let r = Rig::new(6, Format::Vhd);
    let Rig {
        vbd,
        mut f,
        id,
        store,
        path: live,
        dir,
        ..
    } = r;
    f.connect(&FrontOptions {
        queues: 2,
        ..FrontOptions::default()
    });
    let before = pattern(50, 8 * 4096);
    assert_eq!(f.q(0).write(0, &before), BLKIF_RSP_OKAY);

    // Queue 1 keeps writing numbered blocks (1 MiB in) meanwhile.
    const BUSY: u64 = 2048;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut q1 = f.queues.pop().unwrap();
    let writer = {
        let (done, stop) = (done.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                assert_eq!(q1.write(BUSY, &stamp(n)), BLKIF_RSP_OKAY, "write {n}");
                done.store(n, Ordering::Release);
            }
            (q1, n)
        })
    };
    wait_until("writes before", || done.load(Ordering::Acquire) >= 5);
    let lo = done.load(Ordering::Acquire);
    let (snap, held) = vbd.snapshot(Some(Path::new("snap.vhd"))).unwrap();
    let at_snapshot = done.load(Ordering::Acquire);
    assert_eq!(snap, dir.path().join("snap.vhd"));
    assert!(held < std::time::Duration::from_secs(1), "held {held:?}");
    wait_until("writes after", || {
        done.load(Ordering::Acquire) >= at_snapshot + 5
    });
    let after = pattern(51, 4096);
    let moved = pattern(52, 4096);
    assert_eq!(f.q(0).write(6144, &after), BLKIF_RSP_OKAY);
    assert_eq!(f.q(0).write(0, &moved), BLKIF_RSP_OKAY);
    stop.store(true, Ordering::Release);
    let (q1, last) = writer.join().unwrap();
    f.queues.push(q1);

    // The guest sees everything.
    assert_eq!(f.q(0).read(0, 4096).unwrap(), moved);
    assert_eq!(f.q(0).read(8, 4096).unwrap(), before[4096..8192]);
    assert_eq!(f.q(0).read(6144, 4096).unwrap(), after);
    assert_eq!(unstamp(&f.q(1).read(BUSY, 4096).unwrap()), last);
    assert_eq!(f.q(0).flush(), BLKIF_RSP_OKAY);
    assert!(vbd.failure().is_none());

    // The snapshot holds what was written before it: whole blocks only.
    check_vhd(&snap);
    assert_eq!(read_image(&snap, 0, before.len()), before);
    assert_eq!(read_image(&snap, 6144, 4096), vec![0u8; 4096]);
    let in_snap = unstamp(&read_image(&snap, BUSY, 4096));
    assert!(
        (lo..=at_snapshot + 1).contains(&in_snap),
        "snapshot has write {in_snap}, taken between writes {lo} and {at_snapshot}"
    );
    // The device still writes the disk's own path, now a child of the snapshot.
    assert_eq!(vbd.path(), live);
    assert_eq!(
        store
            .read(&format!("{}/params", id.backend_path()))
            .unwrap(),
        live.display().to_string()
    );
    vbd.close();
    check_vhd(&live);
    assert_eq!(read_image(&live, 0, 4096), moved);
    assert_eq!(read_image(&live, 8, 4096), before[4096..8192]);
    assert_eq!(read_image(&live, 6144, 4096), after);
    assert_eq!(unstamp(&read_image(&live, BUSY, 4096)), last);
}
