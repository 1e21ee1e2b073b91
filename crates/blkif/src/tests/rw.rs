//! Data path: round trips, multi-segment and indirect requests, flush, discard, rings.

use super::*;
use crate::{ring_refs, QueueConfig};

#[test]
fn write_then_read_one_page() {
    let mut g = Guest::simple();
    let w = g.data_page(0, true, b"oxen-blk");
    assert_eq!(
        g.status(rw(BLKIF_OP_WRITE, 7, 16, &[(w, 0, 7)])),
        BLKIF_RSP_OKAY
    );
    let disk = g.disk.snapshot();
    assert_eq!(&disk[16 * 512..16 * 512 + 4096], &g.page(0)[..]);
    // Neighbours untouched.
    assert_eq!(disk[16 * 512 - 1], (15u8) ^ 0xa5);
    assert_eq!(disk[24 * 512], 24u8 ^ 0xa5);
    let r = g.data_page(1, false, &[0]);
    let rsp = g.submit(&[rw(BLKIF_OP_READ, 8, 16, &[(r, 0, 7)])]);
    assert_eq!(
        (rsp[0].id, rsp[0].operation, rsp[0].status),
        (8, BLKIF_OP_READ, BLKIF_RSP_OKAY)
    );
    assert_eq!(g.page(1), g.page(0));
    let m = g.queue.metrics();
    assert_eq!((m.requests, m.bytes_written, m.bytes_read), (2, 4096, 4096));
    // Transient mappings are all released.
    assert_eq!(
        g.table.entries_in_use(),
        1,
        "only the ring page stays mapped"
    );
}

#[test]
fn multi_segment_partial_pages() {
    let mut g = Guest::simple();
    // 11 segments of varying sector windows: 1 + 2 + ... sectors.
    let mut segs = Vec::new();
    let mut expect = Vec::new();
    for i in 0..11u32 {
        let gref = g.data_page(i, true, &[i as u8 + 1, 0x10 + i as u8, 0x77]);
        let first = (i % 4) as u8;
        let last = (first + (i % 5) as u8).min(7);
        segs.push((gref, first, last));
        let page = g.page(i);
        expect.extend_from_slice(&page[first as usize * 512..(last as usize + 1) * 512]);
    }
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 1, 100, &segs)), BLKIF_RSP_OKAY);
    let disk = g.disk.snapshot();
    assert_eq!(&disk[100 * 512..100 * 512 + expect.len()], &expect[..]);
    assert_eq!(g.disk.changes(), 1, "one disk call for the whole request");
    // Read it back (31 sectors) into four other pages, the last one partly.
    let n = expect.len() / 512;
    assert_eq!(n, 31);
    let segs: Vec<(u32, u8, u8)> = (0..4u32)
        .map(|i| {
            (
                g.data_page(20 + i, false, &[0]),
                0,
                if i == 3 { 6 } else { 7 },
            )
        })
        .collect();
    assert_eq!(g.status(rw(BLKIF_OP_READ, 2, 100, &segs)), BLKIF_RSP_OKAY);
    for i in 0..3 {
        assert_eq!(
            &g.page(20 + i)[..],
            &expect[i as usize * 4096..(i as usize + 1) * 4096]
        );
    }
    assert_eq!(&g.page(23)[..3584], &expect[3 * 4096..]);
    assert_eq!(
        &g.page(23)[3584..],
        &[0u8; 512][..],
        "outside the window untouched"
    );
}

