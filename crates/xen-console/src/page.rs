//! The page the console rings live in, behind a narrow trait so the VMM can plug in guest memory.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::PAGE_SIZE;

/// Byte access to the 4 KiB console page. Offsets are within the page; the ring code never
/// passes anything else, and implementations ignore (writes) or zero-fill (reads) what is not.
pub trait ConsolePage: Send + Sync {
    /// Reads the little-endian `u32` at `off` (an index the guest may change at any time).
    fn read_u32(&self, off: usize) -> u32;
    /// Writes the `u32` at `off`, after every earlier write to the page (release order).
    fn write_u32(&self, off: usize, v: u32);
    /// Copies `buf.len()` bytes starting at `off` into `buf`.
    fn read_bytes(&self, off: usize, buf: &mut [u8]);
    /// Copies `data` into the page at `off`.
    fn write_bytes(&self, off: usize, data: &[u8]);
}

/// Why a [`GuestMemoryPage`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The address is not page aligned.
    #[error("console page address {0:#x} is not 4 KiB aligned")]
    Unaligned(u64),
    /// Part of the page is not guest RAM.
    #[error("console page {0:#x} is not entirely in guest memory")]
    OutOfMemory(u64),
}

/// The console page in guest memory, through a vm-memory mapping (cloning a
/// `GuestMemoryMmap` shares its mappings, so pass a clone).
#[derive(Debug)]
pub struct GuestMemoryPage<M: GuestMemoryBackend> {
    mem: M,
    base: GuestAddress,
}

impl<M: GuestMemoryBackend> GuestMemoryPage<M> {
    /// The page at `base`, which must be page aligned and wholly inside `mem`.
    pub fn new(mem: M, base: GuestAddress) -> Result<Self, PageError> {
        if !base.0.is_multiple_of(PAGE_SIZE as u64) {
            return Err(PageError::Unaligned(base.0));
        }
        if !mem.check_range(base, PAGE_SIZE) {
            return Err(PageError::OutOfMemory(base.0));
        }
        Ok(GuestMemoryPage { mem, base })
    }

    fn addr(&self, off: usize, len: usize) -> Option<GuestAddress> {
        (off.checked_add(len)? <= PAGE_SIZE).then(|| GuestAddress(self.base.0 + off as u64))
    }
}

// The page was checked to be mapped at construction and a vm-memory mapping never changes, so
// the accesses below cannot fail for in-page offsets; an error can only mean a caller bug and is
// answered like an out-of-page offset.
impl<M: GuestMemoryBackend + Send + Sync> ConsolePage for GuestMemoryPage<M> {
    fn read_u32(&self, off: usize) -> u32 {
        self.addr(off, 4)
            .and_then(|a| self.mem.load::<u32>(a, Ordering::Acquire).ok())
            .map(u32::from_le)
            .unwrap_or(0)
    }

    fn write_u32(&self, off: usize, v: u32) {
        if let Some(a) = self.addr(off, 4) {
            let _ = self.mem.store(v.to_le(), a, Ordering::Release);
        }
    }

    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        match self.addr(off, buf.len()) {
            Some(a) if self.mem.read_slice(buf, a).is_ok() => {}
            _ => buf.fill(0),
        }
    }

    fn write_bytes(&self, off: usize, data: &[u8]) {
        if let Some(a) = self.addr(off, data.len()) {
            let _ = self.mem.write_slice(data, a);
        }
    }
}

/// A console page in host memory: for tests, and for playing the guest's side.
#[derive(Debug)]
pub struct MemoryPage(Mutex<Box<[u8; PAGE_SIZE]>>);

impl Default for MemoryPage {
    fn default() -> Self {
        MemoryPage(Mutex::new(Box::new([0; PAGE_SIZE])))
    }
}

impl MemoryPage {
    fn with<R>(&self, f: impl FnOnce(&mut [u8; PAGE_SIZE]) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ConsolePage for MemoryPage {
    fn read_u32(&self, off: usize) -> u32 {
        self.with(|p| {
            p.get(off..off.saturating_add(4))
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .unwrap_or(0)
        })
    }

    fn write_u32(&self, off: usize, v: u32) {
        self.write_bytes(off, &v.to_le_bytes());
    }

    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.with(|p| match p.get(off..off.saturating_add(buf.len())) {
            Some(src) => buf.copy_from_slice(src),
            None => buf.fill(0),
        })
    }

    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.with(|p| {
            if let Some(dst) = p.get_mut(off..off.saturating_add(data.len())) {
                dst.copy_from_slice(data);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn guest_memory_page_checks_and_accesses_guest_ram() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
        assert!(matches!(
            GuestMemoryPage::new(mem.clone(), GuestAddress(0x1010)),
            Err(PageError::Unaligned(0x1010))
        ));
        assert!(matches!(
            GuestMemoryPage::new(mem.clone(), GuestAddress(0x4000)),
            Err(PageError::OutOfMemory(0x4000))
        ));
        let page = GuestMemoryPage::new(mem.clone(), GuestAddress(0x2000)).unwrap();
        page.write_u32(3084, 0x1234_5678);
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x2000 + 3084)).unwrap(),
            0x1234_5678
        );
        assert_eq!(page.read_u32(3084), 0x1234_5678);
        page.write_bytes(1024, b"hello");
        let mut buf = [0u8; 5];
        page.read_bytes(1024, &mut buf);
        assert_eq!(&buf, b"hello");
        // Offsets past the page touch nothing.
        page.write_u32(4094, 7);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x3000)).unwrap(), 0);
        assert_eq!(page.read_u32(4094), 0);
    }

    #[test]
    fn memory_page_ignores_out_of_page_offsets() {
        let p = MemoryPage::default();
        p.write_u32(4093, 1);
        assert_eq!(p.read_u32(4093), 0);
        let mut b = [9u8; 8];
        p.read_bytes(usize::MAX - 2, &mut b);
        assert_eq!(b, [0; 8]);
    }
}
