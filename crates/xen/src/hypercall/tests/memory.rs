//! `memory_op`: shared info and grant frame placement, the memory map, reservations and the
//! balloon's decrease/populate with page accounting.

use super::*;
use crate::abi::hypercall as nr;
use crate::abi::memory::*;
use crate::abi::DOMID_SELF;
use crate::hypercall::harness::{domain_info, Call, HOLE, MEM_FRAMES};

const RAM_PAGES: u64 = MEM_FRAMES - (HOLE.end - HOLE.start);

fn memop(h: &Harness, cmd: u64, gpa: u64) -> i64 {
    h.call(nr::memory_op, [cmd, h.gva(gpa), 0, 0, 0, 0])
}

fn physmap(h: &Harness, domid: u16, space: u32, idx: u64, gpfn: u64) -> i64 {
    h.put(
        ARG,
        XenAddToPhysmap {
            domid,
            size: 0,
            space,
            idx,
            gpfn,
        },
    );
    memop(h, u64::from(XENMEM_ADD_TO_PHYSMAP), ARG)
}

#[test]
fn add_to_physmap_shared_info() {
    let h = harness();
    assert_eq!(physmap(&h, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, 0xfe), 0);
    assert_eq!(h.platform.calls(), vec![Call::MapSharedInfo(0xfe)]);
    assert_eq!(h.hv.shared_info_gfn(), Some(0xfe));
    // By its own domain id too; moving it is allowed.
    assert_eq!(physmap(&h, 5, XENMAPSPACE_SHARED_INFO, 0, 0x10), 0);
    assert_eq!(h.hv.shared_info_gfn(), Some(0x10));
    h.platform.take();

    assert_eq!(
        physmap(&h, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 1, 0x20),
        err(Errno::EINVAL)
    );
    for gpfn in [HOLE.start, HOLE.end - 1, MEM_FRAMES, u64::MAX] {
        let r = physmap(&h, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, gpfn);
        assert_eq!(r, err(Errno::EINVAL), "gpfn {gpfn:#x}");
    }
    for dom in [0, 4, 6, crate::abi::DOMID_XEN] {
        let r = physmap(&h, dom, XENMAPSPACE_SHARED_INFO, 0, 0x20);
        assert_eq!(r, err(Errno::ESRCH), "dom {dom}");
    }
    assert!(h.platform.calls().is_empty());
    assert_eq!(h.hv.shared_info_gfn(), Some(0x10));

    // The platform's refusal reaches the guest and nothing is recorded as placed.
    h.platform.fail_when(|_| Some(Errno::ENOMEM));
    assert_eq!(
        physmap(&h, DOMID_SELF, XENMAPSPACE_SHARED_INFO, 0, 0x30),
        err(Errno::ENOMEM)
    );
    assert_eq!(h.hv.shared_info_gfn(), Some(0x10));
}

#[test]
fn add_to_physmap_grant_frames_and_other_spaces() {
    let h = harness();
    h.put_bytes(0x40 << 12, &[0xaa; 64]);
    assert_eq!(physmap(&h, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 0, 0x40), 0);
    assert_eq!(
        h.bytes(0x40 << 12, 64),
        [0; 64],
        "a new grant frame is zeroed"
    );
    assert_eq!(physmap(&h, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 3, 0x41), 0);
    assert_eq!(h.hv.gnttab().nr_frames(), 4);
    let max = u64::from(h.hv.gnttab().config().max_frames);
    for idx in [max, u64::MAX, XENMAPIDX_GRANT_TABLE_STATUS] {
        let r = physmap(&h, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, idx, 0x42);
        assert_eq!(r, err(Errno::EINVAL), "idx {idx:#x}");
    }
    assert_eq!(
        physmap(&h, DOMID_SELF, XENMAPSPACE_GRANT_TABLE, 1, MEM_FRAMES),
        err(Errno::EINVAL),
        "outside memory"
    );
    assert_eq!(
        physmap(&h, 7, XENMAPSPACE_GRANT_TABLE, 1, 0x42),
        err(Errno::ESRCH)
    );
    for space in [
        XENMAPSPACE_GMFN,
        XENMAPSPACE_GMFN_RANGE,
        XENMAPSPACE_GMFN_FOREIGN,
        XENMAPSPACE_DEV_MMIO,
        u32::MAX,
    ] {
        assert_eq!(
            physmap(&h, DOMID_SELF, space, 0, 0x42),
            err(Errno::ENOSYS),
            "space {space}"
        );
    }
    assert!(
        h.platform.calls().is_empty(),
        "grant frames need no platform call"
    );
    // A faulting argument.
    let r = h.call(
        nr::memory_op,
        [u64::from(XENMEM_ADD_TO_PHYSMAP), 0x1000, 0, 0, 0, 0],
    );
    assert_eq!(r, err(Errno::EFAULT));
}

