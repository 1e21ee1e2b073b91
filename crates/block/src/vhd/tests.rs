//! Behaviour tests of the VHD engine on real files.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::crypt::Key;
use crate::{DiskImage, Error};

const MIB: u64 = 1 << 20;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn rw(p: &Path) -> VhdImage {
    VhdImage::open(p, &OpenOptions::read_write()).unwrap()
}

#[test]
fn dynamic_write_flush_reopen() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("d.vhd");
    create(&p, &CreateOptions::dynamic(64 * MIB)).unwrap();
    let img = rw(&p);
    let a = pattern(1, 3 * 512);
    img.write_at(&a, 6 * MIB - 512).unwrap();
    img.write_at(&pattern(2, 4096), 40 * MIB).unwrap();
    img.flush().unwrap();
    drop(img);
    let img = VhdImage::open(&p, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; a.len()];
    img.read_at(&mut b, 6 * MIB - 512).unwrap();
    assert_eq!(a, b);
    let mut z = vec![1u8; 4096];
    img.read_at(&mut z, 10 * MIB).unwrap();
    assert!(z.iter().all(|&x| x == 0));
    assert_eq!(img.allocated_blocks().len(), 3);
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());
}

#[test]
fn zero_writes_do_not_allocate_and_discard_frees() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("z.vhd");
    create(&p, &CreateOptions::dynamic(16 * MIB)).unwrap();
    let img = rw(&p);
    img.write_at(&vec![0u8; 2 * MIB as usize], 0).unwrap();
    assert!(img.allocated_blocks().is_empty());
    img.write_at(&pattern(3, 2 * MIB as usize), 2 * MIB)
        .unwrap();
    img.write_at(&pattern(4, 4096), 4 * MIB).unwrap();
    img.discard(2 * MIB, 2 * MIB).unwrap();
    img.discard(4 * MIB, 512).unwrap();
    let mut b = vec![9u8; 4096];
    img.read_at(&mut b, 2 * MIB).unwrap();
    assert!(b.iter().all(|&x| x == 0));
    img.read_at(&mut b, 4 * MIB).unwrap();
    assert!(b[..512].iter().all(|&x| x == 0));
    assert_eq!(&b[512..], &pattern(4, 4096)[512..]);
    assert_eq!(img.allocated_blocks().len(), 1);
    img.flush().unwrap();
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());
}

#[test]
fn small_block_size_and_unaligned_rejected() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.vhd");
    let mut o = CreateOptions::dynamic(MIB);
    o.block_size = 64 * 1024;
    create(&p, &o).unwrap();
    let img = rw(&p);
    let a = pattern(5, 200 * 1024);
    img.write_at(&a, 100 * 512).unwrap();
    img.flush().unwrap();
    let mut b = vec![0u8; a.len()];
    rw(&p).read_at(&mut b, 100 * 512).unwrap();
    assert_eq!(a, b);
    assert!(matches!(
        img.write_at(&[0; 100], 0),
        Err(Error::Unaligned { .. })
    ));
    assert!(matches!(
        img.read_at(&mut [0; 512], MIB),
        Err(Error::OutOfRange { .. })
    ));
}

