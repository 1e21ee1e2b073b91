//! Byte-granular access to images that want whole sectors (VHD): unaligned requests are
//! widened to sectors, writes by read-modify-write under the export's lock.

use block::{DiskImage, Error as BlockError, SECTOR_SIZE};

use crate::proto::{EINVAL, EIO, ENOMEM, ENOSPC, EPERM};
use crate::Export;

/// Largest chunk of zeros written at once by WRITE_ZEROES and unaligned edges.
const ZERO_CHUNK: u64 = 1 << 20;

/// The NBD error code for an image error.
pub(crate) fn errno(e: &BlockError) -> u32 {
    match e {
        BlockError::ReadOnly => EPERM,
        BlockError::OutOfRange { .. } | BlockError::Unaligned { .. } => EINVAL,
        BlockError::InvalidArgument(_) => EINVAL,
        BlockError::Io { source, .. } => match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ENOSPC,
            Some(libc::ENOMEM) => ENOMEM,
            _ => EIO,
        },
        _ => EIO,
    }
}

/// The sector-aligned range covering [off, off+len), clipped to the image size (a raw file
/// may end inside a sector; raw images accept any alignment).
fn widen(img: &dyn DiskImage, off: u64, len: u64) -> (u64, u64) {
    let start = off / SECTOR_SIZE * SECTOR_SIZE;
    let end = (off + len).div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    (start, end.min(img.size()).max(off + len))
}

fn aligned(off: u64, len: u64) -> bool {
    off.is_multiple_of(SECTOR_SIZE) && len.is_multiple_of(SECTOR_SIZE)
}

/// Reads `buf.len()` bytes at `off`; the caller has checked the range.
pub(crate) fn read(img: &dyn DiskImage, buf: &mut [u8], off: u64) -> Result<(), BlockError> {
    let len = buf.len() as u64;
    if aligned(off, len) {
        return img.read_at(buf, off);
    }
    let (start, end) = widen(img, off, len);
    let mut tmp = vec![0u8; (end - start) as usize];
    img.read_at(&mut tmp, start)?;
    let at = (off - start) as usize;
    buf.copy_from_slice(&tmp[at..at + buf.len()]);
    Ok(())
}

/// Writes `data` at `off`; the caller has checked the range.
pub(crate) fn write(exp: &Export, data: &[u8], off: u64) -> Result<(), BlockError> {
    let img = &*exp.image;
    let len = data.len() as u64;
    if aligned(off, len) {
        return img.write_at(data, off);
    }
    let _g = exp.rmw.lock().unwrap_or_else(|e| e.into_inner());
    let (start, end) = widen(img, off, len);
    let mut tmp = vec![0u8; (end - start) as usize];
    img.read_at(&mut tmp, start)?;
    let at = (off - start) as usize;
    tmp[at..at + data.len()].copy_from_slice(data);
    img.write_at(&tmp, start)
}

/// Makes [off, off+len) read as zeros: the aligned middle by discard (when holes are
/// allowed) or zero writes, the unaligned edges by read-modify-write.
pub(crate) fn zero(exp: &Export, off: u64, len: u64, may_trim: bool) -> Result<(), BlockError> {
    let img = &*exp.image;
    let end = off + len;
    let a = off.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    let z = end / SECTOR_SIZE * SECTOR_SIZE;
    if a >= z {
        return write(exp, &vec![0u8; len as usize], off);
    }
    if off < a {
        write(exp, &vec![0u8; (a - off) as usize], off)?;
    }
    if z < end {
        write(exp, &vec![0u8; (end - z) as usize], z)?;
    }
    if may_trim {
        return img.discard(a, z - a);
    }
    let zeros = vec![0u8; ZERO_CHUNK.min(z - a) as usize];
    let mut pos = a;
    while pos < z {
        let n = (z - pos).min(ZERO_CHUNK);
        img.write_at(&zeros[..n as usize], pos)?;
        pos += n;
    }
    Ok(())
}

/// Discards the whole sectors inside [off, off+len); partial sectors are left alone (a trim
/// is only advice).
pub(crate) fn trim(img: &dyn DiskImage, off: u64, len: u64) -> Result<(), BlockError> {
    let a = off.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    let z = (off + len) / SECTOR_SIZE * SECTOR_SIZE;
    if a >= z {
        return Ok(());
    }
    img.discard(a, z - a)
}