#[test]
fn memory_map_writes_exact_entries() {
    let h = harness();
    let e820 = domain_info().e820;
    for short in [0, 1, 2] {
        h.put(
            ARG,
            XenMemoryMap {
                nr_entries: short,
                _pad: 0,
                buffer: h.gva(BUF),
            },
        );
        assert_eq!(
            memop(&h, u64::from(XENMEM_MEMORY_MAP), ARG),
            err(Errno::EINVAL)
        );
    }
    h.put_bytes(BUF, &[0xee; 128]);
    h.put(
        ARG,
        XenMemoryMap {
            nr_entries: 128,
            _pad: 0,
            buffer: h.gva(BUF),
        },
    );
    assert_eq!(memop(&h, u64::from(XENMEM_MEMORY_MAP), ARG), 0);
    assert_eq!(h.get::<XenMemoryMap>(ARG).nr_entries, 3);
    let raw = h.bytes(BUF, 128);
    for (i, e) in e820.iter().enumerate() {
        let b = &raw[20 * i..20 * (i + 1)];
        assert_eq!(u64::from_le_bytes(b[..8].try_into().unwrap()), e.addr);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), e.size);
        assert_eq!(u32::from_le_bytes(b[16..].try_into().unwrap()), e.kind);
    }
    assert!(
        raw[60..].iter().all(|&b| b == 0xee),
        "nothing past the entries"
    );

    // A buffer that faults, one at the very top of the address space, and the argument itself.
    for buffer in [0, u64::MAX - 10, h.gva((MEM_FRAMES << 12) - 30)] {
        h.put(
            ARG,
            XenMemoryMap {
                nr_entries: 3,
                _pad: 0,
                buffer,
            },
        );
        let r = memop(&h, u64::from(XENMEM_MEMORY_MAP), ARG);
        assert_eq!(r, err(Errno::EFAULT), "buffer {buffer:#x}");
    }
    h.guest.set_readonly(Some(ARG));
    h.put(
        ARG,
        XenMemoryMap {
            nr_entries: 3,
            _pad: 0,
            buffer: h.gva(BUF),
        },
    );
    assert_eq!(
        memop(&h, u64::from(XENMEM_MEMORY_MAP), ARG),
        err(Errno::EFAULT)
    );
}

#[test]
fn reservations_and_ram_page_queries() {
    let h = harness();
    h.put(ARG, DOMID_SELF);
    assert_eq!(
        memop(&h, u64::from(XENMEM_CURRENT_RESERVATION), ARG),
        RAM_PAGES as i64
    );
    assert_eq!(
        memop(&h, u64::from(XENMEM_MAXIMUM_RESERVATION), ARG),
        RAM_PAGES as i64
    );
    h.put(ARG, 5u16);
    assert_eq!(
        memop(&h, u64::from(XENMEM_CURRENT_RESERVATION), ARG),
        RAM_PAGES as i64
    );
    h.put(ARG, 0u16);
    assert_eq!(
        memop(&h, u64::from(XENMEM_CURRENT_RESERVATION), ARG),
        err(Errno::ESRCH)
    );
    assert_eq!(
        memop(&h, u64::from(XENMEM_MAXIMUM_RESERVATION), ARG),
        err(Errno::ESRCH)
    );
    let r = h.call(
        nr::memory_op,
        [u64::from(XENMEM_CURRENT_RESERVATION), 0, 0, 0, 0, 0],
    );
    assert_eq!(r, err(Errno::EFAULT));
    assert_eq!(
        memop(&h, u64::from(XENMEM_MAXIMUM_RAM_PAGE), 0),
        (MEM_FRAMES - 1) as i64
    );
    assert_eq!(
        memop(&h, u64::from(XENMEM_MAXIMUM_GPFN), 0),
        (MEM_FRAMES - 1) as i64
    );
    for cmd in [
        XENMEM_EXCHANGE,
        XENMEM_REMOVE_FROM_PHYSMAP,
        XENMEM_ADD_TO_PHYSMAP_BATCH,
        XENMEM_GET_VNUMAINFO,
        XENMEM_ACQUIRE_RESOURCE,
        0x3f,
    ] {
        assert_eq!(
            memop(&h, u64::from(cmd), ARG),
            err(Errno::ENOSYS),
            "cmd {cmd}"
        );
    }
}