#[test]
fn differencing_chain_falls_through() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.vhd");
    let mid = d.path().join("mid.vhd");
    let top = d.path().join("sub/top.vhd");
    std::fs::create_dir(d.path().join("sub")).unwrap();
    create(&base, &CreateOptions::dynamic(8 * MIB)).unwrap();
    let b = rw(&base);
    b.write_at(&pattern(1, 4 * MIB as usize), 0).unwrap();
    b.flush().unwrap();
    drop(b);
    create_child(&mid, &base, None).unwrap();
    let m = rw(&mid);
    m.write_at(&pattern(2, 1024), 1024).unwrap();
    m.flush().unwrap();
    drop(m);
    create_child(&top, &mid, None).unwrap();
    let t = rw(&top);
    t.write_at(&pattern(3, 512), 1536).unwrap();
    t.flush().unwrap();
    let mut got = vec![0u8; 4096];
    t.read_at(&mut got, 0).unwrap();
    let mut want = pattern(1, 4096);
    want[1024..2048].copy_from_slice(&pattern(2, 1024));
    want[1536..2048].copy_from_slice(&pattern(3, 512));
    assert_eq!(got, want);
    let m = ops::map(&t).unwrap();
    assert_eq!(m[0].layer, Some(2));
    assert_eq!((m[1].offset, m[1].len, m[1].layer), (1024, 512, Some(1)));
    assert_eq!((m[2].offset, m[2].layer), (1536, Some(0)));
    // Moving the chain keeps it working through the relative locators.
    let moved = tempfile::tempdir().unwrap();
    for f in ["base.vhd", "mid.vhd"] {
        std::fs::rename(d.path().join(f), moved.path().join(f)).unwrap();
    }
    std::fs::create_dir(moved.path().join("sub")).unwrap();
    std::fs::rename(&top, moved.path().join("sub/top.vhd")).unwrap();
    let t2 = VhdImage::open(moved.path().join("sub/top.vhd"), &OpenOptions::read_only()).unwrap();
    t2.read_at(&mut got, 0).unwrap();
    assert_eq!(got, want);
    // Coalesce the top into mid, and mid reads the merged data.
    ops::coalesce(&moved.path().join("sub/top.vhd"), None, &|_, _| {}).unwrap();
    let m2 = VhdImage::open(moved.path().join("mid.vhd"), &OpenOptions::read_only()).unwrap();
    m2.read_at(&mut got, 0).unwrap();
    assert_eq!(got, want);
}

