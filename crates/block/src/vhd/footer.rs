//! The 512-byte hard disk footer, stored at the end of every VHD and copied at offset 0 of
//! dynamic and differencing disks.

use super::util::{be16, be32, be64, checksum, put16, put32, put64};
pub use crate::crypt::KeyTag;
use crate::{Error, Result};

/// Size of the footer in bytes.
pub const FOOTER_SIZE: usize = 512;
const COOKIE: &[u8; 8] = b"conectix";
/// Offset of the checksum field.
const CHECKSUM_OFF: usize = 64;
/// Where, inside the reserved area, Oxen keeps the encryption key check value.
const KEYTAG_OFF: usize = 128;
const KEYTAG_MAGIC: &[u8; 8] = b"OXENXTS1";
/// Creator application written by Oxen. blktap's tag, so QEMU trusts the current-size field
/// instead of rounding the size down to the CHS geometry.
pub const CREATOR_APP: [u8; 4] = *b"tap\0";

/// The three disk types of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskType {
    /// Flat data followed by a footer.
    Fixed,
    /// Sparse: blocks are allocated on first write.
    Dynamic,
    /// Sparse copy-on-write child of a parent image.
    Differencing,
}

impl DiskType {
    fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// Lower-case name used by the CLI.
    pub fn name(self) -> &'static str {
        match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        }
    }
}

/// Parsed hard disk footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Feature flags (bit 1 is always set; bit 0 marks a temporary disk).
    pub features: u32,
    /// Format version, 0x00010000.
    pub version: u32,
    /// Offset of the dynamic header, or all-ones for fixed disks.
    pub data_offset: u64,
    /// Creation time in VHD seconds.
    pub timestamp: u32,
    /// Four-character creator application.
    pub creator_app: [u8; 4],
    /// Creator version.
    pub creator_version: u32,
    /// Creator host OS code.
    pub creator_os: u32,
    /// Size at creation.
    pub original_size: u64,
    /// Current virtual size in bytes.
    pub current_size: u64,
    /// Cylinders, heads, sectors per track.
    pub geometry: (u16, u8, u8),
    /// Disk type.
    pub disk_type: DiskType,
    /// Stored checksum (recomputed when serialising).
    pub checksum: u32,
    /// Unique identifier of this image.
    pub uuid: [u8; 16],
    /// Saved-state flag.
    pub saved_state: u8,
    /// Hidden flag (used by vhd-util to mark snapshot parents; lives in the reserved area).
    pub hidden: u8,
    /// Encryption key check value (kept in the reserved bytes), if the image is encrypted.
    pub key_tag: Option<KeyTag>,
}

/// Offset of blktap's "hidden" byte, the first reserved byte after saved-state.
const HIDDEN_OFF: usize = 85;