fn reservation(h: &Harness, cmd: u32, start: u64, gfns: &[u64], nr: u64, order: u32) -> i64 {
    for (i, g) in gfns.iter().enumerate() {
        h.put(BUF + 8 * i as u64, *g);
    }
    h.put(
        ARG,
        XenMemoryReservation {
            extent_start: h.gva(BUF),
            nr_extents: nr,
            extent_order: order,
            mem_flags: 0,
            domid: DOMID_SELF,
            _pad: [0; 3],
        },
    );
    memop(h, u64::from(cmd) | (start << 6), ARG)
}

#[test]
fn balloon_decrease_then_populate() {
    use XENMEM_DECREASE_RESERVATION as DEC;
    use XENMEM_POPULATE_PHYSMAP as POP;
    let h = harness();
    assert_eq!(reservation(&h, DEC, 0, &[0x100, 0x101, 0x180], 3, 0), 3);
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 3);
    assert_eq!(
        h.platform.take_calls(),
        vec![
            Call::ReleasePage(0x100),
            Call::ReleasePage(0x101),
            Call::ReleasePage(0x180)
        ]
    );
    // A double release is refused: the count stops before it, nothing reaches the platform.
    assert_eq!(reservation(&h, DEC, 0, &[0x101], 1, 0), 0);
    assert_eq!(reservation(&h, DEC, 0, &[0x102, 0x100, 0x103], 3, 0), 1);
    assert_eq!(h.platform.calls(), vec![Call::ReleasePage(0x102)]);
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 4);
    h.platform.take();

    // Populate brings back released frames; an already-present one costs nothing.
    assert_eq!(reservation(&h, POP, 0, &[0x100, 0x200, 0x101], 3, 0), 3);
    assert_eq!(
        h.platform.calls(),
        vec![Call::PopulatePage(0x100), Call::PopulatePage(0x101)]
    );
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 2);
    assert_eq!(
        reservation(&h, XENMEM_INCREASE_RESERVATION, 0, &[0x102, 0x180], 2, 0),
        2
    );
    assert_eq!(h.hv.current_pages(), RAM_PAGES);
}

