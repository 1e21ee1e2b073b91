//! Memory operations (memory.h).

use super::{byte_valued, DomId};

/// `XENMEM_increase_reservation`.
pub const XENMEM_INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`.
pub const XENMEM_DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`.
pub const XENMEM_CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`.
pub const XENMEM_MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_populate_physmap`.
pub const XENMEM_POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`.
pub const XENMEM_ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_memory_map`.
pub const XENMEM_MEMORY_MAP: u32 = 9;
/// `XENMEM_exchange`.
pub const XENMEM_EXCHANGE: u32 = 11;
/// `XENMEM_maximum_gpfn`.
pub const XENMEM_MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_add_to_physmap_batch`.
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// `XENMEM_get_vnumainfo`.
pub const XENMEM_GET_VNUMAINFO: u32 = 26;
/// `XENMEM_acquire_resource`.
pub const XENMEM_ACQUIRE_RESOURCE: u32 = 28;

/// `XENMAPSPACE_shared_info`: idx 0 is the shared-info page.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: idx is a grant-table frame.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`: move a guest frame.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`.
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`.
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// In a `XENMAPSPACE_grant_table` idx: the frame is a v2 status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `struct xen_add_to_physmap`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenAddToPhysmap {
    /// The domain (`DOMID_SELF`).
    pub domid: DomId,
    /// Number of pages for `XENMAPSPACE_gmfn_range`.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame to map it at.
    pub gpfn: u64,
}

/// `struct xen_remove_from_physmap`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenRemoveFromPhysmap {
    /// The domain (`DOMID_SELF`).
    pub domid: DomId,
    /// Padding.
    pub _pad: [u16; 3],
    /// The guest frame to unmap.
    pub gpfn: u64,
}

/// `struct xen_memory_reservation`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryReservation {
    /// Guest handle of the extent array.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// log2 pages per extent.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// The domain.
    pub domid: DomId,
    /// Padding.
    pub _pad: [u16; 3],
}

/// `struct xen_memory_map` (XENMEM_memory_map: the guest's e820).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct XenMemoryMap {
    /// IN: entries the buffer holds; OUT: entries written.
    pub nr_entries: u32,
    /// Padding.
    pub _pad: u32,
    /// Guest handle of the e820 entry buffer.
    pub buffer: u64,
}

byte_valued!(
    XenAddToPhysmap,
    XenRemoveFromPhysmap,
    XenMemoryReservation,
    XenMemoryMap
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_memory_h() {
        crate::abi::assert_sizes!(
            XenAddToPhysmap => 24,
            XenRemoveFromPhysmap => 16,
            XenMemoryReservation => 32,
            XenMemoryMap => 16,
        );
        assert_eq!(std::mem::offset_of!(XenAddToPhysmap, idx), 8);
        assert_eq!(std::mem::offset_of!(XenMemoryReservation, domid), 24);
    }
}