impl Footer {
    /// Parses and validates a footer, checking cookie, checksum and fields.
    pub fn parse(b: &[u8]) -> Result<Footer> {
        if b.len() < FOOTER_SIZE {
            return Err(Error::corrupt("footer truncated"));
        }
        if &b[0..8] != COOKIE {
            return Err(Error::corrupt(
                "footer cookie is not \"conectix\" (not a VHD, or the footer is missing)",
            ));
        }
        let stored = be32(b, CHECKSUM_OFF);
        let computed = checksum(&b[..FOOTER_SIZE], CHECKSUM_OFF);
        if stored != computed {
            return Err(Error::corrupt(format!(
                "footer checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        Self::parse_unchecked(b)
    }

    /// Parses the fields without checking cookie and checksum (used by `repair` and `read`).
    pub fn parse_unchecked(b: &[u8]) -> Result<Footer> {
        if b.len() < FOOTER_SIZE {
            return Err(Error::corrupt("footer truncated"));
        }
        let disk_type = match be32(b, 60) {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            4 => DiskType::Differencing,
            t => {
                return Err(Error::corrupt(format!(
                    "footer disk type {t} is not 2, 3 or 4"
                )))
            }
        };
        let version = be32(b, 12);
        if version >> 16 != 1 {
            return Err(Error::Unsupported(format!(
                "footer format version {version:#x}"
            )));
        }
        let current_size = be64(b, 48);
        if !current_size.is_multiple_of(512) {
            return Err(Error::corrupt(format!(
                "footer current size {current_size} is not a multiple of 512"
            )));
        }
        if current_size > super::MAX_DISK_SIZE {
            return Err(Error::corrupt(format!(
                "footer current size {current_size} exceeds the VHD limit of 2040 GiB"
            )));
        }
        let data_offset = be64(b, 16);
        if disk_type == DiskType::Fixed && data_offset != u64::MAX {
            tracing::debug!("fixed disk with data offset {data_offset:#x}");
        }
        let mut creator_app = [0u8; 4];
        creator_app.copy_from_slice(&b[28..32]);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[68..84]);
        let key_tag = (&b[KEYTAG_OFF..KEYTAG_OFF + 8] == KEYTAG_MAGIC).then(|| {
            let mut salt = [0u8; 16];
            salt.copy_from_slice(&b[KEYTAG_OFF + 8..KEYTAG_OFF + 24]);
            let mut check = [0u8; 32];
            check.copy_from_slice(&b[KEYTAG_OFF + 24..KEYTAG_OFF + 56]);
            KeyTag { salt, check }
        });
        Ok(Footer {
            features: be32(b, 8),
            version,
            data_offset,
            timestamp: be32(b, 24),
            creator_app,
            creator_version: be32(b, 32),
            creator_os: be32(b, 36),
            original_size: be64(b, 40),
            current_size,
            geometry: (be16(b, 56), b[58], b[59]),
            disk_type,
            checksum: be32(b, CHECKSUM_OFF),
            uuid,
            saved_state: b[84],
            hidden: b[HIDDEN_OFF],
            key_tag,
        })
    }

    /// Serialises the footer with a freshly computed checksum.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(COOKIE);
        put32(&mut b, 8, self.features);
        put32(&mut b, 12, self.version);
        put64(&mut b, 16, self.data_offset);
        put32(&mut b, 24, self.timestamp);
        b[28..32].copy_from_slice(&self.creator_app);
        put32(&mut b, 32, self.creator_version);
        put32(&mut b, 36, self.creator_os);
        put64(&mut b, 40, self.original_size);
        put64(&mut b, 48, self.current_size);
        put16(&mut b, 56, self.geometry.0);
        b[58] = self.geometry.1;
        b[59] = self.geometry.2;
        put32(&mut b, 60, self.disk_type.code());
        b[68..84].copy_from_slice(&self.uuid);
        b[84] = self.saved_state;
        b[HIDDEN_OFF] = self.hidden;
        if let Some(t) = &self.key_tag {
            b[KEYTAG_OFF..KEYTAG_OFF + 8].copy_from_slice(KEYTAG_MAGIC);
            b[KEYTAG_OFF + 8..KEYTAG_OFF + 24].copy_from_slice(&t.salt);
            b[KEYTAG_OFF + 24..KEYTAG_OFF + 56].copy_from_slice(&t.check);
        }
        let c = checksum(&b, CHECKSUM_OFF);
        put32(&mut b, CHECKSUM_OFF, c);
        b
    }

    /// Creator application as text.
    pub fn creator(&self) -> String {
        String::from_utf8_lossy(&self.creator_app)
            .trim_end_matches(['\0', ' '])
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            features: 2,
            version: 0x0001_0000,
            data_offset: 512,
            timestamp: 1234,
            creator_app: CREATOR_APP,
            creator_version: 0x0001_0000,
            creator_os: 0,
            original_size: 1 << 20,
            current_size: 1 << 20,
            geometry: super::super::util::chs_for(1 << 20),
            disk_type: DiskType::Dynamic,
            checksum: 0,
            uuid: [7; 16],
            saved_state: 0,
            hidden: 0,
            key_tag: Some(KeyTag {
                salt: [1; 16],
                check: [2; 32],
            }),
        }
    }

    #[test]
    fn round_trip() {
        let f = sample();
        let b = f.to_bytes();
        let mut p = Footer::parse(&b).unwrap();
        p.checksum = 0;
        assert_eq!(p, f);
    }

    #[test]
    fn rejects_bad_checksum_and_cookie() {
        let mut b = sample().to_bytes();
        b[100] ^= 1;
        assert!(Footer::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let mut b = sample().to_bytes();
        b[0] = b'x';
        assert!(Footer::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("cookie"));
    }

    #[test]
    fn rejects_absurd_size() {
        let mut f = sample();
        f.current_size = 1 << 50;
        let b = f.to_bytes();
        assert!(Footer::parse(&b)
            .unwrap_err()
            .to_string()
            .contains("2040 GiB"));
    }
}
