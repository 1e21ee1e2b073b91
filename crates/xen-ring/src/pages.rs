//! The ring area made of guest pages.

use std::sync::atomic::Ordering;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::{check_bounds, RingError, RingPages};

/// Size of a ring page.
pub const PAGE_SIZE: usize = 4096;

/// A ring area made of 4 KiB guest pages at arbitrary guest-physical addresses, seen as one
/// contiguous area in list order (as the frontend maps them). Accesses that straddle a page
/// boundary are split.
#[derive(Debug)]
pub struct GuestRingPages<M: GuestMemoryBackend> {
    mem: M,
    pages: Vec<GuestAddress>,
}

impl<M: GuestMemoryBackend> GuestRingPages<M> {
    /// The area made of `pages` in `mem`. Each page must be 4 KiB aligned and lie entirely in
    /// guest memory; the list must not be empty.
    pub fn new(mem: M, pages: Vec<GuestAddress>) -> Result<Self, RingError> {
        if pages.is_empty() {
            return Err(RingError::NoPages);
        }
        for (index, gpa) in pages.iter().enumerate() {
            if !gpa.0.is_multiple_of(PAGE_SIZE as u64) {
                return Err(RingError::UnalignedPage { index, gpa: gpa.0 });
            }
            // The whole page in one region, so that word accesses are single mappings.
            let inside = gpa.0.checked_add(PAGE_SIZE as u64 - 1).is_some_and(|last| {
                mem.find_region(*gpa)
                    .is_some_and(|r| r.last_addr().raw_value() >= last)
            });
            if !inside {
                return Err(RingError::PageNotInMemory { index, gpa: gpa.0 });
            }
        }
        Ok(GuestRingPages { mem, pages })
    }

    /// The guest-physical addresses of the pages, in order.
    pub fn pages(&self) -> &[GuestAddress] {
        &self.pages
    }

    /// Size of the area in bytes.
    fn area(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }

    /// The guest memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Calls `f(gpa, range)` for each page-bounded piece of `len` bytes at `off`.
    fn for_each_piece(
        &self,
        off: usize,
        len: usize,
        mut f: impl FnMut(
            GuestAddress,
            std::ops::Range<usize>,
        ) -> Result<(), vm_memory::GuestMemoryError>,
    ) -> Result<(), RingError> {
        check_bounds(off, len, self.area())?;
        let mut done = 0;
        while done < len {
            let pos = off + done;
            let within = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - within).min(len - done);
            let gpa = GuestAddress(self.pages[pos / PAGE_SIZE].0 + within as u64);
            f(gpa, done..done + n).map_err(|e| RingError::Memory {
                off: pos,
                len: n,
                detail: e.to_string(),
            })?;
            done += n;
        }
        Ok(())
    }

    /// The guest address of the aligned index word at `off`.
    fn word_addr(&self, off: usize) -> Result<GuestAddress, RingError> {
        check_bounds(off, 4, self.area())?;
        if !off.is_multiple_of(4) {
            return Err(RingError::Misaligned(off));
        }
        Ok(GuestAddress(
            self.pages[off / PAGE_SIZE].0 + (off % PAGE_SIZE) as u64,
        ))
    }
}

impl<M: GuestMemoryBackend + Send + Sync> RingPages for GuestRingPages<M> {
    fn len(&self) -> usize {
        self.area()
    }

    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), RingError> {
        self.for_each_piece(off, buf.len(), |gpa, r| {
            self.mem.read_slice(&mut buf[r], gpa)
        })
    }

    fn write(&self, off: usize, data: &[u8]) -> Result<(), RingError> {
        self.for_each_piece(off, data.len(), |gpa, r| {
            self.mem.write_slice(&data[r], gpa)
        })
    }

    fn load_u32(&self, off: usize) -> Result<u32, RingError> {
        let gpa = self.word_addr(off)?;
        self.mem
            .load::<u32>(gpa, Ordering::Acquire)
            .map_err(|e| RingError::Memory {
                off,
                len: 4,
                detail: e.to_string(),
            })
    }

    fn store_u32(&self, off: usize, v: u32) -> Result<(), RingError> {
        let gpa = self.word_addr(off)?;
        self.mem
            .store(v, gpa, Ordering::Release)
            .map_err(|e| RingError::Memory {
                off,
                len: 4,
                detail: e.to_string(),
            })
    }
}
