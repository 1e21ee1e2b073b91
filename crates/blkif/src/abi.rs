//! Xen's blkif ABI (`xen/include/public/io/blkif.h`), 64-bit x86 layout.
//!
//! Every request kind shares the ring slot of [`BlkifRequest`] (112 bytes); the response is
//! 16 bytes. Field offsets follow the C layout with natural alignment; the explicit padding
//! fields make each struct plain bytes.

use vm_memory::ByteValued;

/// Read sectors into guest pages.
pub const BLKIF_OP_READ: u8 = 0;
/// Write sectors from guest pages.
pub const BLKIF_OP_WRITE: u8 = 1;
/// Write with barrier semantics (`feature-barrier`); without segments, a flush.
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
/// Flush the disk's cache (`feature-flush-cache`).
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
/// Discard a sector range (`feature-discard`).
pub const BLKIF_OP_DISCARD: u8 = 5;
/// Read or write whose segments are in indirect pages (`feature-max-indirect-segments`).
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Success.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// Failure (`-EIO`-like).
pub const BLKIF_RSP_ERROR: i16 = -1;
/// Operation not supported.
pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;

/// Segments a direct request can carry.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect pages an indirect request can name.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segments held by one indirect page (4096 / 8).
pub const SEGS_PER_INDIRECT_FRAME: usize = 512;
/// The blkif sector size: `sector_number`, `first_sect` and `last_sect` are in 512-byte units.
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in a 4 KiB page: `last_sect` is at most 7.
pub const SECTORS_PER_PAGE: u8 = 8;
/// Discard flag: secure erase (only with `discard-secure`).
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// One data segment: a granted page and the sectors of it that take part.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestSegment {
    /// Grant reference of the data page.
    pub gref: u32,
    /// First sector in the page (inclusive).
    pub first_sect: u8,
    /// Last sector in the page (inclusive).
    pub last_sect: u8,
    /// Padding.
    pub _pad: u16,
}

/// `struct blkif_request`: read, write, barrier and flush.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequest {
    /// `BLKIF_OP_*`.
    pub operation: u8,
    /// Number of segments used in `seg`.
    pub nr_segments: u8,
    /// Virtual device handle (unused by the backend).
    pub handle: u16,
    /// Padding.
    pub _pad: u32,
    /// Frontend's id, echoed in the response.
    pub id: u64,
    /// First 512-byte sector on the disk.
    pub sector_number: u64,
    /// The segments.
    pub seg: [BlkifRequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_discard`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestDiscard {
    /// `BLKIF_OP_DISCARD`.
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    /// Virtual device handle.
    pub handle: u16,
    /// Padding.
    pub _pad: u32,
    /// Frontend's id.
    pub id: u64,
    /// First sector to discard.
    pub sector_number: u64,
    /// Number of sectors to discard.
    pub nr_sectors: u64,
}

/// `struct blkif_request_indirect`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifRequestIndirect {
    /// `BLKIF_OP_INDIRECT`.
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    /// Number of segments in the indirect pages.
    pub nr_segments: u16,
    /// Padding.
    pub _pad1: u32,
    /// Frontend's id.
    pub id: u64,
    /// First sector on the disk.
    pub sector_number: u64,
    /// Virtual device handle.
    pub handle: u16,
    /// Padding.
    pub _pad2: u16,
    /// Grant references of the pages holding the segments (8-byte `BlkifRequestSegment`s).
    pub indirect_grefs: [u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    /// Padding to 64 bytes.
    pub _pad3: u32,
}

/// `struct blkif_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkifResponse {
    /// The request's id.
    pub id: u64,
    /// The request's operation (for indirect requests, the indirect operation).
    pub operation: u8,
    /// Padding.
    pub _pad1: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Padding.
    pub _pad2: u32,
}

/// Size of a request slot.
pub const REQUEST_SIZE: usize = std::mem::size_of::<BlkifRequest>();
/// Size of a response.
pub const RESPONSE_SIZE: usize = std::mem::size_of::<BlkifResponse>();
/// Size of a ring entry: the larger of the two.
pub const RING_ENTRY_SIZE: usize = REQUEST_SIZE;

// SAFETY: each struct is repr(C), made only of integers and arrays of integers, with every
// padding byte an explicit field, so any byte pattern is a valid value.
unsafe impl ByteValued for BlkifRequestSegment {}
// SAFETY: as above.
unsafe impl ByteValued for BlkifRequest {}
// SAFETY: as above.
unsafe impl ByteValued for BlkifRequestDiscard {}
// SAFETY: as above.
unsafe impl ByteValued for BlkifRequestIndirect {}
// SAFETY: as above.
unsafe impl ByteValued for BlkifResponse {}

/// Decodes a `T` from the start of `bytes`; `None` if `bytes` is too short.
pub fn decode<T: ByteValued + Default>(bytes: &[u8]) -> Option<T> {
    let mut v = T::default();
    let n = std::mem::size_of::<T>();
    v.as_mut_slice().copy_from_slice(bytes.get(..n)?);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn sizes_and_offsets_match_blkif_h() {
        assert_eq!(size_of::<BlkifRequestSegment>(), 8);
        assert_eq!(size_of::<BlkifRequest>(), 112);
        assert_eq!(offset_of!(BlkifRequest, nr_segments), 1);
        assert_eq!(offset_of!(BlkifRequest, handle), 2);
        assert_eq!(offset_of!(BlkifRequest, id), 8);
        assert_eq!(offset_of!(BlkifRequest, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequest, seg), 24);
        assert_eq!(offset_of!(BlkifRequestSegment, first_sect), 4);
        assert_eq!(offset_of!(BlkifRequestSegment, last_sect), 5);

        assert_eq!(size_of::<BlkifRequestDiscard>(), 32);
        assert_eq!(offset_of!(BlkifRequestDiscard, flag), 1);
        assert_eq!(offset_of!(BlkifRequestDiscard, id), 8);
        assert_eq!(offset_of!(BlkifRequestDiscard, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequestDiscard, nr_sectors), 24);

        assert_eq!(size_of::<BlkifRequestIndirect>(), 64);
        assert_eq!(offset_of!(BlkifRequestIndirect, indirect_op), 1);
        assert_eq!(offset_of!(BlkifRequestIndirect, nr_segments), 2);
        assert_eq!(offset_of!(BlkifRequestIndirect, id), 8);
        assert_eq!(offset_of!(BlkifRequestIndirect, sector_number), 16);
        assert_eq!(offset_of!(BlkifRequestIndirect, handle), 24);
        assert_eq!(offset_of!(BlkifRequestIndirect, indirect_grefs), 28);

        assert_eq!(size_of::<BlkifResponse>(), 16);
        assert_eq!(offset_of!(BlkifResponse, operation), 8);
        assert_eq!(offset_of!(BlkifResponse, status), 10);
        assert_eq!(RING_ENTRY_SIZE, 112);
        assert_eq!(
            SEGS_PER_INDIRECT_FRAME * size_of::<BlkifRequestSegment>(),
            4096
        );
    }

    #[test]
    fn decode_needs_enough_bytes() {
        let mut b = [0u8; 112];
        b[0] = BLKIF_OP_WRITE;
        b[8] = 0x42;
        let r: BlkifRequest = decode(&b).unwrap();
        assert_eq!((r.operation, r.id), (BLKIF_OP_WRITE, 0x42));
        assert!(decode::<BlkifRequest>(&b[..111]).is_none());
    }
}
