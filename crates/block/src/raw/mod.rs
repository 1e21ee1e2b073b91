//! Raw images: the file is the disk.

use std::fs::OpenOptions as FsOpen;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{DiskImage, Error, FileStorage, Result, Storage};

/// A raw disk image file.
#[derive(Debug)]
pub struct RawImage {
    name: String,
    store: FileStorage,
    size: AtomicU64,
    writable: bool,
}

impl RawImage {
    /// Opens a raw file.
    pub fn open(path: &Path, writable: bool) -> Result<RawImage> {
        let f = FsOpen::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let store = FileStorage::new(f);
        let size = store
            .len()
            .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?;
        Ok(RawImage {
            name: path.display().to_string(),
            store,
            size: AtomicU64::new(size),
            writable,
        })
    }

    /// Creates an empty (sparse) raw file of `size` bytes; refuses to overwrite.
    pub fn create(path: &Path, size: u64) -> Result<RawImage> {
        let f = FileStorage::create_new(path)?;
        f.set_len(size)
            .map_err(|e| Error::io(format!("sizing {}", path.display()), e))?;
        Self::open(path, true)
    }

    /// The underlying storage (for hole-aware copying).
    pub fn storage(&self) -> &FileStorage {
        &self.store
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        let size = self.size();
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::OutOfRange { offset, len, size });
        }
        Ok(())
    }
}

impl DiskImage for RawImage {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.store
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(format!("reading {} at byte {offset}", self.name), e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.check(offset, buf.len() as u64)?;
        self.store
            .write_all_at(buf, offset)
            .map_err(|e| Error::io(format!("writing {} at byte {offset}", self.name), e))
    }

    fn flush(&self) -> Result<()> {
        self.store
            .sync()
            .map_err(|e| Error::io(format!("syncing {}", self.name), e))
    }

    fn flush_unsynced(&self) -> Result<()> {
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.check(offset, len)?;
        self.store
            .punch_hole(offset, len)
            .map_err(|e| Error::io(format!("discarding in {}", self.name), e))
    }

    fn resize(&self, new_size: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.store
            .set_len(new_size)
            .map_err(|e| Error::io(format!("resizing {}", self.name), e))?;
        self.size.store(new_size, Ordering::Release);
        Ok(())
    }

    fn read_only(&self) -> bool {
        !self.writable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_read_write_discard_resize() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        let r = RawImage::create(&p, 8192).unwrap();
        r.write_at(&[7u8; 100], 10).unwrap();
        let mut b = [0u8; 110];
        r.read_at(&mut b, 0).unwrap();
        assert_eq!(&b[10..], &[7u8; 100]);
        r.discard(0, 4096).unwrap();
        r.read_at(&mut b, 0).unwrap();
        assert_eq!(b, [0u8; 110]);
        assert!(r.read_at(&mut b, 8190).is_err());
        r.resize(16384).unwrap();
        assert_eq!(r.size(), 16384);
        r.flush().unwrap();
    }
}
