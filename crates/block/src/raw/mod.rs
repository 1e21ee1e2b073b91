//! Raw images: the file is the disk.

use std::fs::OpenOptions as FsOpen;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::iobuf::total_len;
use crate::{DiskImage, Error, FileStorage, IoBuf, IoBufMut, Result, Storage};

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

    fn read_vectored_at(&self, bufs: &mut [IoBufMut<'_>], offset: u64) -> Result<()> {
        let len = total_len(IoBufMut::as_iovecs(bufs))?;
        self.check(offset, len as u64)?;
        self.store
            .read_exact_vectored_at(bufs, offset)
            .map_err(|e| Error::io(format!("reading {} at byte {offset}", self.name), e))
    }

    fn write_vectored_at(&self, bufs: &[IoBuf<'_>], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let len = total_len(IoBuf::as_iovecs(bufs))?;
        self.check(offset, len as u64)?;
        self.store
            .write_all_vectored_at(bufs, offset)
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

    #[test]
    fn raw_vectored_io_is_checked_and_lands_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.img");
        let r = RawImage::create(&p, 8192).unwrap();
        let (a, b) = ([1u8; 700], [2u8; 300]);
        r.write_vectored_at(&[IoBuf::new(&a), IoBuf::new(&b)], 4000)
            .unwrap();
        let mut plain = [0u8; 1002];
        r.read_at(&mut plain, 3999).unwrap();
        assert_eq!(plain[0], 0);
        assert_eq!(&plain[1..701], &a[..]);
        assert_eq!(&plain[701..1001], &b[..]);
        assert_eq!(plain[1001], 0);
        let (mut x, mut y) = ([0u8; 500], [0u8; 500]);
        r.read_vectored_at(&mut [IoBufMut::new(&mut y), IoBufMut::new(&mut x)], 4000)
            .unwrap();
        assert_eq!(
            (&y[..], &x[..200], &x[200..]),
            (&[1u8; 500][..], &[1u8; 200][..], &[2u8; 300][..])
        );
        // Past the end of the disk: refused before any I/O.
        let mut z = [7u8; 600];
        assert!(matches!(
            r.read_vectored_at(&mut [IoBufMut::new(&mut x), IoBufMut::new(&mut z)], 7200),
            Err(Error::OutOfRange { len: 1100, .. })
        ));
        assert_eq!(z, [7u8; 600]);
        assert!(r.write_vectored_at(&[IoBuf::new(&z)], 7600).is_err());
        // A read-only image refuses vectored writes.
        drop(r);
        let ro = RawImage::open(&p, false).unwrap();
        assert!(matches!(
            ro.write_vectored_at(&[IoBuf::new(&a)], 0),
            Err(Error::ReadOnly)
        ));
    }
}
