//! Byte storage under an image: a host file, or memory (used by the fuzz target and tests).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::RwLock;

/// Positional byte storage shared by many threads. Every call is independent (pread/pwrite style),
/// so no lock is needed around a shared file.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Fills `buf` from `offset`; reading past the end is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the storage if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the storage is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn sync(&self) -> io::Result<()>;
    /// Gives back the space of a range, which then reads as zeros.
    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Next offset at or after `offset` holding data (holes skipped), if the storage knows holes.
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        Ok(Some(offset))
    }
    /// Next hole at or after `offset` (the end of the storage counts as a hole).
    fn next_hole(&self, _offset: u64) -> io::Result<u64> {
        self.len()
    }
}

/// A host file accessed with pread/pwrite.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
}

impl FileStorage {
    /// Creates a new file for reading and writing; refuses to overwrite an existing one.
    pub fn create_new(path: &std::path::Path) -> crate::Result<FileStorage> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map(FileStorage::new)
            .map_err(|e| crate::Error::io(format!("creating {}", path.display()), e))
    }

    /// Wraps an open file.
    pub fn new(file: File) -> Self {
        FileStorage { file }
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    fn seek_whence(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // SAFETY: lseek on a file descriptor we own; it does not touch memory. Concurrent lseek
        // calls only move the shared file position, which pread/pwrite never use.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), off, whence) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(r as u64))
    }
}

impl Storage for FileStorage {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let (off, l) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
            (Ok(o), Ok(l)) => (o, l),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "range too large",
                ))
            }
        };
        // SAFETY: fallocate on our own descriptor; no memory is passed.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                l,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // File systems without hole punching: the range must still read as zeros.
            return write_zeros(self, offset, len);
        }
        Err(e)
    }

    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        self.seek_whence(offset, libc::SEEK_DATA)
    }

    fn next_hole(&self, offset: u64) -> io::Result<u64> {
        match self.seek_whence(offset, libc::SEEK_HOLE)? {
            Some(h) => Ok(h),
            None => self.len(),
        }
    }
}

/// Writes `len` zero bytes at `offset` in chunks.
pub(crate) fn write_zeros(s: &dyn Storage, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        s.write_all_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Storage in memory: lets the parser and the fuzz target run without touching the disk.
#[derive(Debug, Default)]
pub struct MemStorage {
    data: RwLock<Vec<u8>>,
}

impl MemStorage {
    /// Storage holding a copy of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        MemStorage {
            data: RwLock::new(bytes),
        }
    }

    /// A copy of the current contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Largest in-memory image we agree to grow to, so hostile metadata cannot exhaust memory.
const MEM_LIMIT: u64 = 1 << 30;

impl Storage for MemStorage {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.data.read().unwrap_or_else(|e| e.into_inner());
        let end = offset.checked_add(buf.len() as u64);
        match end {
            Some(end) if end <= d.len() as u64 => {
                buf.copy_from_slice(&d[offset as usize..end as usize]);
                Ok(())
            }
            _ => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= MEM_LIMIT)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "memory image too large"))?;
        let mut d = self.data.write().unwrap_or_else(|e| e.into_inner());
        if d.len() < end as usize {
            d.resize(end as usize, 0);
        }
        d[offset as usize..end as usize].copy_from_slice(buf);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.read().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > MEM_LIMIT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "memory image too large",
            ));
        }
        self.data
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .resize(len as usize, 0);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut d = self.data.write().unwrap_or_else(|e| e.into_inner());
        let start = (offset as usize).min(d.len());
        let end = (offset.saturating_add(len) as usize).min(d.len());
        d[start..end].fill(0);
        Ok(())
    }
}
