//! Running one validated request against the disk and the frontend's pages.

use vm_memory::GuestMemoryBackend;

use crate::abi::{
    decode, BlkifRequestSegment, BLKIF_OP_DISCARD, BLKIF_OP_WRITE, REQUEST_SIZE,
    SEGS_PER_INDIRECT_FRAME,
};
use crate::error::RequestError;
use crate::request::{check_range, check_segments, parse, Direction, Parsed, Segment};
use crate::Queue;

const SEG_SIZE: usize = std::mem::size_of::<BlkifRequestSegment>();

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

    /// Reads or writes `total` sectors from `sector` through the pages of `segs`, with one disk
    /// call and a bounce buffer. Every page is mapped before the disk is touched.
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
        let mut buf = std::mem::take(&mut self.buf);
        // At most 4096 segments of 4 KiB: 16 MiB, bounded by `parse`.
        buf.resize(len as usize, 0);
        let res = (|| {
            let mut pos = 0;
            match dir {
                Direction::Read => {
                    self.disk.read_at(&mut buf, off).map_err(disk_err("read"))?;
                    for (s, m) in segs.iter().zip(&maps) {
                        m.write(s.offset(), &buf[pos..pos + s.len()])
                            .map_err(|source| RequestError::Grant {
                                gref: s.gref,
                                source,
                            })?;
                        pos += s.len();
                    }
                    self.metrics.bytes_read += len;
                }
                Direction::Write => {
                    for (s, m) in segs.iter().zip(&maps) {
                        m.read(s.offset(), &mut buf[pos..pos + s.len()])
                            .map_err(|source| RequestError::Grant {
                                gref: s.gref,
                                source,
                            })?;
                        pos += s.len();
                    }
                    if flush {
                        self.flush()?;
                    }
                    self.disk.write_at(&buf, off).map_err(disk_err("write"))?;
                    if flush {
                        self.flush()?;
                    }
                    self.metrics.bytes_written += len;
                }
            }
            Ok(())
        })();
        self.buf = buf;
        res
    }
}