#[test]
fn missing_wrong_and_cyclic_parents_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.vhd");
    let c = d.path().join("c.vhd");
    create(&a, &CreateOptions::dynamic(MIB * 4)).unwrap();
    create_child(&c, &a, None).unwrap();
    std::fs::remove_file(&a).unwrap();
    let e = VhdImage::open(&c, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
    create(&a, &CreateOptions::dynamic(MIB * 4)).unwrap();
    let e = VhdImage::open(&c, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("UUID"), "{e}");
    // A child that names itself as parent: a cycle.
    let c2 = d.path().join("self.vhd");
    create_child(&c2, &a, None).unwrap();
    std::fs::remove_file(&a).unwrap();
    std::fs::copy(&c2, &a).unwrap();
    let e = VhdImage::open(&c2, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn concurrent_writers_without_global_lock() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.vhd");
    create(&p, &CreateOptions::dynamic(32 * MIB)).unwrap();
    let img = Arc::new(rw(&p));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let img = img.clone();
            std::thread::spawn(move || {
                for i in 0..64u64 {
                    let off = (i * 4 + u64::from(t)) * 128 * 1024;
                    img.write_at(&pattern(t ^ i as u8, 4096), off).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    img.flush().unwrap();
    let r = VhdImage::open(&p, &OpenOptions::read_only()).unwrap();
    for t in 0..4u8 {
        for i in 0..64u64 {
            let off = (i * 4 + u64::from(t)) * 128 * 1024;
            let mut b = vec![0u8; 4096];
            r.read_at(&mut b, off).unwrap();
            assert_eq!(b, pattern(t ^ i as u8, 4096));
        }
    }
}

#[test]
fn encryption_round_trip_and_wrong_key() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("e.vhd");
    let k = Key::generate().unwrap();
    let mut o = CreateOptions::dynamic(8 * MIB);
    o.key = Some(k.clone());
    create(&p, &o).unwrap();
    let img = VhdImage::open(&p, &OpenOptions::read_write().with_key(Some(k.clone()))).unwrap();
    img.write_at(&pattern(7, 8192), 4096).unwrap();
    img.flush().unwrap();
    let raw = std::fs::read(&p).unwrap();
    assert!(
        !raw.windows(64).any(|w| w == &pattern(7, 64)[..]),
        "plaintext on disk"
    );
    let mut b = vec![0u8; 16384];
    img.read_at(&mut b, 0).unwrap();
    assert!(b[..4096].iter().all(|&x| x == 0));
    assert_eq!(&b[4096..12288], &pattern(7, 8192)[..]);
    let wrong = Key::generate().unwrap();
    assert!(matches!(
        VhdImage::open(&p, &OpenOptions::read_only().with_key(Some(wrong))),
        Err(Error::WrongKey(_))
    ));
    assert!(matches!(
        VhdImage::open(&p, &OpenOptions::read_only()),
        Err(Error::KeyRequired(_))
    ));
    // Encrypted child of an encrypted parent.
    let c = d.path().join("ec.vhd");
    create_child(&c, &p, Some(&k)).unwrap();
    let ci = VhdImage::open(&c, &OpenOptions::read_write().with_key(Some(k.clone()))).unwrap();
    ci.write_at(&pattern(8, 512), 0).unwrap();
    ci.read_at(&mut b, 0).unwrap();
    assert_eq!(&b[..512], &pattern(8, 512)[..]);
    assert_eq!(&b[4096..12288], &pattern(7, 8192)[..]);
    // Fixed encrypted disk reads zeros where never written.
    let f = d.path().join("ef.vhd");
    let mut o = CreateOptions::fixed(MIB);
    o.key = Some(k.clone());
    create(&f, &o).unwrap();
    let fi = VhdImage::open(&f, &OpenOptions::read_write().with_key(Some(k))).unwrap();
    fi.read_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

#[test]
fn resize_dynamic_moves_bat_and_fixed_grows() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("r.vhd");
    create(&p, &CreateOptions::dynamic(4 * MIB)).unwrap();
    let img = rw(&p);
    img.write_at(&pattern(1, 4096), 2 * MIB).unwrap();
    img.flush().unwrap();
    // 4 MiB -> 1 GiB: 512 entries no longer fit before the first block.
    img.resize(1 << 30).unwrap();
    img.write_at(&pattern(2, 4096), (1 << 30) - 4096).unwrap();
    img.flush().unwrap();
    drop(img);
    let r = VhdImage::open(&p, &OpenOptions::read_only()).unwrap();
    assert_eq!(r.size(), 1 << 30);
    let mut b = vec![0u8; 4096];
    r.read_at(&mut b, 2 * MIB).unwrap();
    assert_eq!(b, pattern(1, 4096));
    r.read_at(&mut b, (1 << 30) - 4096).unwrap();
    assert_eq!(b, pattern(2, 4096));
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());

    let f = d.path().join("f.vhd");
    create(&f, &CreateOptions::fixed(MIB)).unwrap();
    let fi = rw(&f);
    fi.write_at(&pattern(4, 8192), 0).unwrap();
    fi.discard(0, 4096).unwrap();
    fi.read_at(&mut b, 0).unwrap();
    assert!(
        b.iter().all(|&x| x == 0),
        "discarded range of a fixed disk reads zeros"
    );
    fi.write_at(&pattern(3, 512), MIB - 512).unwrap();
    fi.resize(2 * MIB).unwrap();
    drop(fi);
    let fi = rw(&f);
    assert_eq!(fi.size(), 2 * MIB);
    fi.read_at(&mut b, MIB - 512).unwrap();
    assert_eq!(&b[..512], &pattern(3, 512)[..]);
    assert!(b[512..].iter().all(|&x| x == 0));
}

#[test]
fn live_snapshot_continues_on_child() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("live.vhd");
    create(&p, &CreateOptions::dynamic(8 * MIB)).unwrap();
    let img = Arc::new(rw(&p));
    img.write_at(&pattern(1, 4096), 0).unwrap();
    let child = img
        .snapshot_arc(&d.path().join("live-1.vhd"), None)
        .unwrap();
    drop(img);
    child.write_at(&pattern(2, 512), 512).unwrap();
    let mut b = vec![0u8; 4096];
    child.read_at(&mut b, 0).unwrap();
    let mut want = pattern(1, 4096);
    want[512..1024].copy_from_slice(&pattern(2, 512));
    assert_eq!(b, want);
    let base = VhdImage::open(&p, &OpenOptions::read_only()).unwrap();
    base.read_at(&mut b, 0).unwrap();
    assert_eq!(b, pattern(1, 4096));
}

#[test]
fn corruption_is_reported_and_repaired() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x.vhd");
    create(&p, &CreateOptions::dynamic(8 * MIB)).unwrap();
    let img = rw(&p);
    img.write_at(&pattern(1, 4096), 0).unwrap();
    img.flush().unwrap();
    drop(img);
    let good = std::fs::read(&p).unwrap();
    // Footer at the end smashed: open names it, repair restores it from the copy.
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 400] ^= 0xff;
    std::fs::write(&p, &bad).unwrap();
    let e = VhdImage::open(&p, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum") && e.contains("repair"), "{e}");
    assert!(!check::check(&p, None, &|_, _| {}).unwrap().is_ok());
    let acts = check::repair(&p).unwrap();
    assert!(!acts.is_empty());
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());
    let mut b = vec![0u8; 4096];
    VhdImage::open(&p, &OpenOptions::read_only())
        .unwrap()
        .read_at(&mut b, 0)
        .unwrap();
    assert_eq!(b, pattern(1, 4096));
    // BAT entry pointing outside the file.
    let mut bad = good.clone();
    bad[1536..1540].copy_from_slice(&0x00ff_0000u32.to_be_bytes());
    std::fs::write(&p, &bad).unwrap();
    let e = VhdImage::open(&p, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("BAT entry 0"), "{e}");
    check::repair(&p).unwrap();
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());
    // Truncated file.
    std::fs::write(&p, &good[..good.len() - 700]).unwrap();
    assert!(VhdImage::open(&p, &OpenOptions::read_only()).is_err());
    assert!(!check::check(&p, None, &|_, _| {}).unwrap().is_ok());
    // Header checksum.
    let mut bad = good;
    bad[600] ^= 1;
    std::fs::write(&p, &bad).unwrap();
    let e = VhdImage::open(&p, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("dynamic header checksum"), "{e}");
    assert!(check::repair(&p).is_err());
}

