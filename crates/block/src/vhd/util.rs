//! Small helpers shared by the VHD structures: big-endian fields, checksums, time, UUIDs, CHS.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 00:00:00 UTC).
const VHD_EPOCH: u64 = 946_684_800;

pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_be_bytes(a)
}

pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_be_bytes());
}

/// The VHD checksum: one's complement of the byte sum, skipping the 4-byte checksum field.
pub(crate) fn checksum(b: &[u8], checksum_off: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(checksum_off..checksum_off + 4).contains(i))
        .fold(0u32, |s, (_, &v)| s.wrapping_add(u32::from(v)));
    !sum
}

/// Now, in VHD time (seconds since 2000-01-01 UTC).
pub fn vhd_now() -> u32 {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(VHD_EPOCH);
    u32::try_from(unix.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX)
}

/// Converts VHD time to Unix seconds.
pub fn vhd_time_to_unix(t: u32) -> u64 {
    u64::from(t) + VHD_EPOCH
}

/// A random (version 4) UUID.
pub(crate) fn new_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    // If the kernel RNG is unavailable fall back to time-derived bytes: uniqueness, not secrecy.
    if getrandom::getrandom(&mut u).is_err() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        u = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// Formats a UUID in the usual 8-4-4-4-12 form.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Cylinder/head/sector geometry stored in the footer, computed as the VHD specification describes.
pub(crate) fn chs_for(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    let max = 65535u64 * 16 * 255;
    if total > max {
        total = max;
    }
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255u64;
        heads = 16u64;
        cth = total / spt;
    } else {
        let mut s = 17u64;
        let mut c = total / s;
        let mut h = c.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

/// Rounds `v` up to a multiple of `align` (a power of two).
pub(crate) fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// Encodes a string as UTF-16, big- or little-endian.
pub(crate) fn utf16_encode(s: &str, big_endian: bool) -> Vec<u8> {
    s.encode_utf16()
        .flat_map(|c| {
            if big_endian {
                c.to_be_bytes()
            } else {
                c.to_le_bytes()
            }
        })
        .collect()
}

/// Decodes UTF-16 bytes up to the first NUL; `None` if the bytes are not valid UTF-16.
pub(crate) fn utf16_decode(b: &[u8], big_endian: bool) -> Option<String> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| {
            if big_endian {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_skips_its_own_field() {
        let mut b = [1u8; 16];
        let c = checksum(&b, 4);
        b[4..8].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(checksum(&b, 4), c);
        assert_eq!(c, !12u32);
    }

    #[test]
    fn geometry_matches_qemu_for_64m() {
        // The specification's algorithm rounds down; qemu rounds up to 964/8/17 for 64 MiB.
        assert_eq!(chs_for(64 << 20), (963, 8, 17));
        assert_eq!(chs_for(4 << 40), (65535, 16, 255));
    }

    #[test]
    fn uuid_is_v4_and_formats() {
        let u = new_uuid();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(uuid_string(&u).len(), 36);
    }

    #[test]
    fn utf16_round_trip() {
        for be in [true, false] {
            let e = utf16_encode("dir/päth", be);
            assert_eq!(utf16_decode(&e, be).as_deref(), Some("dir/päth"));
        }
    }
}