#[test]
fn indirect_write_and_read_of_256_segments() {
    let mut g = Guest::simple();
    let segs: Vec<(u32, u8, u8)> = (0..256u32)
        .map(|i| (g.data_page(10 + i, true, &[(i * 7) as u8, i as u8]), 0, 7))
        .collect();
    let ind = indirect_page(&g, 0, &segs);
    let req = indirect(BLKIF_OP_WRITE, 42, 0, 256, &[ind]);
    let rsp = g.submit(&[req]);
    assert_eq!(
        (rsp[0].id, rsp[0].operation, rsp[0].status),
        (42, BLKIF_OP_WRITE, 0)
    );
    let disk = g.disk.snapshot();
    for i in 0..256u32 {
        let at = i as usize * 4096;
        assert_eq!(&disk[at..at + 4096], &g.page(10 + i)[..], "page {i}");
    }
    // Read the first 300 sectors back through 38 segments into fresh pages.
    let segs: Vec<(u32, u8, u8)> = (0..38u32)
        .map(|i| {
            (
                g.data_page(300 + i, false, &[0]),
                0,
                if i == 37 { 3 } else { 7 },
            )
        })
        .collect();
    let ind = indirect_page(&g, 1, &segs);
    assert_eq!(g.status(indirect(BLKIF_OP_READ, 43, 0, 38, &[ind])), 0);
    for i in 0..37u32 {
        assert_eq!(g.page(300 + i), g.page(10 + i));
    }
    assert_eq!(&g.page(337)[..2048], &g.page(47)[..2048]);
    assert_eq!(g.queue.metrics().bytes_read, 37 * 4096 + 2048);
}

#[test]
fn flush_barrier_and_discard() {
    let mut g = Guest::simple();
    assert_eq!(g.status(rw(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, &[])), 0);
    assert_eq!(g.status(rw(BLKIF_OP_WRITE_BARRIER, 2, 0, &[])), 0);
    assert_eq!(*g.disk.flushes.lock().unwrap(), 2);
    // A barrier with data: flush, write, flush.
    let p = g.data_page(0, true, b"barrier!");
    assert_eq!(g.status(rw(BLKIF_OP_WRITE_BARRIER, 3, 8, &[(p, 0, 0)])), 0);
    assert_eq!(*g.disk.flushes.lock().unwrap(), 4);
    assert_eq!(&g.disk.snapshot()[8 * 512..8 * 512 + 8], b"barrier!");
    // Discard zeroes exactly the range.
    assert_eq!(g.status(discard(4, 10, 3)), 0);
    let d = g.disk.snapshot();
    assert!(d[10 * 512..13 * 512].iter().all(|&b| b == 0));
    assert_eq!(d[13 * 512], 13 ^ 0xa5);
    assert_eq!(d[10 * 512 - 1], 9 ^ 0xa5);
    // A zero-length discard is a no-op that succeeds.
    assert_eq!(g.status(discard(5, 2047, 0)), 0);
    let m = g.queue.metrics();
    assert_eq!((m.flushes, m.discards), (4, 2));
}

#[test]
fn multi_page_ring_with_a_full_ring_of_requests() {
    let mut g = Guest::new(2, 1 << 20, false, QueueConfig::default());
    assert_eq!(g.queue.nr_ents(), 128);
    for round in 0..3u64 {
        let mut reqs = Vec::new();
        for i in 0..128u32 {
            let p = g.data_page(i, true, &[(i as u64 + round) as u8]);
            reqs.push(rw(
                BLKIF_OP_WRITE,
                u64::from(i) + round * 1000,
                u64::from(i) * 8,
                &[(p, 0, 7)],
            ));
        }
        let rsp = g.submit(&reqs);
        assert_eq!(rsp.len(), 128);
        for (i, r) in rsp.iter().enumerate() {
            assert_eq!((r.id, r.status), (i as u64 + round * 1000, 0));
        }
        let d = g.disk.snapshot();
        for i in 0..128usize {
            assert!(d[i * 4096..(i + 1) * 4096]
                .iter()
                .all(|&b| b == (i as u64 + round) as u8));
        }
    }
}

