//! The zero-copy data path over a raw file (preadv/pwritev straight into and out of the
//! guest's pages), and responses published in the middle of a batch.

use super::*;
use block::raw::RawImage;
use block::SECTOR_SIZE;

/// A guest whose queue serves a raw file of 1 MiB whose sector `s` holds bytes `s ^ 0x3c`,
/// `s + 1`, ... (distinct within and across sectors).
fn raw_guest(cfg: QueueConfig) -> (Guest, Arc<RawImage>, tempfile::TempDir) {
    let mut g = Guest::new(0, 4096, false, cfg);
    let dir = tempfile::tempdir().unwrap();
    let raw = Arc::new(RawImage::create(&dir.path().join("d.img"), 1 << 20).unwrap());
    raw.write_at(&pattern(0, 1 << 20), 0).unwrap();
    g.queue = Queue::new(
        g.table.clone(),
        g.mem.clone(),
        raw.clone(),
        &[RING_GREF],
        cfg,
    )
    .unwrap();
    (g, raw, dir)
}

/// The file's initial bytes at `off..off + len`.
fn pattern(off: usize, len: usize) -> Vec<u8> {
    (off..off + len)
        .map(|i| ((i / 512) as u8 ^ 0x3c).wrapping_add(i as u8))
        .collect()
}

fn window(page: &[u8], first: u8, last: u8) -> &[u8] {
    &page[usize::from(first) * 512..(usize::from(last) + 1) * 512]
}

#[test]
fn segments_of_different_pages_land_at_their_offsets() {
    let (mut g, raw, _dir) = raw_guest(QueueConfig::default());
    // Write: page 0 sectors 2..=5, page 1 sector 0, page 2 sector 7, page 0 again 0..=1.
    let p: Vec<u32> = (0..3)
        .map(|i| g.data_page(i, true, &[0x10 * (i as u8 + 1), i as u8, 0xee]))
        .collect();
    let segs = [(p[0], 2, 5), (p[1], 0, 0), (p[2], 7, 7), (p[0], 0, 1)];
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 1, 40, &segs)), BLKIF_RSP_OKAY);
    let expect: Vec<u8> = segs
        .iter()
        .flat_map(|&(gref, f, l)| window(&g.page(gref - DATA_GREF), f, l).to_vec())
        .collect();
    assert_eq!(expect.len(), 8 * 512);
    let mut file = vec![0u8; 10 * 512];
    raw.read_at(&mut file, 39 * SECTOR_SIZE).unwrap();
    assert_eq!(&file[..512], &pattern(39 * 512, 512)[..], "sector before");
    assert_eq!(&file[512..9 * 512], &expect[..]);
    assert_eq!(
        &file[9 * 512..],
        &pattern(48 * 512, 512)[..],
        "sector after"
    );

    // Read 13 sectors from sector 100 into windows of three fresh pages (in an order that
    // is not the pages' order), the rest of each page untouched.
    let q: Vec<u32> = (10..13).map(|i| g.data_page(i, false, &[0xab])).collect();
    let segs = [(q[2], 3, 6), (q[0], 0, 3), (q[1], 5, 7), (q[0], 6, 7)];
    assert_eq!(g.status(rw(BLKIF_OP_READ, 2, 100, &segs)), BLKIF_RSP_OKAY);
    let mut from = 100 * 512;
    let mut want: Vec<Vec<u8>> = vec![vec![0xab; 4096]; 3];
    for &(gref, f, l) in &segs {
        let page = &mut want[(gref - q[0]) as usize];
        let n = (usize::from(l - f) + 1) * 512;
        page[usize::from(f) * 512..usize::from(f) * 512 + n].copy_from_slice(&pattern(from, n));
        from += n;
    }
    assert_eq!(from, 113 * 512);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&g.page(10 + i as u32), w, "page {}", 10 + i);
    }
    let m = g.queue.metrics();
    assert_eq!((m.bytes_written, m.bytes_read), (8 * 512, 13 * 512));
    assert_eq!(g.table.entries_in_use(), 1, "only the ring stays mapped");
}

#[test]
fn a_read_into_a_read_only_grant_is_refused_before_the_disk() {
    for persistent in [false, true] {
        let cfg = QueueConfig {
            persistent_grants: persistent,
            ..QueueConfig::default()
        };
        let (mut g, _raw, _dir) = raw_guest(cfg);
        let ok = g.data_page(0, false, &[0x55]);
        let ro = g.data_page(1, true, &[0x66]);
        let before = (g.page(0), g.page(1));
        // The writable page comes first: it must not be filled either.
        let rsp = g.status(rw(BLKIF_OP_READ, 1, 0, &[(ok, 0, 7), (ro, 0, 7)]));
        assert_eq!(rsp, BLKIF_RSP_ERROR, "persistent {persistent}");
        assert_eq!((g.page(0), g.page(1)), before, "persistent {persistent}");
        let m = g.queue.metrics();
        assert_eq!((m.errors.grant, m.bytes_read), (1, 0));
        // The same read-only page is a fine source for a write.
        assert_eq!(g.status(rw(BLKIF_OP_WRITE, 2, 8, &[(ro, 0, 7)])), 0);
        // And a read into the writable page alone works.
        assert_eq!(g.status(rw(BLKIF_OP_READ, 3, 8, &[(ok, 0, 7)])), 0);
        assert_eq!(g.page(0), before.1);
    }
}

#[test]
fn responses_are_published_every_response_batch_requests() {
    let cfg = QueueConfig {
        response_batch: 8,
        ..QueueConfig::default()
    };
    let mut g = Guest::new(1, 1 << 20, false, cfg);
    g.push_flushes(20);
    // The frontend's interrupt handler: take what is published, then re-arm.
    let (front, queue) = (&mut g.front, &mut g.queue);
    let mut seen = Vec::new();
    let out = queue
        .process_with(&mut || {
            let mut b = [0u8; RESPONSE_SIZE];
            let mut n = 0;
            while front.next_response(&mut b).unwrap() {
                n += 1;
            }
            assert!(!front.final_check_for_responses().unwrap());
            seen.push(n);
        })
        .unwrap();
    assert_eq!(seen, [8, 8, 4]);
    assert_eq!((out.requests, out.notify, out.more), (20, true, false));

    // Without a callback, the outcome still asks for the event, once, at the end.
    g.push_flushes(10);
    let out = g.queue.process().unwrap();
    assert_eq!((out.requests, out.notify), (10, true));
    assert_eq!(g.responses().len(), 10);
}
