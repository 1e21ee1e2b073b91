//! Grant-table operations and entry layouts (grant_table.h).

use super::{byte_valued, DomId};

/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// A grant-mapping handle (`grant_handle_t`).
pub type GrantHandle = u32;

/// `GNTTABOP_map_grant_ref`.
pub const GNTTABOP_MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`.
pub const GNTTABOP_UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`.
pub const GNTTABOP_SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`.
pub const GNTTABOP_DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`.
pub const GNTTABOP_TRANSFER: u32 = 4;
/// `GNTTABOP_copy`.
pub const GNTTABOP_COPY: u32 = 5;
/// `GNTTABOP_query_size`.
pub const GNTTABOP_QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const GNTTABOP_UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version`.
pub const GNTTABOP_SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames`.
pub const GNTTABOP_GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`.
pub const GNTTABOP_GET_VERSION: u32 = 10;

/// Entries reserved for the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry for the console ring.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// Reserved entry for the Xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: the domain in the entry may map or copy the frame.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: the domain may transfer a page into the entry.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (v2): the entry forwards another grant.
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: the grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by Xen while the frame is in use for reading.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by Xen while the frame is in use for writing.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT` cache attribute.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD` cache attribute.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT` cache attribute.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (v2): only `page_off..page_off+length` is granted.
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// `GTF_transfer_committed`.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// `GTF_transfer_completed`.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// `GNTCOPY_source_gref`: the copy source is a grant reference.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: the copy destination is a grant reference.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// `GNTMAP_device_map`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map`.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte`.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// A grant operation status (`GNTST_*`, an `int16_t` in the op structures).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("grant status {0} ({name})", name = self.name())]
pub struct GntStatus(pub i16);

/// Defines the status constants and a name lookup over them.
macro_rules! gntst {
    ($($name:ident = $val:expr),* $(,)?) => {
        impl GntStatus {
            $(
                #[doc = concat!("`GNTST_", stringify!($name), "` (", stringify!($val), ").")]
                #[allow(non_upper_case_globals)]
                pub const $name: GntStatus = GntStatus($val);
            )*

            /// The symbolic name without the `GNTST_` prefix.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $( $val => stringify!($name), )*
                    _ => "unknown",
                }
            }
        }
    };
}

gntst! {
    okay = 0,
    general_error = -1,
    bad_domain = -2,
    bad_gntref = -3,
    bad_handle = -4,
    bad_virt_addr = -5,
    bad_dev_addr = -6,
    no_device_space = -7,
    permission_denied = -8,
    bad_page = -9,
    bad_copy_arg = -10,
    address_too_big = -11,
    eagain = -12,
    no_space = -13,
}

/// `grant_entry_v1_t`: 8 bytes, 512 per frame.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV1 {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted guest frame number.
    pub frame: u32,
}

/// `grant_entry_header_t`: the first 4 bytes of a v2 entry.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryHeader {
    /// `GTF_*` flags.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
}

/// `grant_entry_v2_t`: 16 bytes, 256 per frame. The union is kept raw; see the accessors.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantEntryV2 {
    /// The common header.
    pub hdr: GrantEntryHeader,
    /// full_page: padding; sub_page: `page_off` (low half) and `length` (high half);
    /// transitive: `trans_domid` (low half).
    pub word1: u32,
    /// full_page / sub_page: the frame; transitive: `gref` in the low 32 bits.
    pub word2: u64,
}

impl GrantEntryV2 {
    /// `sub_page.page_off`.
    pub fn page_off(&self) -> u16 {
        self.word1 as u16
    }
    /// `sub_page.length`.
    pub fn length(&self) -> u16 {
        (self.word1 >> 16) as u16
    }
    /// `full_page.frame` / `sub_page.frame`.
    pub fn frame(&self) -> u64 {
        self.word2
    }
    /// `transitive.trans_domid`.
    pub fn trans_domid(&self) -> DomId {
        self.word1 as u16
    }
    /// `transitive.gref`.
    pub fn trans_gref(&self) -> GrantRef {
        self.word2 as u32
    }
}

/// `struct gnttab_setup_table`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetupTable {
    /// IN: the domain (`DOMID_SELF`).
    pub dom: DomId,
    /// Padding.
    pub _pad0: u16,
    /// IN: number of frames wanted.
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub _pad1: [u16; 3],
    /// IN: guest handle (virtual address) of an array of `nr_frames` `xen_pfn_t`.
    pub frame_list: u64,
}

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabQuerySize {
    /// IN: the domain (`DOMID_SELF`).
    pub dom: DomId,
    /// Padding.
    pub _pad0: u16,
    /// OUT: frames in use.
    pub nr_frames: u32,
    /// OUT: the most frames the table may grow to.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub _pad1: u16,
}

