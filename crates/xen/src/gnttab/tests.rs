//! Table-level operations: frames, size, version.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::abi::errno::Errno;
use crate::abi::gnttab::*;
use crate::abi::memory::XENMAPIDX_GRANT_TABLE_STATUS;
use crate::abi::DOMID_SELF;

pub(super) type Mem = GuestMemoryMmap<()>;
pub(super) const GUEST: DomId = 4;
/// 1 MiB of guest RAM: frames 0..0x100.
pub(super) const RAM_FRAMES: u64 = 0x100;
/// Where the tests place grant-table frame 0.
pub(super) const GT_GFN: u64 = 0xf0;

pub(super) fn memory() -> Mem {
    Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap()
}

/// A v1 table with frame 0 placed at `GT_GFN`.
pub(super) fn table() -> (GrantTable<Mem>, Mem) {
    let mem = memory();
    let t = GrantTable::new(GnttabConfig::new(GUEST), mem.clone()).unwrap();
    t.map_frame(0, GT_GFN).unwrap();
    (t, mem)
}

pub(super) fn put_v1(mem: &Mem, gref: u32, flags: u16, domid: DomId, frame: u32) {
    let gpa = GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8);
    mem.write_obj(
        GrantEntryV1 {
            flags,
            domid,
            frame,
        },
        gpa,
    )
    .unwrap();
}

pub(super) fn flags_v1(mem: &Mem, gref: u32) -> u16 {
    mem.read_obj(GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8))
        .unwrap()
}

#[test]
fn config_is_validated() {
    let mem = memory();
    let mut cfg = GnttabConfig::new(GUEST);
    cfg.max_frames = 0;
    assert_eq!(
        GrantTable::new(cfg, mem.clone()).unwrap_err(),
        ConfigError::BadMaxFrames(0)
    );
    cfg.max_frames = MAX_FRAMES_LIMIT + 1;
    assert!(GrantTable::new(cfg, mem.clone()).is_err());
    cfg.max_frames = 4;
    cfg.max_version = 3;
    assert_eq!(
        GrantTable::new(cfg, mem.clone()).unwrap_err(),
        ConfigError::BadMaxVersion(3)
    );
    cfg.max_version = 1;
    cfg.backend_domid = GUEST;
    assert_eq!(
        GrantTable::new(cfg, mem.clone()).unwrap_err(),
        ConfigError::SameDomain(GUEST)
    );
    cfg.backend_domid = 0;
    let t = GrantTable::new(cfg, mem).unwrap();
    assert_eq!((t.version(), t.nr_frames(), t.nr_entries()), (1, 0, 0));
    assert!(format!("{t:?}").contains("version: 1"));
}

#[test]
fn query_size_and_setup_table() {
    let mem = memory();
    let t = GrantTable::new(GnttabConfig::new(GUEST), mem).unwrap();
    let mut q = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    t.query_size(&mut q);
    assert_eq!(
        (q.status, q.nr_frames, q.max_nr_frames),
        (0, 0, DEFAULT_MAX_FRAMES)
    );

    let mut op = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 4,
        ..Default::default()
    };
    assert_eq!(
        t.setup_table(&mut op),
        vec![INVALID_GFN; 4],
        "frames not placed yet"
    );
    assert_eq!(op.status, 0);
    t.map_frame(2, 0x80).unwrap();
    let mut op = GnttabSetupTable {
        dom: GUEST,
        nr_frames: 3,
        ..Default::default()
    };
    assert_eq!(t.setup_table(&mut op), vec![INVALID_GFN, INVALID_GFN, 0x80]);
    assert_eq!(t.nr_frames(), 4, "setup_table never shrinks");
    assert_eq!(t.nr_entries(), 4 * 512);

    op.nr_frames = DEFAULT_MAX_FRAMES + 1;
    assert!(t.setup_table(&mut op).is_empty());
    assert_eq!(op.status, GntStatus::general_error.0);
    op.nr_frames = u32::MAX;
    t.setup_table(&mut op);
    assert_eq!(op.status, GntStatus::general_error.0);
    op.nr_frames = 1;
    op.dom = 0;
    t.setup_table(&mut op);
    assert_eq!(op.status, GntStatus::permission_denied.0);
    op.dom = 999;
    t.setup_table(&mut op);
    assert_eq!(op.status, GntStatus::bad_domain.0);
    q.dom = 999;
    t.query_size(&mut q);
    assert_eq!(q.status, GntStatus::bad_domain.0);
}