#[test]
fn balloon_hostile_extents() {
    use XENMEM_DECREASE_RESERVATION as DEC;
    let h = harness();
    // Partial success: stops at the first frame that is not RAM, or outside memory.
    assert_eq!(reservation(&h, DEC, 0, &[0x10, HOLE.start, 0x11], 3, 0), 1);
    assert_eq!(reservation(&h, DEC, 0, &[0x12, MEM_FRAMES, 0x13], 3, 0), 1);
    assert_eq!(reservation(&h, DEC, 0, &[0x14, u64::MAX, 0x15], 3, 0), 1);
    // Orders: aligned 2^order frames inside one RAM range; misaligned or too large refused.
    assert_eq!(reservation(&h, DEC, 0, &[0x200], 1, 4), 1);
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 3 - 16);
    assert_eq!(reservation(&h, DEC, 0, &[0x211], 1, 4), 0, "misaligned");
    assert_eq!(
        reservation(&h, DEC, 0, &[0x2f0, HOLE.start], 1, 7),
        0,
        "spans the hole"
    );
    assert_eq!(reservation(&h, DEC, 0, &[0], 1, 10), err(Errno::EINVAL));
    assert_eq!(
        reservation(&h, DEC, 0, &[0], 1, u32::MAX),
        err(Errno::EINVAL)
    );
    // Huge counts stop at the first fault (the list runs off the mapped memory), quickly.
    let end = (MEM_FRAMES << 12) - 16;
    h.put(end, [0x20u64, 0x21]);
    h.put(
        ARG,
        XenMemoryReservation {
            extent_start: h.gva(end),
            nr_extents: u64::from(u32::MAX >> 6),
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            _pad: [0; 3],
        },
    );
    assert_eq!(
        memop(&h, u64::from(DEC), ARG),
        2,
        "the extents done before the fault"
    );
    assert!(h.platform.calls().contains(&Call::ReleasePage(0x21)));
    // A list at the very top of the address space must not wrap around to address 0.
    let top = crate::hypercall::harness::SyntheticGuest::new(
        h.mem.clone(),
        0u64.wrapping_sub(MEM_FRAMES << 12),
    );
    h.put((MEM_FRAMES << 12) - 8, 0x22u64);
    h.put(0, 0x23u64);
    h.put(
        ARG,
        XenMemoryReservation {
            extent_start: u64::MAX - 7,
            nr_extents: 2,
            ..h.get(ARG)
        },
    );
    let r = h.hv.hypercall(
        0,
        &top,
        nr::memory_op,
        [u64::from(DEC), top.gva(ARG), 0, 0, 0, 0],
    );
    assert_eq!(r, 1);
    assert!(!h.platform.calls().contains(&Call::ReleasePage(0x23)));
    // The first entry faulting: nothing done.
    h.put(
        ARG,
        XenMemoryReservation {
            extent_start: 0,
            nr_extents: 2,
            ..h.get(ARG)
        },
    );
    assert_eq!(memop(&h, u64::from(DEC), ARG), 0);
    // Another domain, and a faulting argument.
    h.put(
        ARG,
        XenMemoryReservation {
            domid: 0,
            ..h.get(ARG)
        },
    );
    assert_eq!(memop(&h, u64::from(DEC), ARG), err(Errno::ESRCH));
    assert_eq!(
        h.call(nr::memory_op, [u64::from(DEC), 8, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    // Accounting matches what reached the platform.
    let released = h
        .platform
        .take()
        .iter()
        .filter(|(c, r)| matches!(c, Call::ReleasePage(_)) && r.is_ok())
        .count() as u64;
    assert_eq!(h.hv.current_pages(), RAM_PAGES - released);
}

#[test]
fn balloon_continuation_and_limits() {
    use XENMEM_DECREASE_RESERVATION as DEC;
    use XENMEM_POPULATE_PHYSMAP as POP;
    let h = harness();
    // The start extent in the command's high bits skips the extents already done.
    assert_eq!(reservation(&h, DEC, 2, &[0x30, 0x31, 0x32, 0x33], 4, 0), 4);
    assert_eq!(
        h.platform.calls(),
        vec![Call::ReleasePage(0x32), Call::ReleasePage(0x33)]
    );
    assert_eq!(
        reservation(&h, DEC, 4, &[0x30], 4, 0),
        4,
        "nothing left to do"
    );
    assert_eq!(reservation(&h, DEC, 5, &[0x30], 4, 0), err(Errno::EINVAL));
    assert_eq!(
        reservation(&h, DEC, u64::MAX >> 6, &[0x30], 4, 0),
        err(Errno::EINVAL)
    );
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 2);

    // Populating beyond max_pages is refused (the toolstack lowered the target).
    let info = crate::hypercall::DomainInfo {
        max_pages: RAM_PAGES - 4,
        ..domain_info()
    };
    let h = Harness::new(info);
    let gfns: Vec<u64> = (0x50..0x58).collect();
    assert_eq!(reservation(&h, DEC, 0, &gfns, 8, 0), 8);
    assert_eq!(reservation(&h, POP, 0, &gfns, 8, 0), 4);
    assert_eq!(h.hv.current_pages(), RAM_PAGES - 4);
    assert_eq!(reservation(&h, POP, 0, &gfns[4..], 4, 0), 0);

    // A platform failure stops the count at the extent it hit.
    h.platform.take();
    h.platform
        .fail_when(|c| (c == &Call::PopulatePage(0x56)).then_some(Errno::ENOMEM));
    let info_pages = h.hv.current_pages();
    assert_eq!(reservation(&h, DEC, 0, &[0x60], 1, 0), 1);
    assert_eq!(reservation(&h, POP, 0, &[0x60, 0x56], 2, 0), 1);
    assert_eq!(h.hv.current_pages(), info_pages);
    h.platform
        .fail_when(|c| matches!(c, Call::ReleasePage(_)).then_some(Errno::EIO));
    assert_eq!(reservation(&h, DEC, 0, &[0x70], 1, 0), 0);
    assert_eq!(
        h.hv.current_pages(),
        info_pages,
        "a failed release is not counted"
    );
}
