//! Guest disk names (`xvda`, `hdc`, `sdb2`, `d0p1`) and their numbers in the Xen VBD interface
//! (xen-vbd-interface(7)): the number is the frontend's xenstore device id and tells the guest
//! which disk and partition it is.

/// Xen virtual disks: disks 0..15 with partitions 0..15 (`202 << 8 | disk << 4 | partition`).
const XVD_MAJOR: u32 = 202;
/// The extended form for larger xvd disks or partitions (`1 << 28 | disk << 8 | partition`).
const EXTENDED: u32 = 1 << 28;
/// Largest xvd disk index the extended form holds.
const XVD_MAX_DISK: u32 = (1 << 20) - 1;
/// Largest xvd partition the extended form holds.
const XVD_MAX_PART: u32 = 255;
/// IDE: disks 0..1 on major 3, disks 2..3 on major 22, partitions 0..63.
const IDE0_MAJOR: u32 = 3;
const IDE1_MAJOR: u32 = 22;
/// SCSI: disks 0..15, partitions 0..15, major 8.
const SCSI_MAJOR: u32 = 8;

/// A guest disk's number in the VBD interface, from its configured name.
///
/// Accepts `xvdX[N]` (letters `a`..`z`, `aa`.. as in Linux), `hdX[N]` (hda..hdd, partitions up
/// to 63), `sdX[N]` (sda..sdp, partitions up to 15) and `dDISK[pPART]`.
pub fn vdev_number(name: &str) -> Result<u32, String> {
    let bad =
        || format!("'{name}' is not a virtual device name (such as xvda, xvdb1, hda, sda, d0p1)");
    if let Some(rest) = name.strip_prefix("xvd") {
        let (disk, part) = letters_and_partition(name, rest, XVD_MAX_DISK, XVD_MAX_PART)?;
        return Ok(xvd_number(disk, part));
    }
    if let Some(rest) = name.strip_prefix("hd") {
        let (disk, part) = letters_and_partition(name, rest, 3, 63)?;
        let major = if disk < 2 { IDE0_MAJOR } else { IDE1_MAJOR };
        return Ok(major << 8 | (disk & 1) << 6 | part);
    }
    if let Some(rest) = name.strip_prefix("sd") {
        let (disk, part) = letters_and_partition(name, rest, 15, 15)?;
        return Ok(SCSI_MAJOR << 8 | disk << 4 | part);
    }
    if let Some(rest) = name.strip_prefix('d') {
        let (disk, part) = match rest.split_once('p') {
            Some((d, p)) => (d, Some(p)),
            None => (rest, None),
        };
        let disk = decimal(disk).ok_or_else(bad)?;
        let part = match part {
            Some(p) => decimal(p).ok_or_else(bad)?,
            None => 0,
        };
        if disk > XVD_MAX_DISK {
            return Err(format!(
                "'{name}': disk {disk} is out of range (0 to {XVD_MAX_DISK})"
            ));
        }
        if part > XVD_MAX_PART {
            return Err(format!(
                "'{name}': partition {part} is out of range (0 to {XVD_MAX_PART})"
            ));
        }
        return Ok(xvd_number(disk, part));
    }
    Err(bad())
}

fn xvd_number(disk: u32, part: u32) -> u32 {
    if disk <= 15 && part <= 15 {
        XVD_MAJOR << 8 | disk << 4 | part
    } else {
        EXTENDED | disk << 8 | part
    }
}

/// Decodes `rest` = drive letters plus an optional partition number: `a`..`z` are disks 0..25,
/// then `aa` is 26 (bijective base 26, as Linux names its disks).
fn letters_and_partition(
    name: &str,
    rest: &str,
    max_disk: u32,
    max_part: u32,
) -> Result<(u32, u32), String> {
    let split = rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len());
    let (letters, digits) = rest.split_at(split);
    if letters.is_empty() {
        return Err(format!(
            "'{name}' is not a virtual device name: a drive letter must follow the prefix"
        ));
    }
    let mut disk: u32 = 0;
    for c in letters.bytes() {
        disk = disk
            .checked_mul(26)
            .and_then(|d| d.checked_add(u32::from(c - b'a') + 1))
            .filter(|d| *d - 1 <= max_disk)
            .ok_or_else(|| format!("'{name}': the disk index is out of range (0 to {max_disk})"))?;
    }
    let disk = disk - 1;
    if digits.is_empty() {
        return Ok((disk, 0));
    }
    let part = decimal(digits).filter(|p| *p != 0).ok_or_else(|| {
        format!(
            "'{name}': '{digits}' is not a partition number (1 to {max_part}, no leading zeros)"
        )
    })?;
    if part > max_part {
        return Err(format!(
            "'{name}': partition {part} is out of range (1 to {max_part})"
        ));
    }
    Ok((disk, part))
}