#[test]
fn concurrent_sector_writes_share_differencing_blocks() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("b.vhd");
    let child = d.path().join("c.vhd");
    let mut o = CreateOptions::dynamic(4 * MIB);
    o.block_size = 256 * 1024;
    create(&base, &o).unwrap();
    let b = rw(&base);
    b.write_at(&pattern(0xee, 4 * MIB as usize), 0).unwrap();
    b.flush().unwrap();
    drop(b);
    create_child(&child, &base, None).unwrap();
    let img = Arc::new(rw(&child));
    // Four threads write interleaved sectors of the same blocks: every bitmap byte is updated by
    // all of them at once.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let img = img.clone();
            std::thread::spawn(move || {
                for s in (t..2048).step_by(4) {
                    img.write_at(&[t as u8 + 1; 512], s * 1024).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    img.flush().unwrap();
    drop(img);
    let r = VhdImage::open(&child, &OpenOptions::read_only()).unwrap();
    let mut all = vec![0u8; 4 * MIB as usize];
    r.read_at(&mut all, 0).unwrap();
    let parent = pattern(0xee, 4 * MIB as usize);
    for s in 0..8192usize {
        let sec = &all[s * 512..s * 512 + 512];
        if s % 2 == 0 && s < 4096 {
            let t = (s / 2) % 4;
            assert!(sec.iter().all(|&x| x == t as u8 + 1), "sector {s}");
        } else {
            assert_eq!(
                sec,
                &parent[s * 512..s * 512 + 512],
                "sector {s} must show the parent"
            );
        }
    }
}

#[test]
fn lost_footer_after_power_loss_is_repaired() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("pl.vhd");
    create(&p, &CreateOptions::dynamic(8 * MIB)).unwrap();
    let img = rw(&p);
    img.write_at(&pattern(6, 4096), 3 * MIB).unwrap();
    img.flush().unwrap();
    drop(img);
    // The last allocation's footer write never reached the disk: the file ends with data.
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 512)
        .unwrap();
    let e = VhdImage::open(&p, &OpenOptions::read_only())
        .unwrap_err()
        .to_string();
    assert!(e.contains("repair"), "{e}");
    let acts = check::repair(&p).unwrap();
    assert!(
        acts.iter().any(|a| a.contains("wrote the footer")),
        "{acts:?}"
    );
    assert!(check::check(&p, None, &|_, _| {}).unwrap().is_ok());
    let r = VhdImage::open(&p, &OpenOptions::read_only()).unwrap();
    let mut b = vec![0u8; 4096];
    r.read_at(&mut b, 3 * MIB).unwrap();
    assert_eq!(b, pattern(6, 4096));
}