#[test]
fn map_frame_rules() {
    let (t, mem) = table();
    assert_eq!(t.nr_frames(), 1);
    assert_eq!(
        t.map_frame(u64::from(DEFAULT_MAX_FRAMES), 0x10),
        Err(Errno::EINVAL)
    );
    assert_eq!(t.map_frame(u64::MAX >> 1, 0x10), Err(Errno::EINVAL));
    assert_eq!(
        t.map_frame(1, RAM_FRAMES),
        Err(Errno::EINVAL),
        "outside guest memory"
    );
    assert_eq!(
        t.map_frame(1, u64::MAX),
        Err(Errno::EINVAL),
        "address overflow"
    );
    assert_eq!(
        t.map_frame(XENMAPIDX_GRANT_TABLE_STATUS, 0x10),
        Err(Errno::EINVAL),
        "v1 has no status"
    );
    // A first placement zeroes the frame; moving it carries the entries along.
    mem.write_slice(&[0xaa; 4096], GuestAddress(0x20 * 4096))
        .unwrap();
    t.map_frame(5, 0x20).unwrap();
    assert_eq!(t.nr_frames(), 6);
    let b: u64 = mem.read_obj(GuestAddress(0x20 * 4096 + 4000)).unwrap();
    assert_eq!(b, 0);
    put_v1(&mem, 7, GTF_PERMIT_ACCESS, 0, 0x42);
    t.map_frame(0, 0x30).unwrap();
    let e: GrantEntryV1 = mem.read_obj(GuestAddress(0x30 * 4096 + 56)).unwrap();
    assert_eq!(
        e,
        GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS,
            domid: 0,
            frame: 0x42
        }
    );
    t.map_frame(0, 0x30).unwrap();
    // Placing frame 1 over frame 5's location displaces frame 5.
    t.map_frame(1, 0x20).unwrap();
    let mut op = GnttabSetupTable {
        dom: DOMID_SELF,
        nr_frames: 6,
        ..Default::default()
    };
    let gfns = t.setup_table(&mut op);
    assert_eq!(gfns[0], 0x30);
    assert_eq!(gfns[1], 0x20);
    assert_eq!(gfns[5], INVALID_GFN);
}