#[test]
fn notifications_and_batches() {
    let cfg = QueueConfig {
        max_batch: 3,
        ..QueueConfig::default()
    };
    let mut g = Guest::new(0, 1 << 20, false, cfg);
    g.push_flushes(5);
    let out = g.queue.process().unwrap();
    assert_eq!((out.requests, out.more, out.notify), (3, true, true));
    let out = g.queue.process().unwrap();
    // The frontend has not consumed the first responses: its rsp_event is still 1.
    assert_eq!((out.requests, out.more, out.notify), (2, false, false));
    assert_eq!(g.responses().len(), 5);
    // The queue re-armed req_event: the next request notifies the backend.
    g.front
        .push_request(&rw(BLKIF_OP_FLUSH_DISKCACHE, 9, 0, &[]))
        .unwrap();
    assert!(g.front.push_requests_and_check_notify().unwrap());
    // Nothing waiting: nothing done, nothing to notify.
    g.queue.process().unwrap();
    let out = g.queue.process().unwrap();
    assert_eq!(out, crate::ProcessOutcome::default());
}

#[test]
fn persistent_grants_are_kept_and_bounded() {
    let cfg = QueueConfig {
        persistent_grants: true,
        max_persistent_grants: 4,
        ..QueueConfig::default()
    };
    let mut g = Guest::new(0, 1 << 20, false, cfg);
    let pages: Vec<u32> = (0..6)
        .map(|i| g.data_page(i, false, &[i as u8 + 1]))
        .collect();
    for (i, &p) in pages.iter().enumerate() {
        assert_eq!(
            g.status(rw(BLKIF_OP_WRITE, i as u64, i as u64 * 8, &[(p, 0, 7)])),
            0
        );
    }
    assert_eq!(g.queue.persistent_grants(), 4);
    assert_eq!(g.table.entries_in_use(), 1 + 4, "ring page + kept grants");
    // Reusing a kept grant sees the guest's new data (it maps the page, not a copy).
    g.data_page(0, false, &[0xee]);
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 9, 100, &[(pages[0], 0, 0)])), 0);
    assert_eq!(g.disk.snapshot()[100 * 512], 0xee);
    // A read into a kept page.
    assert_eq!(g.status(rw(BLKIF_OP_READ, 10, 8, &[(pages[0], 0, 7)])), 0);
    assert_eq!(g.page(0), vec![2u8; 4096]);
    // A read-only grant still serves a write request, without being kept.
    let ro = g.data_page(10, true, &[0x33]);
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 11, 200, &[(ro, 0, 0)])), 0);
    assert_eq!(g.queue.persistent_grants(), 4);
    drop(g.queue);
    assert_eq!(
        g.table.entries_in_use(),
        0,
        "dropping the queue releases everything"
    );
}

#[test]
fn ring_refs_from_xenstore_keys() {
    let keys = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
    };
    assert_eq!(ring_refs(keys(&[("ring-ref", "8")])).unwrap(), vec![8]);
    assert_eq!(
        ring_refs(keys(&[
            ("ring-page-order", "1"),
            ("ring-ref0", "9"),
            ("ring-ref1", " 10\n")
        ]))
        .unwrap(),
        vec![9, 10]
    );
    assert!(matches!(
        ring_refs(keys(&[("ring-page-order", "5")])),
        Err(crate::ConnectError::BadRingPageOrder { .. })
    ));
    assert!(matches!(
        ring_refs(keys(&[("ring-page-order", "1"), ("ring-ref0", "9")])),
        Err(crate::ConnectError::BadRingRef { .. })
    ));
    assert!(matches!(
        ring_refs(keys(&[("ring-ref", "-1")])),
        Err(crate::ConnectError::BadRingRef { .. })
    ));
    let disk = MemDisk::new(1 << 20, true);
    let f = crate::backend_features(&QueueConfig::default(), disk.as_ref());
    let get = |k| f.iter().find(|p| p.0 == k).unwrap().1.clone();
    assert_eq!(get("sectors"), "2048");
    assert_eq!(get("info"), "4");
    assert_eq!(get("feature-max-indirect-segments"), "256");
    assert_eq!(get("feature-discard"), "0");
    assert_eq!(get("max-ring-page-order"), "4");
    let cfg = QueueConfig {
        max_ring_page_order: 2,
        ..QueueConfig::default()
    };
    let f = crate::backend_features(&cfg, disk.as_ref());
    assert!(f.contains(&("max-ring-page-order", "2".to_string())));
}
