//! Oxen's disk image engine: the image layer of the PV block backend and of `oxen-vhd`.
//!
//! Every format implements [`DiskImage`], whose methods take `&self` so one image can be shared
//! by many I/O threads through an `Arc`. Formats live in their own modules: [`raw`] and [`vhd`]
//! (fixed, dynamic and differencing VHD with parent chains); [`crypt`] provides the AES-XTS
//! sector cipher used by encrypted VHDs.

pub mod crypt;
mod error;
pub mod fuzz;
mod iobuf;
pub mod raw;
mod storage;
mod vectored;
pub mod vhd;

pub use error::{Error, Result};
pub use iobuf::{IoBuf, IoBufMut};
pub use storage::{FileStorage, MemStorage, Storage};

/// Sector size of every format handled here.
pub const SECTOR_SIZE: u64 = 512;

/// A virtual disk: byte-addressed, sector-aligned for VHD.
///
/// Implementations are safe to call from many threads at once. A write that returned before a
/// [`DiskImage::flush`] that returned survives a crash of the process or the host.
pub trait DiskImage: Send + Sync + std::fmt::Debug {
    /// Virtual size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from virtual byte `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes `buf` at virtual byte `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Fills `bufs`, one after the other, from virtual byte `offset`: the vectored
    /// [`DiskImage::read_at`], so that data can land straight in memory that is not one
    /// contiguous slice (a guest's pages). The entries of `bufs` are not changed, only the
    /// memory they name.
    ///
    /// The default reads into a bounce buffer and copies; formats that can do better (raw
    /// files: `preadv`) override it.
    fn read_vectored_at(&self, bufs: &mut [IoBufMut<'_>], offset: u64) -> Result<()> {
        iobuf::bounce_read(|tmp| self.read_at(tmp, offset), bufs)
    }
    /// Writes `bufs`, one after the other, at virtual byte `offset`: the vectored
    /// [`DiskImage::write_at`]. The default copies into a bounce buffer first.
    fn write_vectored_at(&self, bufs: &[IoBuf<'_>], offset: u64) -> Result<()> {
        iobuf::bounce_write(|tmp| self.write_at(tmp, offset), bufs)
    }
    /// Makes every write that has returned durable.
    fn flush(&self) -> Result<()>;
    /// Writes pending metadata into the image without waiting for the disk: the image is
    /// complete for other readers, but not crash-safe until a [`DiskImage::flush`].
    fn flush_unsynced(&self) -> Result<()> {
        self.flush()
    }
    /// Declares a range unused: it reads as zeros afterwards and, where the format can, its space
    /// is given back.
    fn discard(&self, offset: u64, len: u64) -> Result<()>;
    /// Changes the virtual size (online).
    fn resize(&self, new_size: u64) -> Result<()>;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
}
