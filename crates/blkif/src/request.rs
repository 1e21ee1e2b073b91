//! Decoding and validation of one request, before anything touches a disk or a page.

use crate::abi::*;
use crate::error::RequestError;

/// Direction of a data transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Disk to guest pages.
    Read,
    /// Guest pages to disk.
    Write,
}

/// A validated data segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Grant reference of the page.
    pub gref: u32,
    /// First sector in the page.
    pub first_sect: u8,
    /// Last sector in the page (`first_sect <= last_sect <= 7`).
    pub last_sect: u8,
}

impl Segment {
    /// Byte offset of the data in the page.
    pub fn offset(&self) -> usize {
        usize::from(self.first_sect) * SECTOR_SIZE as usize
    }

    /// Byte length of the data.
    pub fn len(&self) -> usize {
        (usize::from(self.last_sect - self.first_sect) + 1) * SECTOR_SIZE as usize
    }

    /// Always false: a valid segment holds at least one sector.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the frontend asked for, as read from the ring slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Read or write with its segments inline.
    Direct {
        /// Direction.
        dir: Direction,
        /// Whether a flush must come before and after (barrier or flush with data).
        flush: bool,
        /// First sector.
        sector: u64,
        /// The raw segments (validated later, with the indirect ones, by [`check_segments`]).
        segs: Vec<BlkifRequestSegment>,
    },
    /// Read or write whose segments are in indirect pages.
    Indirect {
        /// Direction.
        dir: Direction,
        /// First sector.
        sector: u64,
        /// Number of segments.
        nr_segments: usize,
        /// Grant references of the indirect pages that hold them.
        pages: Vec<u32>,
    },
    /// Flush without data.
    Flush,
    /// Discard.
    Discard {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        nr_sectors: u64,
    },
}

/// The id and operation code to put in the response; readable from any slot.
pub fn response_header(slot: &[u8; REQUEST_SIZE]) -> (u64, u8) {
    let r: BlkifRequest = decode(slot).unwrap_or_default();
    if r.operation == BLKIF_OP_INDIRECT {
        // Linux's blkfront expects the inner operation back for indirect requests.
        let i: BlkifRequestIndirect = decode(slot).unwrap_or_default();
        return (i.id, i.indirect_op);
    }
    (r.id, r.operation)
}

