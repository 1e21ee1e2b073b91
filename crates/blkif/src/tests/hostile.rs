//! Hostile requests and rings: each gets the right answer, the disk stays untouched, the
//! queue survives (except for a broken ring, which ends it with an error).

use super::*;
use crate::{ConnectError, QueueConfig, QueueError, RequestError};
use xen::abi::gnttab::GTF_INVALID;
use xen_ring::{RingError, RingPages, REQ_PROD_OFFSET};

/// Submits `req`, expects `status`, and checks that neither the disk nor (optionally) the
/// guest's page 0 changed.
fn refused(g: &mut Guest, req: [u8; REQUEST_SIZE], status: i16) {
    let disk = g.disk.snapshot();
    let changes = g.disk.changes();
    let page = g.page(0);
    assert_eq!(g.status(req), status);
    assert_eq!(g.disk.snapshot(), disk, "disk changed");
    assert_eq!(g.disk.changes(), changes);
    assert_eq!(g.page(0), page, "guest page changed");
    assert_eq!(g.table.entries_in_use(), 1, "a claim was left behind");
}

#[test]
fn bad_grants_are_refused() {
    let mut g = Guest::simple();
    let good = g.data_page(1, true, &[1]);
    // A reference beyond the table, and a never-granted one.
    refused(
        &mut g,
        rw(BLKIF_OP_WRITE, 1, 0, &[(100_000, 0, 7)]),
        BLKIF_RSP_ERROR,
    );
    refused(
        &mut g,
        rw(BLKIF_OP_WRITE, 2, 0, &[(good, 0, 7), (777, 0, 7)]),
        BLKIF_RSP_ERROR,
    );
    set_entry(&g.mem, 500, GTF_INVALID, DATA_GFN as u32);
    refused(
        &mut g,
        rw(BLKIF_OP_WRITE, 3, 0, &[(500, 0, 7)]),
        BLKIF_RSP_ERROR,
    );
    // A grant of a frame outside guest memory.
    set_entry(&g.mem, 501, GTF_PERMIT_ACCESS, 0x10_0000);
    refused(
        &mut g,
        rw(BLKIF_OP_READ, 4, 0, &[(501, 0, 7)]),
        BLKIF_RSP_ERROR,
    );
    // A read-only grant used for a READ: the page must not be written.
    let ro = g.data_page(0, true, &[0x5a]);
    refused(
        &mut g,
        rw(BLKIF_OP_READ, 5, 0, &[(ro, 0, 7)]),
        BLKIF_RSP_ERROR,
    );
    // A bad indirect page, and a good indirect page naming a bad data grant.
    refused(
        &mut g,
        indirect(BLKIF_OP_WRITE, 6, 0, 1, &[9999]),
        BLKIF_RSP_ERROR,
    );
    let ind = indirect_page(&g, 2, &[(good, 0, 7), (888, 0, 7)]);
    refused(
        &mut g,
        indirect(BLKIF_OP_WRITE, 7, 0, 2, &[ind]),
        BLKIF_RSP_ERROR,
    );
    assert_eq!(g.queue.metrics().errors.grant, 7);
    // The queue still works.
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 8, 0, &[(good, 0, 7)])), 0);
}

#[test]
fn malformed_requests_are_refused() {
    let mut g = Guest::simple();
    let p = g.data_page(1, true, &[1]);
    let twelve = [(p, 0, 7); 12];
    for req in [
        rw(BLKIF_OP_WRITE, 1, 0, &[]),
        rw(BLKIF_OP_READ, 1, 0, &[]),
        rw(BLKIF_OP_WRITE, 1, 0, &twelve),
        rw(BLKIF_OP_WRITE_BARRIER, 1, 0, &twelve),
        rw(BLKIF_OP_WRITE, 1, 0, &[(p, 3, 2)]),
        rw(BLKIF_OP_WRITE, 1, 0, &[(p, 0, 8)]),
        rw(BLKIF_OP_WRITE, 1, 0, &[(p, 0, 7), (p, 255, 255)]),
        indirect(BLKIF_OP_WRITE, 1, 0, 0, &[p]),
        indirect(BLKIF_OP_WRITE, 1, 0, 257, &[p]),
        indirect(BLKIF_OP_WRITE, 1, 0, u16::MAX, &[p; 8]),
        indirect(BLKIF_OP_DISCARD, 1, 0, 1, &[p]),
        indirect(BLKIF_OP_INDIRECT, 1, 0, 1, &[p]),
        indirect(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, 1, &[p]),
    ] {
        refused(&mut g, req, BLKIF_RSP_ERROR);
    }
    // Indirect segment descriptors are validated too.
    let ind = indirect_page(&g, 2, &[(p, 0, 7), (p, 7, 1)]);
    refused(
        &mut g,
        indirect(BLKIF_OP_WRITE, 1, 0, 2, &[ind]),
        BLKIF_RSP_ERROR,
    );
    assert_eq!(g.queue.metrics().errors.malformed, 14);
}

