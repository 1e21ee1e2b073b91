//! Backend and guest access to granted pages.

use vm_memory::{Bytes, GuestAddress};

use super::tests::{flags_v1, memory, put_v1, table, Mem, GT_GFN, GUEST, RAM_FRAMES};
use super::*;
use crate::abi::gnttab::*;
use crate::abi::DOMID_SELF;

const DATA_GFN: u64 = 0x10;

fn fill(mem: &Mem, gfn: u64, byte: u8) {
    mem.write_slice(&[byte; 4096], GuestAddress(gfn * 4096))
        .unwrap();
}

#[test]
fn map_and_copy_a_granted_page() {
    let (t, mem) = table();
    fill(&mem, DATA_GFN, 0x5a);
    put_v1(&mem, 9, GTF_PERMIT_ACCESS, 0, DATA_GFN as u32);
    {
        let m = t.map(9, false).unwrap();
        assert_eq!(
            flags_v1(&mem, 9),
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        assert_eq!(m.gpa(), GuestAddress(DATA_GFN * 4096));
        let mut b = [0u8; 4];
        m.read(100, &mut b).unwrap();
        assert_eq!(b, [0x5a; 4]);
        m.write(4092, b"oxen").unwrap();
        assert_eq!(
            m.write(4093, b"oxen").unwrap_err().status(),
            GntStatus::bad_copy_arg
        );
        assert_eq!(
            m.read(usize::MAX, &mut b).unwrap_err().status(),
            GntStatus::bad_copy_arg
        );
        assert_eq!(t.entries_in_use(), 1);
        assert!(!m.is_readonly());
        assert_eq!(m.gref(), 9);
    }
    assert_eq!(
        flags_v1(&mem, 9),
        GTF_PERMIT_ACCESS,
        "busy bits cleared on drop"
    );
    assert_eq!(t.entries_in_use(), 0);
    let mut out = [0u8; 4];
    t.copy_from_grant(9, 4092, &mut out).unwrap();
    assert_eq!(&out, b"oxen");
    t.copy_to_grant(9, 0, b"hi").unwrap();
    let mut two = [0u8; 2];
    mem.read_slice(&mut two, GuestAddress(DATA_GFN * 4096))
        .unwrap();
    assert_eq!(&two, b"hi");
    assert_eq!(
        flags_v1(&mem, 9),
        GTF_PERMIT_ACCESS,
        "copies leave no bits behind"
    );
    assert_eq!(
        t.copy_from_grant(9, 4095, &mut two).unwrap_err().status(),
        GntStatus::bad_copy_arg
    );
    t.copy_from_grant(9, 4096, &mut []).unwrap();
}

#[test]
fn anything_not_granted_to_the_backend_is_refused() {
    let (t, mem) = table();
    put_v1(&mem, 1, GTF_PERMIT_ACCESS, 7, DATA_GFN as u32);
    put_v1(&mem, 2, GTF_INVALID, 0, DATA_GFN as u32);
    put_v1(&mem, 3, GTF_ACCEPT_TRANSFER, 0, DATA_GFN as u32);
    put_v1(&mem, 4, GTF_TRANSITIVE, 0, DATA_GFN as u32);
    put_v1(
        &mem,
        5,
        GTF_PERMIT_ACCESS | GTF_READONLY,
        0,
        DATA_GFN as u32,
    );
    put_v1(&mem, 6, GTF_PERMIT_ACCESS, 0, RAM_FRAMES as u32);
    put_v1(&mem, 7, GTF_PERMIT_ACCESS, 0, u32::MAX);
    let mut b = [0u8; 8];
    for gref in [1, 2, 3, 4] {
        let e = t.map(gref, true).unwrap_err();
        assert!(matches!(e, AccessError::NotGranted { .. }), "{gref}: {e}");
        assert_eq!(e.status(), GntStatus::general_error);
        assert!(t.copy_from_grant(gref, 0, &mut b).is_err());
        assert_eq!(flags_v1(&mem, gref) & (GTF_READING | GTF_WRITING), 0);
    }
    // The sub-page bit makes a v1 entry unmappable (but still copyable).
    put_v1(
        &mem,
        8,
        GTF_PERMIT_ACCESS | GTF_SUB_PAGE,
        0,
        DATA_GFN as u32,
    );
    assert!(matches!(
        t.map(8, true),
        Err(AccessError::NotGranted { .. })
    ));
    t.copy_from_grant(8, 0, &mut b).unwrap();
    let e = t.map(1, true).unwrap_err();
    assert_eq!(
        e.to_string(),
        "grant 1 is not granted to domain 0 (flags 0x1, domid 7)"
    );
    // Read-only: readable, never writable.
    assert_eq!(
        t.map(5, false).unwrap_err(),
        AccessError::ReadOnly { gref: 5 }
    );
    assert!(t.copy_to_grant(5, 0, b"x").is_err());
    assert_eq!(
        flags_v1(&mem, 5),
        GTF_PERMIT_ACCESS | GTF_READONLY,
        "no bits left behind"
    );
    let ro = t.map(5, true).unwrap();
    assert!(ro.is_readonly());
    assert_eq!(
        ro.write(0, b"x").unwrap_err(),
        AccessError::ReadOnly { gref: 5 }
    );
    ro.read(0, &mut b).unwrap();
    drop(ro);
    // Frames outside guest RAM.
    for gref in [6, 7] {
        let e = t.map(gref, true).unwrap_err();
        assert_eq!(e.status(), GntStatus::bad_page, "{gref}");
        assert_eq!(flags_v1(&mem, gref), GTF_PERMIT_ACCESS, "bits undone");
    }
    // References beyond the table (one v1 frame: 512 entries).
    for gref in [512, 4096, u32::MAX] {
        let e = t.map(gref, true).unwrap_err();
        assert_eq!(e.status(), GntStatus::bad_gntref);
        assert!(matches!(
            e,
            AccessError::BadRef {
                nr_entries: 512,
                ..
            }
        ));
    }
    assert_eq!(t.entries_in_use(), 0);
}

#[test]
fn entries_in_unplaced_frames_are_refused() {
    let (t, _) = table();
    let mut op = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 2,
        ..Default::default()
    };
    t.setup_table(&mut op);
    assert_eq!(
        t.map(600, true).unwrap_err(),
        AccessError::FrameNotPlaced { gref: 600 }
    );
}

