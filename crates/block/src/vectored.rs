//! `preadv`/`pwritev` until every byte is moved: short transfers and `EINTR` are resumed, and
//! requests with more buffers than the kernel takes at once (`IOV_MAX`) are split.

use std::io;
use std::os::unix::io::AsRawFd;

use crate::iobuf::{IoBuf, IoBufMut};
use crate::storage::FileStorage;

/// Most buffers one `preadv`/`pwritev` accepts (Linux's `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = libc::UIO_MAXIOV as usize;

impl FileStorage {
    /// Fills every buffer, in order, from `offset`; the end of the file before the last byte is
    /// an `UnexpectedEof` error.
    pub fn read_exact_vectored_at(&self, bufs: &mut [IoBufMut<'_>], offset: u64) -> io::Result<()> {
        let fd = self.file().as_raw_fd();
        let iovs = IoBufMut::as_iovecs(bufs);
        let eof = (io::ErrorKind::UnexpectedEof, "end of file");
        transfer_all(iovs, offset, eof, |iov, off| {
            // SAFETY: every iovec comes from an `IoBufMut` borrowed mutably for this call (or a
            // tail of one), so it names memory valid for writes of its length.
            let n = unsafe { libc::preadv(fd, iov.as_ptr(), iov.len() as libc::c_int, off) };
            os_result(n)
        })
    }

    /// Writes every buffer, in order, at `offset`.
    pub fn write_all_vectored_at(&self, bufs: &[IoBuf<'_>], offset: u64) -> io::Result<()> {
        let fd = self.file().as_raw_fd();
        let iovs = IoBuf::as_iovecs(bufs);
        let full = (io::ErrorKind::WriteZero, "the file took no bytes");
        transfer_all(iovs, offset, full, |iov, off| {
            // SAFETY: every iovec comes from an `IoBuf` borrowed for this call (or a tail of
            // one), so it names memory valid for reads of its length; pwritev only reads it.
            let n = unsafe { libc::pwritev(fd, iov.as_ptr(), iov.len() as libc::c_int, off) };
            os_result(n)
        })
    }
}

fn os_result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Runs `op` (one `preadv`/`pwritev` at a file offset) until all of `iovs` is transferred; a
/// call that moves nothing (end of file, nothing written) is the error `on_zero`.
///
/// `iovs` itself is never changed: after a short transfer that ends inside a buffer, the rest
/// of that buffer goes alone in a one-element vector, then whole buffers resume.
pub(crate) fn transfer_all(
    iovs: &[libc::iovec],
    mut offset: u64,
    on_zero: (io::ErrorKind, &'static str),
    mut op: impl FnMut(&[libc::iovec], libc::off_t) -> io::Result<usize>,
) -> io::Result<()> {
    let (mut idx, mut skip) = (0usize, 0usize);
    while idx < iovs.len() {
        if skip == iovs[idx].iov_len {
            // Done with this buffer (or it was empty).
            idx += 1;
            skip = 0;
            continue;
        }
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let tail;
        let window = if skip > 0 {
            tail = [libc::iovec {
                iov_base: iovs[idx].iov_base.cast::<u8>().wrapping_add(skip).cast(),
                iov_len: iovs[idx].iov_len - skip,
            }];
            &tail[..]
        } else {
            &iovs[idx..iovs.len().min(idx + IOV_MAX)]
        };
        let mut n = match op(window, off) {
            Ok(0) => return Err(io::Error::new(on_zero.0, on_zero.1)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        offset += n as u64;
        while n > 0 && idx < iovs.len() {
            let rest = iovs[idx].iov_len - skip;
            if n < rest {
                skip += n;
                n = 0;
            } else {
                n -= rest;
                idx += 1;
                skip = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn storage(bytes: &[u8]) -> (tempfile::NamedTempFile, FileStorage) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let s = FileStorage::new(f.reopen().unwrap());
        (f, s)
    }

    const Z: (io::ErrorKind, &str) = (io::ErrorKind::WriteZero, "nothing");

    /// Buffer lengths 0..=6 repeating, `n` buffers.
    fn lengths(n: usize) -> Vec<usize> {
        (0..n).map(|i| i % 7).collect()
    }

    #[test]
    fn preadv_and_pwritev_fill_many_buffers_in_order() {
        let lens = lengths(3000);
        let total: usize = lens.iter().sum();
        assert!(lens.len() > 2 * IOV_MAX, "splits into several calls");
        let data: Vec<u8> = (0..total + 100).map(|i| (i * 31 % 251) as u8).collect();
        let (_f, s) = storage(&data);
        let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0u8; n]).collect();
        let mut io: Vec<IoBufMut<'_>> = bufs.iter_mut().map(|b| IoBufMut::new(b)).collect();
        s.read_exact_vectored_at(&mut io, 50).unwrap();
        assert_eq!(bufs.concat(), &data[50..50 + total]);

        // Write them back reversed at offset 7, and read the file plainly.
        bufs.reverse();
        let io: Vec<IoBuf<'_>> = bufs.iter().map(|b| IoBuf::new(b)).collect();
        s.write_all_vectored_at(&io, 7).unwrap();
        let mut back = vec![0u8; total];
        std::os::unix::fs::FileExt::read_exact_at(s.file(), &mut back, 7).unwrap();
        assert_eq!(back, bufs.concat());
        assert_eq!(s.file().metadata().unwrap().len() as usize, total + 100);
    }

    #[test]
    fn reading_past_the_end_is_unexpected_eof() {
        let (_f, s) = storage(&[5u8; 1000]);
        let (mut a, mut b) = ([0u8; 600], [0u8; 600]);
        let e = s
            .read_exact_vectored_at(&mut [IoBufMut::new(&mut a), IoBufMut::new(&mut b)], 0)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // What was there was read.
        assert_eq!((a, &b[..400]), ([5u8; 600], &[5u8; 400][..]));
        let e = s
            .read_exact_vectored_at(&mut [IoBufMut::new(&mut a)], 1000)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // Nothing to read is fine anywhere.
        s.read_exact_vectored_at(&mut [], 1 << 40).unwrap();
    }

    /// A fake file whose calls move at most `step` bytes, fail with EINTR every third call,
    /// and check the vector size limit.
    #[test]
    fn short_transfers_and_eintr_are_resumed() {
        let lens = lengths(2500);
        let total: usize = lens.iter().sum();
        let file: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
        for step in [1usize, 5, 13, 4096, usize::MAX] {
            let mut bufs: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0u8; n]).collect();
            let io: Vec<IoBufMut<'_>> = bufs.iter_mut().map(|b| IoBufMut::new(b)).collect();
            let (mut calls, mut max_vec) = (0usize, 0usize);
            transfer_all(IoBufMut::as_iovecs(&io), 0, Z, |iov, off| {
                calls += 1;
                max_vec = max_vec.max(iov.len());
                if calls % 3 == 0 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let mut pos = off as usize;
                let mut left = step;
                for v in iov {
                    let n = v.iov_len.min(left).min(file.len() - pos);
                    // SAFETY: the iovecs name the test's own buffers, valid for writes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(file[pos..].as_ptr(), v.iov_base.cast(), n)
                    };
                    pos += n;
                    left -= n;
                    if left == 0 || n < v.iov_len {
                        break;
                    }
                }
                Ok(pos - off as usize)
            })
            .unwrap();
            drop(io);
            assert_eq!(bufs.concat(), file, "step {step}");
            assert!(max_vec <= IOV_MAX);
        }
    }

    #[test]
    fn a_call_that_moves_nothing_is_an_error() {
        let mut a = [0u8; 8];
        let io = [IoBufMut::new(&mut a)];
        let e = transfer_all(IoBufMut::as_iovecs(&io), 0, Z, |_, _| Ok(0)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        let e = transfer_all(IoBufMut::as_iovecs(&io), 0, Z, |_, _| {
            Err(io::Error::from_raw_os_error(libc::EIO))
        })
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }
}
