//! Running one validated request against the disk and the frontend's pages.

use std::sync::Arc;

use block::{IoBuf, IoBufMut};
use vm_memory::bitmap::{Bitmap, MS};
use vm_memory::volatile_memory::{PtrGuard, PtrGuardMut};
use vm_memory::{GuestMemoryBackend, VolatileSlice};
use xen::gnttab::GrantMapping;

use crate::abi::{
    decode, BlkifRequestSegment, BLKIF_OP_DISCARD, BLKIF_OP_WRITE, REQUEST_SIZE,
    SEGS_PER_INDIRECT_FRAME,
};
use crate::error::RequestError;
use crate::request::{check_range, check_segments, parse, Direction, Parsed, Segment};
use crate::Queue;

const SEG_SIZE: usize = std::mem::size_of::<BlkifRequestSegment>();

/// The disk's view of a segment's window of a granted page, borrowing the window's guard.
///
/// Only for guards taken from [`xen::gnttab::GrantMapping::slice_mut`] in `transfer`, whose
/// mappings (`maps`, declared first) are dropped after the guards, hence after the result.
fn guest_buf_mut(g: &PtrGuardMut) -> IoBufMut<'_> {
    // SAFETY: the guard names `len` bytes of guest RAM in a page granted writable. The grant
    // mapping it came from outlives the guard and holds the grant table, which holds the
    // guest memory, so the pages stay mapped in this process while the result (borrowing the
    // guard) lives. Guest memory is only reached through raw pointers, never Rust references.
    unsafe { IoBufMut::from_raw(g.as_ptr(), g.len()) }
}

/// [`guest_buf_mut`] for the source of a write (guards from `GrantMapping::slice`).
fn guest_buf(g: &PtrGuard) -> IoBuf<'_> {
    // SAFETY: as in `guest_buf_mut`: `len` readable bytes of a granted page whose mapping
    // outlives the guard the result borrows.
    unsafe { IoBuf::from_raw(g.as_ptr(), g.len()) }
}

/// Each segment's window of its mapped page, checked against the grant. `into_guest` asks
/// for windows the disk writes into, which read-only grants never give.
fn windows<'m, M: GuestMemoryBackend>(
    segs: &[Segment],
    maps: &'m [Arc<GrantMapping<M>>],
    into_guest: bool,
) -> Result<Vec<VolatileSlice<'m, MS<'m, M>>>, RequestError> {
    segs.iter()
        .zip(maps)
        .map(|(s, m)| {
            let w = if into_guest {
                m.slice_mut(s.offset(), s.len())
            } else {
                m.slice(s.offset(), s.len())
            };
            w.map_err(|source| RequestError::Grant {
                gref: s.gref,
                source,
            })
        })
        .collect()
}

fn disk_err(what: &'static str) -> impl FnOnce(block::Error) -> RequestError {
    move |source| RequestError::Disk { what, source }
}

impl<M: GuestMemoryBackend + Send + Sync> Queue<M> {
    /// Validates and runs the request in `slot` (already copied out of the ring).
    pub(crate) fn handle(&mut self, slot: &[u8; REQUEST_SIZE]) -> Result<(), RequestError> {
        match parse(slot, self.cfg.max_indirect_segments)? {
            Parsed::Flush => self.flush(),
            Parsed::Discard { sector, nr_sectors } => {
                if self.read_only() {
                    return Err(RequestError::ReadOnlyDisk {
                        op: BLKIF_OP_DISCARD,
                    });
                }
                let (off, len) = check_range(sector, nr_sectors, self.disk.size())?;
                if len > 0 {
                    self.disk.discard(off, len).map_err(disk_err("discard"))?;
                }
                self.metrics.discards += 1;
                Ok(())
            }
            Parsed::Direct {
                dir,
                flush,
                sector,
                segs,
            } => {
                let (segs, total) = check_segments(&segs)?;
                self.transfer(dir, flush, sector, &segs, total)
            }
            Parsed::Indirect {
                dir,
                sector,
                nr_segments,
                pages,
            } => {
                let raw = self.read_indirect(&pages, nr_segments)?;
                let (segs, total) = check_segments(&raw)?;
                self.transfer(dir, false, sector, &segs, total)
            }
        }
    }

    fn flush(&mut self) -> Result<(), RequestError> {
        self.disk.flush().map_err(disk_err("flush"))?;
        self.metrics.flushes += 1;
        Ok(())
    }

    /// Copies the segment descriptors out of the indirect pages (so the guest cannot change
    /// them afterwards).
    fn read_indirect(
        &self,
        pages: &[u32],
        nr: usize,
    ) -> Result<Vec<BlkifRequestSegment>, RequestError> {
        let mut raw = Vec::with_capacity(nr);
        let mut bytes = vec![0u8; SEGS_PER_INDIRECT_FRAME * SEG_SIZE];
        for (i, &gref) in pages.iter().enumerate() {
            let n = (nr - i * SEGS_PER_INDIRECT_FRAME).min(SEGS_PER_INDIRECT_FRAME);
            let bytes = &mut bytes[..n * SEG_SIZE];
            self.grants
                .table()
                .copy_from_grant(gref, 0, bytes)
                .map_err(|source| RequestError::Grant { gref, source })?;
            raw.extend(
                bytes
                    .chunks_exact(SEG_SIZE)
                    .map(|c| decode::<BlkifRequestSegment>(c).unwrap_or_default()),
            );
        }
        Ok(raw)
    }

    /// Reads or writes `total` sectors from `sector` straight between the disk and the pages
    /// of `segs`, in one vectored disk call (no bounce buffer here; formats without a
    /// vectored path of their own still use one inside). Every page is mapped, and every
    /// segment's window in it checked, before the disk is touched.
    fn transfer(
        &mut self,
        dir: Direction,
        flush: bool,
        sector: u64,
        segs: &[Segment],
        total: u64,
    ) -> Result<(), RequestError> {
        if dir == Direction::Write && self.read_only() {
            return Err(RequestError::ReadOnlyDisk { op: BLKIF_OP_WRITE });
        }
        let (off, len) = check_range(sector, total, self.disk.size())?;
        let maps = segs
            .iter()
            .map(|s| self.grants.get(s.gref, dir == Direction::Write))
            .collect::<Result<Vec<_>, _>>()?;
        match dir {
            Direction::Read => {
                let slices = windows(segs, &maps, true)?;
                let guards: Vec<_> = slices.iter().map(|v| v.ptr_guard_mut()).collect();
                let mut bufs: Vec<IoBufMut<'_>> = guards.iter().map(guest_buf_mut).collect();
                let res = self.disk.read_vectored_at(&mut bufs, off);
                // The pages changed behind vm-memory's back (even on a partial failure).
                for v in &slices {
                    v.bitmap().mark_dirty(0, v.len());
                }
                res.map_err(disk_err("read"))?;
                self.metrics.bytes_read += len;
            }
            Direction::Write => {
                let slices = windows(segs, &maps, false)?;
                let guards: Vec<_> = slices.iter().map(|v| v.ptr_guard()).collect();
                let bufs: Vec<IoBuf<'_>> = guards.iter().map(guest_buf).collect();
                if flush {
                    self.flush()?;
                }
                self.disk
                    .write_vectored_at(&bufs, off)
                    .map_err(disk_err("write"))?;
                if flush {
                    self.flush()?;
                }
                self.metrics.bytes_written += len;
            }
        }
        Ok(())
    }
}
