//! Buffers for vectored I/O that may live outside Rust's ownership (a guest's RAM mapped into
//! the process): a pointer and a length laid out as the kernel's `struct iovec`, so a slice of
//! them goes to `preadv`/`pwritev` as is. No Rust reference to the memory is ever formed, since
//! another party (the guest) may change it at any time.

use std::marker::PhantomData;

use crate::{Error, Result};

/// Memory an I/O writes into (the destination of a read).
///
/// Invariant: `iov` describes memory valid for writes of `iov_len` bytes for `'a`.
#[repr(transparent)]
pub struct IoBufMut<'a> {
    iov: libc::iovec,
    _mem: PhantomData<&'a mut [u8]>,
}

/// Memory an I/O reads from (the source of a write).
///
/// Invariant: `iov` describes memory valid for reads of `iov_len` bytes for `'a`.
#[repr(transparent)]
pub struct IoBuf<'a> {
    iov: libc::iovec,
    _mem: PhantomData<&'a [u8]>,
}

impl<'a> IoBufMut<'a> {
    /// A buffer over a Rust slice.
    pub fn new(buf: &'a mut [u8]) -> Self {
        IoBufMut {
            iov: libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
            _mem: PhantomData,
        }
    }

    /// A buffer over raw memory, such as a guest page mapped into the process.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for writes of `len` bytes for all of `'a`, and no Rust reference to
    /// that memory may be used while the buffer lives.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Self {
        IoBufMut {
            iov: libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            },
            _mem: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.iov.iov_len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `src` (exactly [`IoBufMut::len`] bytes) into the buffer.
    ///
    /// # Panics
    ///
    /// If the lengths differ (a bug of the caller, never input-driven).
    pub fn copy_from(&mut self, src: &[u8]) {
        assert_eq!(
            src.len(),
            self.len(),
            "IoBufMut::copy_from: length mismatch"
        );
        // SAFETY: the invariant makes the destination valid for `len` writes, and `&mut self`
        // is the only handle to it; `src` is a Rust slice, which cannot overlap memory that no
        // Rust reference may point to.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.iov.iov_base.cast(), src.len()) }
    }

    /// The kernel's view of a slice of buffers.
    pub(crate) fn as_iovecs<'s>(bufs: &'s [IoBufMut<'_>]) -> &'s [libc::iovec] {
        // SAFETY: `IoBufMut` is `repr(transparent)` over `libc::iovec` (the marker is a ZST).
        unsafe { std::slice::from_raw_parts(bufs.as_ptr().cast(), bufs.len()) }
    }
}

impl<'a> IoBuf<'a> {
    /// A buffer over a Rust slice.
    pub fn new(buf: &'a [u8]) -> Self {
        IoBuf {
            iov: libc::iovec {
                iov_base: buf.as_ptr().cast_mut().cast(),
                iov_len: buf.len(),
            },
            _mem: PhantomData,
        }
    }

    /// A buffer over raw memory, such as a guest page mapped into the process.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads of `len` bytes for all of `'a`.
    pub unsafe fn from_raw(ptr: *const u8, len: usize) -> Self {
        IoBuf {
            iov: libc::iovec {
                iov_base: ptr.cast_mut().cast(),
                iov_len: len,
            },
            _mem: PhantomData,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.iov.iov_len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the buffer into `dst` (exactly [`IoBuf::len`] bytes).
    ///
    /// # Panics
    ///
    /// If the lengths differ (a bug of the caller, never input-driven).
    pub fn copy_to(&self, dst: &mut [u8]) {
        assert_eq!(dst.len(), self.len(), "IoBuf::copy_to: length mismatch");
        // SAFETY: the invariant makes the source valid for `len` reads; `dst` is an exclusive
        // Rust slice, so it does not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.iov.iov_base.cast(), dst.as_mut_ptr(), dst.len())
        }
    }

    /// The kernel's view of a slice of buffers.
    pub(crate) fn as_iovecs<'s>(bufs: &'s [IoBuf<'_>]) -> &'s [libc::iovec] {
        // SAFETY: `IoBuf` is `repr(transparent)` over `libc::iovec` (the marker is a ZST).
        unsafe { std::slice::from_raw_parts(bufs.as_ptr().cast(), bufs.len()) }
    }
}

impl std::fmt::Debug for IoBufMut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBufMut({:p}, {})", self.iov.iov_base, self.iov.iov_len)
    }
}

impl std::fmt::Debug for IoBuf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBuf({:p}, {})", self.iov.iov_base, self.iov.iov_len)
    }
}

/// Total length of `iovs`, or an error if it does not fit a `usize`.
pub(crate) fn total_len(iovs: &[libc::iovec]) -> Result<usize> {
    iovs.iter()
        .try_fold(0usize, |t, v| t.checked_add(v.iov_len))
        .ok_or_else(|| Error::InvalidArgument("vectored I/O longer than the address space".into()))
}

/// Reads through a bounce buffer: one [`crate::DiskImage::read_at`], then a copy into each
/// buffer. What formats without a vectored path of their own do.
pub(crate) fn bounce_read(
    read_at: impl FnOnce(&mut [u8]) -> Result<()>,
    bufs: &mut [IoBufMut<'_>],
) -> Result<()> {
    let mut tmp = vec![0u8; total_len(IoBufMut::as_iovecs(bufs))?];
    read_at(&mut tmp)?;
    let mut pos = 0;
    for b in bufs {
        let n = b.len();
        b.copy_from(&tmp[pos..pos + n]);
        pos += n;
    }
    Ok(())
}

/// Writes through a bounce buffer: a copy out of each buffer, then one
/// [`crate::DiskImage::write_at`].
pub(crate) fn bounce_write(
    write_at: impl FnOnce(&[u8]) -> Result<()>,
    bufs: &[IoBuf<'_>],
) -> Result<()> {
    let mut tmp = vec![0u8; total_len(IoBuf::as_iovecs(bufs))?];
    let mut pos = 0;
    for b in bufs {
        let n = b.len();
        b.copy_to(&mut tmp[pos..pos + n]);
        pos += n;
    }
    write_at(&tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_paths_scatter_and_gather_in_order() {
        let src: Vec<u8> = (0..20).collect();
        let (mut a, mut b, mut c) = ([0u8; 3], [0u8; 0], [0u8; 17]);
        let mut bufs = [
            IoBufMut::new(&mut a),
            IoBufMut::new(&mut b),
            IoBufMut::new(&mut c),
        ];
        bounce_read(
            |t| {
                assert_eq!(t.len(), 20);
                t.copy_from_slice(&src);
                Ok(())
            },
            &mut bufs,
        )
        .unwrap();
        assert_eq!((&a[..], &c[..]), (&src[..3], &src[3..]));
        let bufs = [IoBuf::new(&c), IoBuf::new(&b), IoBuf::new(&a)];
        let mut seen = Vec::new();
        bounce_write(
            |t| {
                seen = t.to_vec();
                Ok(())
            },
            &bufs,
        )
        .unwrap();
        assert_eq!(&seen[..17], &src[3..]);
        assert_eq!(&seen[17..], &src[..3]);
        // A failing read leaves the buffers alone and reports the error.
        let mut d = [9u8; 4];
        let e = bounce_read(|_| Err(Error::ReadOnly), &mut [IoBufMut::new(&mut d)]);
        assert!(matches!(e, Err(Error::ReadOnly)));
        assert_eq!(d, [9; 4]);
    }
}
