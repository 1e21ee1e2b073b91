//! The block allocation table, held in memory as atomics so readers never take a lock.

use std::sync::atomic::{AtomicU32, Ordering};

use super::util::be32;
use crate::{Error, Result};

/// BAT value of a block that has no data in this image.
pub const UNUSED: u32 = u32::MAX;

/// In-memory BAT. Entry `i` holds the sector offset of block `i`, or [`UNUSED`].
#[derive(Debug)]
pub struct Bat {
    entries: Box<[AtomicU32]>,
}

impl Bat {
    /// Builds a table from its on-disk bytes, with room for `capacity` entries so an online
    /// resize can grow it without reallocating under readers.
    pub fn from_bytes(bytes: &[u8], entries: u32, capacity: usize) -> Bat {
        let cap = capacity.max(entries as usize);
        let v: Vec<AtomicU32> = (0..cap)
            .map(|i| {
                if i < entries as usize && i * 4 + 4 <= bytes.len() {
                    AtomicU32::new(be32(bytes, i * 4))
                } else {
                    AtomicU32::new(UNUSED)
                }
            })
            .collect();
        Bat {
            entries: v.into_boxed_slice(),
        }
    }

    /// Number of slots available in memory.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Entry of block `i` ([`UNUSED`] if outside the table).
    pub fn get(&self, i: u64) -> u32 {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.entries.get(i))
            .map_or(UNUSED, |e| e.load(Ordering::Acquire))
    }

    /// Sets entry `i`; the caller holds the allocation lock.
    pub fn set(&self, i: u64, v: u32) -> Result<()> {
        let e = usize::try_from(i)
            .ok()
            .and_then(|i| self.entries.get(i))
            .ok_or_else(|| Error::InvalidArgument(format!("block {i} is outside the BAT")))?;
        e.store(v, Ordering::Release);
        Ok(())
    }

    /// The on-disk bytes of BAT sector `sector` (128 entries), padding with [`UNUSED`] past
    /// `entries`.
    pub fn sector_bytes(&self, sector: u64, entries: u32) -> [u8; 512] {
        let mut b = [0xffu8; 512];
        for k in 0..128u64 {
            let i = sector * 128 + k;
            if i < u64::from(entries) {
                b[k as usize * 4..k as usize * 4 + 4].copy_from_slice(&self.get(i).to_be_bytes());
            }
        }
        b
    }

    /// All on-disk bytes of a table of `entries` entries, padded to a sector.
    pub fn to_bytes(&self, entries: u32) -> Vec<u8> {
        let sectors = u64::from(entries).div_ceil(128);
        (0..sectors)
            .flat_map(|s| self.sector_bytes(s, entries))
            .collect()
    }

    /// (block, sector) of every allocated entry among the first `entries`.
    pub fn allocated(&self, entries: u32) -> Vec<(u64, u32)> {
        (0..u64::from(entries))
            .map(|i| (i, self.get(i)))
            .filter(|(_, e)| *e != UNUSED)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let mut bytes = vec![0xffu8; 512];
        bytes[4..8].copy_from_slice(&7u32.to_be_bytes());
        let bat = Bat::from_bytes(&bytes, 3, 10);
        assert_eq!(bat.capacity(), 10);
        assert_eq!(bat.get(1), 7);
        assert_eq!(bat.get(0), UNUSED);
        assert_eq!(bat.get(99), UNUSED);
        bat.set(2, 9).unwrap();
        let out = bat.to_bytes(3);
        assert_eq!(out.len(), 512);
        assert_eq!(&out[8..12], &9u32.to_be_bytes());
        assert_eq!(bat.allocated(3), vec![(1, 7), (2, 9)]);
        assert!(bat.set(10, 1).is_err());
    }
}
