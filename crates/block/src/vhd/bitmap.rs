//! Per-block sector bitmaps and their cache. Bit order is most-significant bit first: bit 7 of
//! byte 0 is the first sector of the block.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One block's bitmap, updated with atomics so writers to different sectors never block.
#[derive(Debug)]
pub struct BlockBitmap {
    bytes: Box<[AtomicU8]>,
    sectors: u32,
    full: AtomicBool,
}

impl BlockBitmap {
    /// Bitmap for `sectors` sectors from its on-disk bytes.
    pub fn from_bytes(b: &[u8], sectors: u32) -> Self {
        let n = (sectors as usize).div_ceil(8);
        let bytes: Vec<AtomicU8> = (0..n)
            .map(|i| AtomicU8::new(b.get(i).copied().unwrap_or(0)))
            .collect();
        let bm = BlockBitmap {
            bytes: bytes.into_boxed_slice(),
            sectors,
            full: AtomicBool::new(false),
        };
        bm.full
            .store(bm.count_range(0, sectors) == sectors, Ordering::Release);
        bm
    }

    /// A bitmap with every sector present (dynamic disks) or absent (differencing disks).
    pub fn filled(sectors: u32, set: bool) -> Self {
        let byte = if set { 0xff } else { 0 };
        Self::from_bytes(&vec![byte; (sectors as usize).div_ceil(8)], sectors)
    }

    /// Whether every sector is present (the fast path for reads).
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Whether sector `s` of the block is present.
    pub fn test(&self, s: u32) -> bool {
        let b = self.bytes[(s / 8) as usize].load(Ordering::Acquire);
        b & (0x80 >> (s % 8)) != 0
    }

    fn count_range(&self, first: u32, count: u32) -> u32 {
        (first..first + count).filter(|&s| self.test(s)).count() as u32
    }

    /// Marks `count` sectors from `first` present; returns whether anything changed.
    pub fn set_range(&self, first: u32, count: u32) -> bool {
        let mut changed = false;
        for s in first..first + count {
            let mask = 0x80u8 >> (s % 8);
            let old = self.bytes[(s / 8) as usize].fetch_or(mask, Ordering::AcqRel);
            changed |= old & mask == 0;
        }
        if changed && self.count_range(0, self.sectors) == self.sectors {
            self.full.store(true, Ordering::Release);
        }
        changed
    }

    /// Runs of equal presence within [first, first+count): (start, len, present).
    pub fn runs(&self, first: u32, count: u32) -> Vec<(u32, u32, bool)> {
        let mut out: Vec<(u32, u32, bool)> = Vec::new();
        for s in first..first + count {
            let p = self.test(s);
            match out.last_mut() {
                Some(last) if last.2 == p => last.1 += 1,
                _ => out.push((s, 1, p)),
            }
        }
        out
    }

    /// On-disk bytes, padded with zeros to `len`.
    pub fn to_bytes(&self, len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = self
            .bytes
            .iter()
            .map(|b| b.load(Ordering::Acquire))
            .collect();
        v.resize(len.max(v.len()), 0);
        v
    }

    /// Number of present sectors.
    pub fn count(&self) -> u32 {
        self.count_range(0, self.sectors)
    }
}

const SHARDS: usize = 64;

/// Cache of loaded bitmaps, sharded by block number so threads touching different blocks do not
/// contend; plus, per shard, the set of bitmaps changed since the last flush.
#[derive(Debug)]
pub struct BitmapCache {
    shards: Vec<Mutex<HashMap<u64, Arc<BlockBitmap>>>>,
    dirty: Vec<Mutex<HashSet<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make the image unusable: the data under these locks stays
    // consistent because every update is a single insert/remove.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for BitmapCache {
    fn default() -> Self {
        BitmapCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            dirty: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }
}

impl BitmapCache {
    fn shard(&self, block: u64) -> &Mutex<HashMap<u64, Arc<BlockBitmap>>> {
        &self.shards[(block % SHARDS as u64) as usize]
    }

    fn dirty_shard(&self, block: u64) -> &Mutex<HashSet<u64>> {
        &self.dirty[(block % SHARDS as u64) as usize]
    }

    /// Cached bitmap of `block`, if loaded.
    pub fn get(&self, block: u64) -> Option<Arc<BlockBitmap>> {
        lock(self.shard(block)).get(&block).cloned()
    }

    /// Inserts unless another thread got there first; returns the cached one.
    pub fn insert(&self, block: u64, bm: BlockBitmap) -> Arc<BlockBitmap> {
        lock(self.shard(block))
            .entry(block)
            .or_insert_with(|| Arc::new(bm))
            .clone()
    }

    /// Replaces the cached bitmap of `block` (after an allocation or discard).
    pub fn replace(&self, block: u64, bm: Option<BlockBitmap>) {
        let mut s = lock(self.shard(block));
        match bm {
            Some(bm) => {
                s.insert(block, Arc::new(bm));
            }
            None => {
                s.remove(&block);
                lock(self.dirty_shard(block)).remove(&block);
            }
        }
    }

    /// Records that `block`'s bitmap must be written at the next flush.
    pub fn mark_dirty(&self, block: u64) {
        lock(self.dirty_shard(block)).insert(block);
    }

    /// Takes the dirty set and copies each bitmap's bytes, as they are now.
    pub fn take_dirty(&self, len: usize) -> Vec<(u64, Vec<u8>)> {
        let blocks: Vec<u64> = self
            .dirty
            .iter()
            .flat_map(|d| lock(d).drain().collect::<Vec<_>>())
            .collect();
        blocks
            .into_iter()
            .filter_map(|b| self.get(b).map(|bm| (b, bm.to_bytes(len))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_order_is_msb_first() {
        let bm = BlockBitmap::from_bytes(&[0x80, 0x01], 16);
        assert!(bm.test(0));
        assert!(!bm.test(1));
        assert!(bm.test(15));
        assert_eq!(
            bm.runs(0, 16),
            vec![(0, 1, true), (1, 14, false), (15, 1, true)]
        );
    }

    #[test]
    fn set_range_tracks_full() {
        let bm = BlockBitmap::filled(16, false);
        assert!(bm.set_range(0, 8));
        assert!(!bm.set_range(2, 3));
        assert!(!bm.is_full());
        assert!(bm.set_range(8, 8));
        assert!(bm.is_full());
        assert_eq!(bm.to_bytes(4), vec![0xff, 0xff, 0, 0]);
    }

    #[test]
    fn dirty_snapshots() {
        let c = BitmapCache::default();
        c.insert(3, BlockBitmap::filled(8, true));
        c.mark_dirty(3);
        c.mark_dirty(4);
        let d = c.take_dirty(2);
        assert_eq!(d, vec![(3, vec![0xff, 0])]);
        assert!(c.take_dirty(2).is_empty());
    }
}