/// A decimal number without sign or leading zeros.
fn decimal(s: &str) -> Option<u32> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xvd_disks_use_the_short_form_up_to_xvdp() {
        assert_eq!(vdev_number("xvda"), Ok(51712));
        assert_eq!(vdev_number("xvdb"), Ok(51728));
        for (i, c) in ('a'..='p').enumerate() {
            let want = (202 << 8) | (i as u32) << 4;
            assert_eq!(vdev_number(&format!("xvd{c}")), Ok(want), "xvd{c}");
        }
        assert_eq!(vdev_number("xvda1"), Ok(51713));
        assert_eq!(vdev_number("xvdb15"), Ok(51728 + 15));
    }

    #[test]
    fn xvdq_and_beyond_use_the_extended_form() {
        for (i, c) in ('q'..='z').enumerate() {
            let want = (1 << 28) | (16 + i as u32) << 8;
            assert_eq!(vdev_number(&format!("xvd{c}")), Ok(want), "xvd{c}");
        }
        assert_eq!(vdev_number("xvdaa"), Ok((1 << 28) | 26 << 8));
        assert_eq!(vdev_number("xvdab"), Ok((1 << 28) | 27 << 8));
        assert_eq!(vdev_number("xvdba"), Ok((1 << 28) | 52 << 8));
        // A partition above 15 needs the extended form even on the first disk.
        assert_eq!(vdev_number("xvda16"), Ok((1 << 28) | 16));
        assert_eq!(vdev_number("xvdtq37"), Ok((1 << 28) | 536 << 8 | 37));
    }

    #[test]
    fn ide_and_scsi_names() {
        assert_eq!(vdev_number("hda"), Ok(3 << 8));
        assert_eq!(vdev_number("hdb"), Ok(3 << 8 | 64));
        assert_eq!(vdev_number("hdc"), Ok(22 << 8));
        assert_eq!(vdev_number("hdd2"), Ok(22 << 8 | 64 | 2));
        assert_eq!(vdev_number("hda63"), Ok(3 << 8 | 63));
        assert_eq!(vdev_number("sda"), Ok(8 << 8));
        assert_eq!(vdev_number("sdb"), Ok(8 << 8 | 16));
        assert_eq!(vdev_number("sdb3"), Ok(8 << 8 | 16 | 3));
        assert_eq!(vdev_number("sdp15"), Ok(8 << 8 | 15 << 4 | 15));
    }

    #[test]
    fn d_p_names() {
        assert_eq!(vdev_number("d0p0"), Ok(51712));
        assert_eq!(vdev_number("d0"), Ok(51712));
        assert_eq!(vdev_number("d1p2"), Ok(51728 + 2));
        assert_eq!(vdev_number("d536p37"), Ok((1 << 28) | 536 << 8 | 37));
    }

    #[test]
    fn rejects_bad_names_and_limits() {
        for bad in [
            "",
            "xvd",
            "xvd1",
            "xvdA",
            "xvda0",
            "xvda01",
            "xvda256",
            "xvda1x",
            "hde",
            "hda64",
            "sdq",
            "sda16",
            "vda",
            "d",
            "dp1",
            "d01",
            "d1p",
            "d1p256",
            "d1048576",
            "xvdzzzzzz",
        ] {
            assert!(vdev_number(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            vdev_number("vda").unwrap_err(),
            "'vda' is not a virtual device name (such as xvda, xvdb1, hda, sda, d0p1)"
        );
        assert_eq!(
            vdev_number("sda16").unwrap_err(),
            "'sda16': partition 16 is out of range (1 to 15)"
        );
        assert_eq!(
            vdev_number("sdq").unwrap_err(),
            "'sdq': the disk index is out of range (0 to 15)"
        );
        assert_eq!(
            vdev_number("xvda01").unwrap_err(),
            "'xvda01': '01' is not a partition number (1 to 255, no leading zeros)"
        );
        assert_eq!(
            vdev_number("xvd").unwrap_err(),
            "'xvd' is not a virtual device name: a drive letter must follow the prefix"
        );
        assert!(vdev_number("xvdbgqcv").is_ok(), "the last extended disk");
        assert!(vdev_number("xvdbgqcw").is_err());
    }
}