#[test]
fn versions() {
    let (t, mem) = table();
    let mut g = GnttabGetVersion {
        dom: DOMID_SELF,
        ..Default::default()
    };
    t.get_version(&mut g).unwrap();
    assert_eq!(g.version, 1);
    g.dom = 0;
    assert_eq!(t.get_version(&mut g), Err(Errno::EPERM));
    g.dom = 77;
    assert_eq!(t.get_version(&mut g), Err(Errno::ESRCH));

    for bad in [0, 3, u32::MAX] {
        let mut op = GnttabSetVersion { version: bad };
        assert_eq!(t.set_version(&mut op), Err(Errno::EINVAL));
        assert_eq!(op.version, 1, "reports the version in force");
    }
    // Reserved entry 1 (Xenstore) survives the switch; others are cleared.
    put_v1(&mem, 1, GTF_PERMIT_ACCESS | GTF_READONLY, 0, 0xfeed);
    put_v1(&mem, 9, GTF_PERMIT_ACCESS, 0, 0x99);
    let mut op = GnttabSetVersion { version: 2 };
    t.set_version(&mut op).unwrap();
    assert_eq!((op.version, t.version(), t.nr_entries()), (2, 2, 256));
    let e: GrantEntryV2 = mem.read_obj(GuestAddress(GT_GFN * 4096 + 16)).unwrap();
    assert_eq!(
        (e.hdr.flags, e.hdr.domid, e.frame()),
        (GTF_PERMIT_ACCESS | GTF_READONLY, 0, 0xfeed)
    );
    let e9: GrantEntryV2 = mem.read_obj(GuestAddress(GT_GFN * 4096 + 9 * 16)).unwrap();
    assert_eq!(e9, GrantEntryV2::default());
    let mut op = GnttabSetVersion { version: 2 };
    t.set_version(&mut op).unwrap();
    // Status frames exist in v2 only.
    t.map_frame(XENMAPIDX_GRANT_TABLE_STATUS, 0x40).unwrap();
    assert_eq!(
        t.map_frame(XENMAPIDX_GRANT_TABLE_STATUS | 8, 0x41),
        Err(Errno::EINVAL),
        "beyond 64 frames"
    );
    assert_eq!(
        t.nr_frames(),
        1,
        "a refused status frame does not grow the table"
    );
    t.map_frame(XENMAPIDX_GRANT_TABLE_STATUS | 1, 0x41).unwrap();
    assert_eq!(t.nr_frames(), 16, "status frame 1 needs 16 shared frames");
    // A reserved v2 entry with a frame beyond 32 bits cannot go back to v1.
    let big = GrantEntryV2 {
        hdr: GrantEntryHeader {
            flags: GTF_PERMIT_ACCESS,
            domid: 0,
        },
        word1: 0,
        word2: 1 << 40,
    };
    mem.write_obj(big, GuestAddress(GT_GFN * 4096 + 32))
        .unwrap();
    let mut op = GnttabSetVersion { version: 1 };
    assert_eq!(t.set_version(&mut op), Err(Errno::ERANGE));
    assert_eq!(op.version, 2);
    mem.write_obj(GrantEntryV2::default(), GuestAddress(GT_GFN * 4096 + 32))
        .unwrap();
    op.version = 1;
    t.set_version(&mut op).unwrap();
    assert_eq!(op.version, 1);
    let e: GrantEntryV1 = mem.read_obj(GuestAddress(GT_GFN * 4096 + 8)).unwrap();
    assert_eq!(
        (e.flags, e.frame),
        (GTF_PERMIT_ACCESS | GTF_READONLY, 0xfeed)
    );
    assert_eq!(
        t.map_frame(XENMAPIDX_GRANT_TABLE_STATUS, 0x40),
        Err(Errno::EINVAL)
    );
}

#[test]
fn version_two_can_be_forbidden() {
    let cfg = GnttabConfig {
        max_version: 1,
        ..GnttabConfig::new(GUEST)
    };
    let t = GrantTable::new(cfg, memory()).unwrap();
    let mut op = GnttabSetVersion { version: 2 };
    assert_eq!(t.set_version(&mut op), Err(Errno::ENOSYS));
    assert_eq!(op.version, 1);
}

#[test]
fn set_version_is_busy_while_grants_are_in_use() {
    let (t, mem) = table();
    put_v1(&mem, 1, GTF_PERMIT_ACCESS, 0, 0x10);
    put_v1(&mem, 8, GTF_PERMIT_ACCESS, 0, 0x11);
    let reserved = t.map(1, true).unwrap();
    let mut op = GnttabSetVersion { version: 2 };
    // A reserved entry in use does not block the switch; entry 8 does.
    let other = t.map(8, true).unwrap();
    assert_eq!(t.set_version(&mut op), Err(Errno::EBUSY));
    assert_eq!(op.version, 1);
    drop(other);
    op.version = 2;
    t.set_version(&mut op).unwrap();
    assert_eq!(op.version, 2);
    drop(reserved);
}