/// `struct gnttab_copy_ptr`: one end of a copy.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// `u.ref` (low 32 bits) or `u.gmfn` (all 64), per the op's flags.
    pub u: u64,
    /// The domain owning the frame.
    pub domid: DomId,
    /// Byte offset in the frame.
    pub offset: u16,
    /// Padding.
    pub _pad: u32,
}

/// `struct gnttab_copy`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// IN: where to copy from.
    pub source: GnttabCopyPtr,
    /// IN: where to copy to.
    pub dest: GnttabCopyPtr,
    /// IN: bytes to copy.
    pub len: u16,
    /// IN: `GNTCOPY_*`.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub _pad: u16,
}

/// `struct gnttab_map_grant_ref`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabMapGrantRef {
    /// IN: where to map.
    pub host_addr: u64,
    /// IN: `GNTMAP_*`.
    pub flags: u32,
    /// IN: the grant reference.
    pub r#ref: GrantRef,
    /// IN: the granting domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: the mapping handle.
    pub handle: GrantHandle,
    /// OUT: bus address for device mappings.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabUnmapGrantRef {
    /// IN: the mapped address.
    pub host_addr: u64,
    /// IN: the mapped bus address.
    pub dev_bus_addr: u64,
    /// IN: the handle `map` returned.
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub _pad: u16,
}

/// `struct gnttab_set_version`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabSetVersion {
    /// IN/OUT: the version (1 or 2).
    pub version: u32,
}

/// `struct gnttab_get_version`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetVersion {
    /// IN: the domain.
    pub dom: DomId,
    /// Padding.
    pub _pad: u16,
    /// OUT: the version.
    pub version: u32,
}

/// `struct gnttab_get_status_frames`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GnttabGetStatusFrames {
    /// IN: number of frames.
    pub nr_frames: u32,
    /// IN: the domain.
    pub dom: DomId,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// IN: guest handle of a `uint64_t` array.
    pub frame_list: u64,
}

byte_valued!(
    GrantEntryV1,
    GrantEntryHeader,
    GrantEntryV2,
    GnttabSetupTable,
    GnttabQuerySize,
    GnttabCopyPtr,
    GnttabCopy,
    GnttabMapGrantRef,
    GnttabUnmapGrantRef,
    GnttabSetVersion,
    GnttabGetVersion,
    GnttabGetStatusFrames,
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn sizes_match_grant_table_h() {
        crate::abi::assert_sizes!(
            GrantEntryV1 => 8,
            GrantEntryHeader => 4,
            GrantEntryV2 => 16,
            GnttabSetupTable => 24,
            GnttabQuerySize => 16,
            GnttabCopyPtr => 16,
            GnttabCopy => 40,
            GnttabMapGrantRef => 32,
            GnttabUnmapGrantRef => 24,
            GnttabSetVersion => 4,
            GnttabGetVersion => 8,
            GnttabGetStatusFrames => 16,
        );
        assert_eq!(offset_of!(GnttabSetupTable, status), 8);
        assert_eq!(offset_of!(GnttabSetupTable, frame_list), 16);
        assert_eq!(offset_of!(GnttabCopy, len), 32);
        assert_eq!(offset_of!(GnttabCopy, status), 36);
        assert_eq!(offset_of!(GnttabMapGrantRef, handle), 20);
        assert_eq!(offset_of!(GrantEntryV2, word2), 8);
    }

    #[test]
    fn status_names() {
        assert_eq!(GntStatus::bad_copy_arg.0, -10);
        assert_eq!(GntStatus::no_space.name(), "no_space");
        assert_eq!(GntStatus(-99).name(), "unknown");
        assert_eq!(
            GntStatus::bad_gntref.to_string(),
            "grant status -3 (bad_gntref)"
        );
    }

    #[test]
    fn v2_union_accessors() {
        let e = GrantEntryV2 {
            hdr: GrantEntryHeader {
                flags: GTF_PERMIT_ACCESS | GTF_SUB_PAGE,
                domid: 0,
            },
            word1: (512 << 16) | 256,
            word2: 0x1234_5678_9abc,
        };
        assert_eq!(e.page_off(), 256);
        assert_eq!(e.length(), 512);
        assert_eq!(e.frame(), 0x1234_5678_9abc);
        assert_eq!(e.trans_gref(), 0x5678_9abc);
    }
}