/// Decodes the slot and checks what can be checked without the disk or the grants.
pub fn parse(slot: &[u8; REQUEST_SIZE], max_indirect: usize) -> Result<Parsed, RequestError> {
    let r: BlkifRequest = decode(slot).unwrap_or_default();
    let direct = |dir, flush| {
        let nr = usize::from(r.nr_segments);
        if nr == 0 {
            return Err(RequestError::NoSegments { op: r.operation });
        }
        if nr > BLKIF_MAX_SEGMENTS_PER_REQUEST {
            return Err(RequestError::TooManySegments {
                op: r.operation,
                nr: nr as u32,
                max: BLKIF_MAX_SEGMENTS_PER_REQUEST as u32,
            });
        }
        Ok(Parsed::Direct {
            dir,
            flush,
            sector: r.sector_number,
            segs: r.seg[..nr].to_vec(),
        })
    };
    match r.operation {
        BLKIF_OP_READ => direct(Direction::Read, false),
        BLKIF_OP_WRITE => direct(Direction::Write, false),
        BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE if r.nr_segments == 0 => {
            Ok(Parsed::Flush)
        }
        BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => direct(Direction::Write, true),
        BLKIF_OP_DISCARD => {
            let d: BlkifRequestDiscard = decode(slot).unwrap_or_default();
            Ok(Parsed::Discard {
                sector: d.sector_number,
                nr_sectors: d.nr_sectors,
            })
        }
        BLKIF_OP_INDIRECT => {
            let i: BlkifRequestIndirect = decode(slot).unwrap_or_default();
            let dir = match i.indirect_op {
                BLKIF_OP_READ => Direction::Read,
                BLKIF_OP_WRITE => Direction::Write,
                op => return Err(RequestError::BadIndirectOperation(op)),
            };
            let nr = usize::from(i.nr_segments);
            if nr == 0 {
                return Err(RequestError::NoSegments { op: i.indirect_op });
            }
            let max =
                max_indirect.min(SEGS_PER_INDIRECT_FRAME * BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
            if nr > max {
                return Err(RequestError::TooManySegments {
                    op: BLKIF_OP_INDIRECT,
                    nr: nr as u32,
                    max: max as u32,
                });
            }
            let n_pages = nr.div_ceil(SEGS_PER_INDIRECT_FRAME);
            Ok(Parsed::Indirect {
                dir,
                sector: i.sector_number,
                nr_segments: nr,
                pages: i.indirect_grefs[..n_pages].to_vec(),
            })
        }
        op => Err(RequestError::UnknownOperation(op)),
    }
}

/// Validates raw segments; returns them with the total number of sectors.
pub fn check_segments(raw: &[BlkifRequestSegment]) -> Result<(Vec<Segment>, u64), RequestError> {
    let mut total = 0u64;
    let mut segs = Vec::with_capacity(raw.len());
    for (index, s) in raw.iter().enumerate() {
        if s.first_sect > s.last_sect || s.last_sect >= SECTORS_PER_PAGE {
            return Err(RequestError::BadSegment {
                index,
                gref: s.gref,
                first_sect: s.first_sect,
                last_sect: s.last_sect,
            });
        }
        total += u64::from(s.last_sect - s.first_sect) + 1;
        segs.push(Segment {
            gref: s.gref,
            first_sect: s.first_sect,
            last_sect: s.last_sect,
        });
    }
    Ok((segs, total))
}

/// Checks that `nr_sectors` sectors from `sector` lie within a disk of `disk_bytes` bytes,
/// without overflowing; returns the byte offset and length.
pub fn check_range(
    sector: u64,
    nr_sectors: u64,
    disk_bytes: u64,
) -> Result<(u64, u64), RequestError> {
    let disk_sectors = disk_bytes / SECTOR_SIZE;
    let beyond = RequestError::BeyondDisk {
        sector,
        nr_sectors,
        disk_sectors,
    };
    match sector.checked_add(nr_sectors) {
        Some(end) if end <= disk_sectors => Ok((sector * SECTOR_SIZE, nr_sectors * SECTOR_SIZE)),
        _ => Err(beyond),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(r: &BlkifRequest) -> [u8; REQUEST_SIZE] {
        let mut b = [0u8; REQUEST_SIZE];
        b.copy_from_slice(vm_memory::ByteValued::as_slice(r));
        b
    }

    #[test]
    fn direct_requests_are_checked() {
        let mut r = BlkifRequest {
            operation: BLKIF_OP_READ,
            ..Default::default()
        };
        assert!(matches!(
            parse(&slot(&r), 256),
            Err(RequestError::NoSegments { op: 0 })
        ));
        r.nr_segments = 12;
        assert!(matches!(
            parse(&slot(&r), 256),
            Err(RequestError::TooManySegments {
                nr: 12,
                max: 11,
                ..
            })
        ));
        r.operation = BLKIF_OP_FLUSH_DISKCACHE;
        r.nr_segments = 0;
        assert_eq!(parse(&slot(&r), 256).unwrap(), Parsed::Flush);
        r.operation = 4;
        assert!(matches!(
            parse(&slot(&r), 256),
            Err(RequestError::UnknownOperation(4))
        ));
        assert_eq!(
            RequestError::UnknownOperation(4).status(),
            BLKIF_RSP_EOPNOTSUPP
        );
    }

    #[test]
    fn segments_and_ranges_are_checked() {
        let seg = |first_sect, last_sect| BlkifRequestSegment {
            gref: 9,
            first_sect,
            last_sect,
            _pad: 0,
        };
        let (s, total) = check_segments(&[seg(0, 7), seg(3, 3)]).unwrap();
        assert_eq!(total, 9);
        assert_eq!((s[1].offset(), s[1].len()), (1536, 512));
        assert!(matches!(
            check_segments(&[seg(0, 7), seg(4, 3)]),
            Err(RequestError::BadSegment { index: 1, .. })
        ));
        assert!(matches!(
            check_segments(&[seg(0, 8)]),
            Err(RequestError::BadSegment { .. })
        ));
        assert_eq!(check_range(6, 2, 4096).unwrap(), (3072, 1024));
        assert!(check_range(7, 2, 4096).is_err());
        assert!(check_range(u64::MAX, 2, 4096).is_err());
        assert!(check_range(u64::MAX / 512, 0, u64::MAX).is_ok());
    }
}