#[test]
fn use_counts_follow_xen() {
    let (t, mem) = table();
    put_v1(&mem, 3, GTF_PERMIT_ACCESS, 0, DATA_GFN as u32);
    let r1 = t.map(3, true).unwrap();
    let r2 = t.map(3, true).unwrap();
    assert_eq!(flags_v1(&mem, 3), GTF_PERMIT_ACCESS | GTF_READING);
    let w = t.map(3, false).unwrap();
    assert_eq!(
        flags_v1(&mem, 3),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    drop(w);
    assert_eq!(
        flags_v1(&mem, 3),
        GTF_PERMIT_ACCESS | GTF_READING,
        "last writer gone"
    );
    // While in use, the guest revoking the entry does not move the page from under us.
    put_v1(&mem, 3, GTF_INVALID | GTF_READING, 0, 0x77);
    let r3 = t.map(3, true).unwrap();
    assert_eq!(r3.gpa(), GuestAddress(DATA_GFN * 4096));
    drop((r1, r2));
    assert_eq!(flags_v1(&mem, 3), GTF_READING);
    drop(r3);
    assert_eq!(flags_v1(&mem, 3), 0);
    assert_eq!(t.entries_in_use(), 0);
    assert!(t.map(3, true).is_err(), "revoked once idle");
}

#[test]
fn guest_grant_to_itself_is_not_the_backends() {
    let (t, mem) = table();
    put_v1(&mem, 2, GTF_PERMIT_ACCESS, GUEST, DATA_GFN as u32);
    let m = t.map(2, true);
    assert!(matches!(
        m,
        Err(AccessError::NotGranted {
            caller: 0,
            domid: GUEST,
            ..
        })
    ));
}

fn copy(src: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> GnttabCopy {
    GnttabCopy {
        source: src,
        dest,
        len,
        flags,
        ..Default::default()
    }
}

fn ptr(u: u64, domid: DomId, offset: u16) -> GnttabCopyPtr {
    GnttabCopyPtr {
        u,
        domid,
        offset,
        _pad: 0,
    }
}

#[test]
fn guest_copy_between_frames_and_self_grants() {
    let (t, mem) = table();
    fill(&mem, 0x11, 0x11);
    fill(&mem, 0x12, 0x22);
    put_v1(&mem, 4, GTF_PERMIT_ACCESS, GUEST, 0x12);
    put_v1(&mem, 5, GTF_PERMIT_ACCESS | GTF_READONLY, GUEST, 0x12);
    // Frame to frame.
    let mut op = copy(ptr(0x11, DOMID_SELF, 0), ptr(0x12, DOMID_SELF, 10), 4, 0);
    t.guest_copy(&mut op);
    assert_eq!(op.status, 0);
    let v: u32 = mem.read_obj(GuestAddress(0x12 * 4096 + 10)).unwrap();
    assert_eq!(v, 0x1111_1111);
    // Frame to a grant it made to itself.
    let mut op = copy(
        ptr(0x11, DOMID_SELF, 0),
        ptr(4, GUEST, 100),
        2,
        GNTCOPY_DEST_GREF,
    );
    t.guest_copy(&mut op);
    assert_eq!(op.status, 0);
    assert_eq!(flags_v1(&mem, 4), GTF_PERMIT_ACCESS);
    // A read-only grant as destination.
    let mut op = copy(
        ptr(0x11, DOMID_SELF, 0),
        ptr(5, DOMID_SELF, 0),
        2,
        GNTCOPY_DEST_GREF,
    );
    t.guest_copy(&mut op);
    assert_eq!(op.status, GntStatus::general_error.0);
    // Read-only grant as source is fine.
    let mut op = copy(
        ptr(5, DOMID_SELF, 0),
        ptr(0x11, DOMID_SELF, 0),
        8,
        GNTCOPY_SOURCE_GREF,
    );
    t.guest_copy(&mut op);
    assert_eq!(op.status, 0);
    // Zero length succeeds whatever the rest says.
    let mut op = copy(ptr(u64::MAX, 99, 9999), ptr(u64::MAX, 98, 9999), 0, 3);
    t.guest_copy(&mut op);
    assert_eq!(op.status, 0);
    assert_eq!(t.entries_in_use(), 0);
}

#[test]
fn guest_copy_checks() {
    let (t, mem) = table();
    put_v1(&mem, 4, GTF_PERMIT_ACCESS, GUEST, 0x12);
    let cases: Vec<(GnttabCopy, GntStatus)> = vec![
        // Frame of another domain.
        (
            copy(ptr(0x11, 0, 0), ptr(0x12, DOMID_SELF, 0), 4, 0),
            GntStatus::permission_denied,
        ),
        (
            copy(ptr(0x11, DOMID_SELF, 0), ptr(0x12, 55, 0), 4, 0),
            GntStatus::permission_denied,
        ),
        // Grants of a domain that does not exist / the backend's.
        (
            copy(
                ptr(4, 55, 0),
                ptr(0x12, DOMID_SELF, 0),
                4,
                GNTCOPY_SOURCE_GREF,
            ),
            GntStatus::bad_domain,
        ),
        (
            copy(
                ptr(4, 0, 0),
                ptr(0x12, DOMID_SELF, 0),
                4,
                GNTCOPY_SOURCE_GREF,
            ),
            GntStatus::permission_denied,
        ),
        // Frames outside RAM.
        (
            copy(
                ptr(RAM_FRAMES, DOMID_SELF, 0),
                ptr(0x12, DOMID_SELF, 0),
                4,
                0,
            ),
            GntStatus::bad_page,
        ),
        (
            copy(ptr(0x11, DOMID_SELF, 0), ptr(u64::MAX, DOMID_SELF, 0), 4, 0),
            GntStatus::bad_page,
        ),
        // Crossing the page end.
        (
            copy(
                ptr(0x11, DOMID_SELF, 4000),
                ptr(0x12, DOMID_SELF, 0),
                100,
                0,
            ),
            GntStatus::bad_copy_arg,
        ),
        (
            copy(
                ptr(0x11, DOMID_SELF, 0),
                ptr(4, GUEST, 4095),
                2,
                GNTCOPY_DEST_GREF,
            ),
            GntStatus::bad_copy_arg,
        ),
        (
            copy(
                ptr(0x11, DOMID_SELF, 0),
                ptr(0x12, DOMID_SELF, 0),
                u16::MAX,
                0,
            ),
            GntStatus::bad_copy_arg,
        ),
        // Bad grant references.
        (
            copy(
                ptr(9999, DOMID_SELF, 0),
                ptr(0x12, DOMID_SELF, 0),
                4,
                GNTCOPY_SOURCE_GREF,
            ),
            GntStatus::bad_gntref,
        ),
        (
            copy(
                ptr(7, DOMID_SELF, 0),
                ptr(0x12, DOMID_SELF, 0),
                4,
                GNTCOPY_SOURCE_GREF,
            ),
            GntStatus::general_error,
        ),
    ];
    for (i, (mut op, want)) in cases.into_iter().enumerate() {
        t.guest_copy(&mut op);
        assert_eq!(op.status, want.0, "case {i}");
        assert_eq!(t.entries_in_use(), 0, "case {i} leaked a claim");
        assert_eq!(flags_v1(&mem, 4), GTF_PERMIT_ACCESS, "case {i} left bits");
    }
}

/// Writes a v2 entry in frame 0 and returns the status word's address.
fn put_v2(mem: &Mem, gref: u32, e: GrantEntryV2) {
    mem.write_obj(e, GuestAddress(GT_GFN * 4096 + u64::from(gref) * 16))
        .unwrap();
}

const STATUS_GFN: u64 = 0xf8;

fn status_v2(mem: &Mem, gref: u32) -> u16 {
    mem.read_obj(GuestAddress(STATUS_GFN * 4096 + u64::from(gref) * 2))
        .unwrap()
}

fn v2_table() -> (GrantTable<Mem>, Mem) {
    let (t, mem) = table();
    t.set_version(&mut GnttabSetVersion { version: 2 }).unwrap();
    t.map_frame(crate::abi::memory::XENMAPIDX_GRANT_TABLE_STATUS, STATUS_GFN)
        .unwrap();
    (t, mem)
}

fn hdr(flags: u16, domid: DomId) -> GrantEntryHeader {
    GrantEntryHeader { flags, domid }
}

#[test]
fn v2_full_and_sub_page_grants() {
    let (t, mem) = v2_table();
    fill(&mem, DATA_GFN, 0x33);
    put_v2(
        &mem,
        8,
        GrantEntryV2 {
            hdr: hdr(GTF_PERMIT_ACCESS, 0),
            word1: 0,
            word2: DATA_GFN,
        },
    );
    let m = t.map(8, false).unwrap();
    assert_eq!(status_v2(&mem, 8), GTF_READING | GTF_WRITING);
    let hdr_flags: u16 = mem.read_obj(GuestAddress(GT_GFN * 4096 + 128)).unwrap();
    assert_eq!(
        hdr_flags, GTF_PERMIT_ACCESS,
        "v2 keeps busy bits out of the header"
    );
    drop(m);
    assert_eq!(status_v2(&mem, 8), 0);

    // Sub-page: bytes 256..768 only; copies fine inside, refused outside, never mapped.
    let sub = GrantEntryV2 {
        hdr: hdr(GTF_PERMIT_ACCESS | GTF_SUB_PAGE, 0),
        word1: (512 << 16) | 256,
        word2: DATA_GFN,
    };
    put_v2(&mem, 9, sub);
    let mut b = [0u8; 512];
    t.copy_from_grant(9, 256, &mut b).unwrap();
    assert_eq!(b, [0x33; 512]);
    let e = t.copy_from_grant(9, 255, &mut b[..2]).unwrap_err();
    assert!(
        matches!(
            e,
            AccessError::OutsideGrant {
                start: 256,
                limit: 768,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.status(), GntStatus::general_error);
    assert!(t.copy_to_grant(9, 767, b"ab").is_err());
    assert!(matches!(t.map(9, true), Err(AccessError::SubPage { .. })));
    // A window leaving the page.
    let bad = GrantEntryV2 {
        word1: (4000 << 16) | 200,
        ..sub
    };
    put_v2(&mem, 10, bad);
    assert!(matches!(
        t.copy_from_grant(10, 200, &mut b[..1]),
        Err(AccessError::SubPage { .. })
    ));
    // Transitive grants are refused; so are grants to others.
    put_v2(
        &mem,
        11,
        GrantEntryV2 {
            hdr: hdr(GTF_TRANSITIVE, 0),
            word1: 3,
            word2: 5,
        },
    );
    assert!(t.copy_from_grant(11, 0, &mut b[..1]).is_err());
    put_v2(
        &mem,
        12,
        GrantEntryV2 {
            hdr: hdr(GTF_PERMIT_ACCESS, 9),
            word1: 0,
            word2: DATA_GFN,
        },
    );
    assert!(matches!(
        t.map(12, true),
        Err(AccessError::NotGranted { .. })
    ));
    // A frame beyond 32 bits (fine in v2's layout) that is not RAM.
    put_v2(
        &mem,
        13,
        GrantEntryV2 {
            hdr: hdr(GTF_PERMIT_ACCESS, 0),
            word1: 0,
            word2: 1 << 40,
        },
    );
    assert_eq!(t.map(13, true).unwrap_err().status(), GntStatus::bad_page);
    for g in 8..14 {
        assert_eq!(status_v2(&mem, g), 0, "gref {g} left busy");
    }
    assert_eq!(t.entries_in_use(), 0);
    assert_eq!(
        t.map(256, true).unwrap_err().status(),
        GntStatus::bad_gntref,
        "256 per v2 frame"
    );
}

#[test]
fn v2_without_status_frame_is_refused() {
    let (t, mem) = table();
    t.set_version(&mut GnttabSetVersion { version: 2 }).unwrap();
    put_v2(
        &mem,
        8,
        GrantEntryV2 {
            hdr: hdr(GTF_PERMIT_ACCESS, 0),
            word1: 0,
            word2: DATA_GFN,
        },
    );
    assert_eq!(
        t.map(8, true).unwrap_err(),
        AccessError::FrameNotPlaced { gref: 8 }
    );
}

#[test]
fn tables_share_state_across_clones_and_threads() {
    let (t, mem) = table();
    put_v1(&mem, 3, GTF_PERMIT_ACCESS, 0, DATA_GFN as u32);
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..200u32 {
                    let byte = [(n * 50 + i % 50) as u8];
                    t.copy_to_grant(3, (n * 1000 + i % 1000) as usize, &byte)
                        .unwrap();
                    let m = t.map(3, i % 2 == 0).unwrap();
                    drop(m);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(flags_v1(&mem, 3), GTF_PERMIT_ACCESS);
    assert_eq!(t.entries_in_use(), 0);
    let _ = memory();
}

#[test]
fn guest_flipping_an_entry_while_the_backend_uses_it() {
    let (t, mem) = table();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guest = {
        let (mem, stop) = (mem.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Grant, revoke, make read-only, point elsewhere: as fast as it can.
                let (flags, frame) = match n % 4 {
                    0 => (GTF_PERMIT_ACCESS, DATA_GFN as u32),
                    1 => (GTF_INVALID, DATA_GFN as u32),
                    2 => (GTF_PERMIT_ACCESS | GTF_READONLY, DATA_GFN as u32),
                    _ => (GTF_PERMIT_ACCESS, RAM_FRAMES as u32 + 5),
                };
                put_v1(&mem, 6, flags, 0, frame);
                n = n.wrapping_add(1);
            }
        })
    };
    let (mut ok, mut refused) = (0, 0);
    for i in 0..5000usize {
        let r = match i % 3 {
            0 => t
                .map(6, i % 2 == 0)
                .map(|m| assert_eq!(m.gpa(), GuestAddress(DATA_GFN * 4096))),
            1 => t.copy_to_grant(6, i % 4096, &[1]),
            _ => t.copy_from_grant(6, 0, &mut [0u8; 8]),
        };
        match r {
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        AccessError::NotGranted { .. }
                            | AccessError::ReadOnly { .. }
                            | AccessError::BadFrame { .. }
                            | AccessError::Unstable { .. }
                    ),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    guest.join().unwrap();
    assert_eq!(t.entries_in_use(), 0);
    assert_eq!(ok + refused, 5000);
}

#[test]
fn slices_of_a_mapping_are_checked_and_name_the_page() {
    let (t, mem) = table();
    fill(&mem, DATA_GFN, 0x11);
    put_v1(&mem, 9, GTF_PERMIT_ACCESS, 0, DATA_GFN as u32);
    put_v1(
        &mem,
        5,
        GTF_PERMIT_ACCESS | GTF_READONLY,
        0,
        DATA_GFN as u32 + 1,
    );
    let m = t.map(9, false).unwrap();
    let s = m.slice_mut(512, 1024).unwrap();
    assert_eq!(s.len(), 1024);
    s.write_slice(&[0x77; 4], 1020).unwrap();
    let mut b = [0u8; 6];
    mem.read_slice(&mut b, GuestAddress(DATA_GFN * 4096 + 1530))
        .unwrap();
    assert_eq!(b, [0x11, 0x11, 0x77, 0x77, 0x77, 0x77]);
    assert_eq!(m.slice(0, 4096).unwrap().len(), 4096);
    assert_eq!(
        m.slice(4000, 97).unwrap_err().status(),
        GntStatus::bad_copy_arg
    );
    assert!(m.slice_mut(usize::MAX, 2).is_err());
    // A read-only grant gives slices to read from, never to write into.
    let ro = t.map(5, true).unwrap();
    assert_eq!(ro.slice(0, 4096).unwrap().len(), 4096);
    assert_eq!(
        ro.slice_mut(0, 512).unwrap_err(),
        AccessError::ReadOnly { gref: 5 }
    );
}