#[test]
fn out_of_range_sectors_are_refused() {
    // 1 MiB disk: 2048 sectors.
    let mut g = Guest::simple();
    let p = g.data_page(1, true, &[1]);
    for (sector, segs) in [
        (2041u64, vec![(p, 0, 7)]),
        (2048, vec![(p, 0, 0)]),
        (u64::MAX, vec![(p, 0, 0)]),
        (u64::MAX - 6, vec![(p, 0, 7)]),
        (u64::MAX / 512 + 1, vec![(p, 0, 0)]),
    ] {
        refused(
            &mut g,
            rw(BLKIF_OP_WRITE, 1, sector, &segs),
            BLKIF_RSP_ERROR,
        );
        refused(
            &mut g,
            rw(BLKIF_OP_READ, 1, sector, &[(DATA_GREF + 5, 0, 7)]),
            BLKIF_RSP_ERROR,
        );
    }
    refused(&mut g, discard(1, 2000, 49), BLKIF_RSP_ERROR);
    refused(&mut g, discard(1, 1, u64::MAX), BLKIF_RSP_ERROR);
    refused(&mut g, discard(1, u64::MAX, 2), BLKIF_RSP_ERROR);
    let e = g.queue.metrics().errors;
    assert_eq!(e.out_of_range, 13, "{e:?}");
    // The last sector is reachable.
    assert_eq!(g.status(rw(BLKIF_OP_WRITE, 2, 2047, &[(p, 0, 0)])), 0);
    assert_eq!(g.status(discard(3, 2040, 8)), 0);
}

#[test]
fn unknown_operations_get_eopnotsupp() {
    let mut g = Guest::simple();
    for op in [4u8, 7, 8, 0x80, 255] {
        let mut req = rw(BLKIF_OP_READ, 77, 0, &[(DATA_GREF, 0, 7)]);
        req[0] = op;
        let rsp = g.submit(&[req]);
        assert_eq!(
            (rsp[0].id, rsp[0].operation, rsp[0].status),
            (77, op, BLKIF_RSP_EOPNOTSUPP)
        );
    }
    assert_eq!(g.queue.metrics().errors.unsupported, 5);
    assert_eq!(g.disk.changes(), 0);
}

#[test]
fn read_only_disks_refuse_changes() {
    for (ro_image, ro_cfg) in [(true, false), (false, true)] {
        let cfg = QueueConfig {
            read_only: ro_cfg,
            ..QueueConfig::default()
        };
        let mut g = Guest::new(0, 1 << 20, ro_image, cfg);
        assert!(g.queue.read_only());
        let p = g.data_page(1, true, &[1]);
        refused(
            &mut g,
            rw(BLKIF_OP_WRITE, 1, 0, &[(p, 0, 7)]),
            BLKIF_RSP_ERROR,
        );
        refused(
            &mut g,
            rw(BLKIF_OP_WRITE_BARRIER, 1, 0, &[(p, 0, 7)]),
            BLKIF_RSP_ERROR,
        );
        refused(&mut g, discard(1, 0, 8), BLKIF_RSP_ERROR);
        let ind = indirect_page(&g, 2, &[(p, 0, 7)]);
        refused(
            &mut g,
            indirect(BLKIF_OP_WRITE, 1, 0, 1, &[ind]),
            BLKIF_RSP_ERROR,
        );
        assert_eq!(g.queue.metrics().errors.read_only, 4);
        // Reads and flushes still work.
        let r = g.data_page(3, false, &[0]);
        assert_eq!(g.status(rw(BLKIF_OP_READ, 2, 0, &[(r, 0, 7)])), 0);
        assert_eq!(g.status(rw(BLKIF_OP_FLUSH_DISKCACHE, 3, 0, &[])), 0);
    }
}

#[test]
fn wild_ring_indices_end_the_queue() {
    let mut g = Guest::simple();
    g.front.pages().store_u32(REQ_PROD_OFFSET, 1000).unwrap();
    match g.queue.process() {
        Err(QueueError::Ring(RingError::Overflow {
            req_prod, nr_ents, ..
        })) => {
            assert_eq!((req_prod, nr_ents), (1000, 32));
        }
        other => panic!("expected an overflow, got {other:?}"),
    }
    // It keeps refusing, without touching the disk.
    assert!(g.queue.process().is_err());
    assert_eq!(g.disk.changes(), 0);
}

#[test]
fn bad_ring_setups_are_refused() {
    let (mem, table) = new_table();
    let disk = MemDisk::new(1 << 20, false);
    let cfg = QueueConfig::default();
    let new = |refs: &[u32]| Queue::new(table.clone(), mem.clone(), disk.clone(), refs, cfg);
    assert!(matches!(new(&[]), Err(ConnectError::BadPageCount(0))));
    assert!(matches!(
        new(&[1, 2, 3]),
        Err(ConnectError::BadPageCount(3))
    ));
    assert!(matches!(new(&[1; 32]), Err(ConnectError::BadPageCount(32))));
    // Not granted, read-only, outside memory.
    assert!(matches!(
        new(&[1]),
        Err(ConnectError::Grant {
            index: 0,
            gref: 1,
            ..
        })
    ));
    grant(&mem, 1, RING_GFN, false);
    grant(&mem, 2, RING_GFN + 1, true);
    assert!(matches!(
        new(&[1, 2]),
        Err(ConnectError::Grant {
            index: 1,
            gref: 2,
            ..
        })
    ));
    set_entry(&mem, 3, GTF_PERMIT_ACCESS, 0xfff_ffff);
    assert!(matches!(
        new(&[1, 3]),
        Err(ConnectError::Grant { index: 1, .. })
    ));
    assert_eq!(
        table.entries_in_use(),
        0,
        "failed setups release what they mapped"
    );
    assert!(new(&[1]).is_ok());
    let e = RequestError::BeyondDisk {
        sector: 9,
        nr_sectors: 2,
        disk_sectors: 10,
    };
    assert_eq!(
        e.to_string(),
        "sectors 9+2 are beyond the disk's 10 sectors"
    );
}
