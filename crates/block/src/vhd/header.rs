//! The 1024-byte dynamic disk header of dynamic and differencing disks.

use super::locator::{Locator, LOCATOR_COUNT, LOCATOR_SIZE};
use super::util::{be32, be64, checksum, put32, put64, utf16_decode, utf16_encode};
use crate::{Error, Result};

/// Size of the dynamic header in bytes.
pub const HEADER_SIZE: usize = 1024;
const COOKIE: &[u8; 8] = b"cxsparse";
const CHECKSUM_OFF: usize = 36;
const PARENT_NAME_OFF: usize = 64;
const PARENT_NAME_LEN: usize = 512;
const LOCATORS_OFF: usize = 576;
/// Smallest block size accepted: one bitmap byte must cover whole sectors.
pub const MIN_BLOCK_SIZE: u32 = 512 * 8;
/// Largest block size accepted (keeps per-block buffers reasonable).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// Parsed dynamic disk header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynHeader {
    /// Next structure offset; all-ones.
    pub data_offset: u64,
    /// Absolute offset of the block allocation table.
    pub table_offset: u64,
    /// Header version, 0x00010000.
    pub version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Bytes of data per block (a power of two).
    pub block_size: u32,
    /// Parent's unique id (differencing disks).
    pub parent_uuid: [u8; 16],
    /// Parent's timestamp (differencing disks).
    pub parent_timestamp: u32,
    /// Parent's file name.
    pub parent_name: String,
    /// The eight parent locator entries.
    pub locators: [Locator; LOCATOR_COUNT],
}

impl DynHeader {
    /// Parses and validates a header: cookie, checksum, block size and table size.
    pub fn parse(b: &[u8]) -> Result<DynHeader> {
        if b.len() < HEADER_SIZE {
            return Err(Error::corrupt("dynamic header truncated"));
        }
        if &b[0..8] != COOKIE {
            return Err(Error::corrupt("dynamic header cookie is not \"cxsparse\""));
        }
        let stored = be32(b, CHECKSUM_OFF);
        let computed = checksum(&b[..HEADER_SIZE], CHECKSUM_OFF);
        if stored != computed {
            return Err(Error::corrupt(format!(
                "dynamic header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        Self::parse_unchecked(b)
    }

    /// Parses fields without checking cookie and checksum.
    pub fn parse_unchecked(b: &[u8]) -> Result<DynHeader> {
        if b.len() < HEADER_SIZE {
            return Err(Error::corrupt("dynamic header truncated"));
        }
        let block_size = be32(b, 32);
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::corrupt(format!(
                "dynamic header block size {block_size} is not a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
            )));
        }
        let table_offset = be64(b, 16);
        if !table_offset.is_multiple_of(512) {
            return Err(Error::corrupt(format!(
                "BAT offset {table_offset:#x} is not sector aligned"
            )));
        }
        let max_table_entries = be32(b, 28);
        let mut parent_uuid = [0u8; 16];
        parent_uuid.copy_from_slice(&b[40..56]);
        let parent_name =
            utf16_decode(&b[PARENT_NAME_OFF..PARENT_NAME_OFF + PARENT_NAME_LEN], true)
                .ok_or_else(|| Error::corrupt("parent unicode name is not valid UTF-16"))?;
        let mut locators = [Locator::default(); LOCATOR_COUNT];
        for (i, l) in locators.iter_mut().enumerate() {
            let o = LOCATORS_OFF + i * LOCATOR_SIZE;
            *l = Locator::parse(&b[o..o + LOCATOR_SIZE]);
        }
        Ok(DynHeader {
            data_offset: be64(b, 8),
            table_offset,
            version: be32(b, 24),
            max_table_entries,
            block_size,
            parent_uuid,
            parent_timestamp: be32(b, 56),
            parent_name,
            locators,
        })
    }

    /// Serialises with a fresh checksum.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(COOKIE);
        put64(&mut b, 8, self.data_offset);
        put64(&mut b, 16, self.table_offset);
        put32(&mut b, 24, self.version);
        put32(&mut b, 28, self.max_table_entries);
        put32(&mut b, 32, self.block_size);
        b[40..56].copy_from_slice(&self.parent_uuid);
        put32(&mut b, 56, self.parent_timestamp);
        let name = utf16_encode(&self.parent_name, true);
        let n = name.len().min(PARENT_NAME_LEN);
        b[PARENT_NAME_OFF..PARENT_NAME_OFF + n].copy_from_slice(&name[..n]);
        for (i, l) in self.locators.iter().enumerate() {
            let o = LOCATORS_OFF + i * LOCATOR_SIZE;
            l.write(&mut b[o..o + LOCATOR_SIZE]);
        }
        let c = checksum(&b, CHECKSUM_OFF);
        put32(&mut b, CHECKSUM_OFF, c);
        b
    }

    /// Bytes of the BAT on disk, padded to a sector.
    pub fn bat_bytes(&self) -> u64 {
        super::util::align_up(u64::from(self.max_table_entries) * 4, 512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let mut h = DynHeader {
            data_offset: u64::MAX,
            table_offset: 1536,
            version: 0x0001_0000,
            max_table_entries: 32,
            block_size: 1 << 21,
            parent_uuid: [3; 16],
            parent_timestamp: 99,
            parent_name: "base.vhd".into(),
            locators: [Locator::default(); LOCATOR_COUNT],
        };
        h.locators[0] = Locator {
            code: *b"W2ru",
            data_space: 512,
            data_len: 20,
            data_offset: 4096,
        };
        let b = h.to_bytes();
        assert_eq!(DynHeader::parse(&b).unwrap(), h);
        let mut bad = b;
        bad[200] ^= 0xff;
        assert!(DynHeader::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        h.block_size = 3000;
        assert!(DynHeader::parse(&h.to_bytes())
            .unwrap_err()
            .to_string()
            .contains("block size"));
    }
}
