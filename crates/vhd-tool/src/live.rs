//! A read-only view of a VHD that another process (a running domain) may be writing.
//!
//! `VhdImage` reads its BAT and sector bitmaps once; a writer's later allocations would stay
//! invisible. `LiveVhd` checks, before each read, the on-disk BAT entry of every block that
//! was unallocated in its view (4 bytes, from the page cache) and, for layers that track
//! sectors (differencing or encrypted), the on-disk bitmap of partly written blocks. If the
//! writer has published something new, the image is reopened (the BAT and chain are read
//! again) and the read goes to the fresh view.
//!
//! What a reader sees: the writer publishes BAT entries and bitmaps at its flushes, after the
//! data is durable, so newly allocated blocks appear once the domain has flushed them. Data
//! written in place into blocks that were already allocated is read as it is on disk at that
//! moment, so a read racing a write may see old, new, or (within a request) mixed data. Only
//! the top layer is watched: parents are read-only snapshots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use block::crypt::Key;
use block::vhd::{DiskType, OpenOptions, VhdImage, UNUSED};
use block::{DiskImage, Error, Result, SECTOR_SIZE};

/// How long to wait before retrying a reopen that failed (the writer may be mid-resize).
const RETRY: Duration = Duration::from_secs(1);

/// One opened generation of the image, with what the staleness check needs.
#[derive(Debug, Clone)]
struct View {
    img: Arc<VhdImage>,
    /// (BAT offset in the file, BAT entries, block size, sectors per block, tracks sectors)
    dynamic: Option<(u64, u32, u64, u32, bool)>,
}

impl View {
    fn new(img: VhdImage) -> View {
        let dynamic = img.header().map(|h| {
            let bs = u64::from(h.block_size);
            let tracks = img.disk_type() == DiskType::Differencing || img.encrypted();
            (
                h.table_offset,
                h.max_table_entries,
                bs,
                (bs / SECTOR_SIZE) as u32,
                tracks,
            )
        });
        View {
            img: Arc::new(img),
            dynamic,
        }
    }

    /// Whether the file holds data for [off, off+len) that this view does not know about.
    fn stale(&self, off: u64, len: u64) -> bool {
        let Some((table, entries, bs, sectors, tracks)) = self.dynamic else {
            return false;
        };
        if len == 0 {
            return false;
        }
        let store = self.img.storage();
        let last = ((off + len - 1) / bs).min(u64::from(entries).saturating_sub(1));
        for b in off / bs..=last {
            match self.img.block_sector(b) {
                None => {
                    let mut e = [0u8; 4];
                    if store.read_exact_at(&mut e, table + b * 4).is_ok()
                        && u32::from_be_bytes(e) != UNUSED
                    {
                        return true;
                    }
                }
                Some(sector) if tracks => {
                    let Ok(Some(bm)) = self.img.block_bitmap(b) else {
                        continue;
                    };
                    if bm.is_full() {
                        continue;
                    }
                    let mut disk = vec![0u8; sectors.div_ceil(8) as usize];
                    if store
                        .read_exact_at(&mut disk, u64::from(sector) * SECTOR_SIZE)
                        .is_ok()
                        && disk != bm.to_bytes(0)
                    {
                        return true;
                    }
                }
                Some(_) => {}
            }
        }
        false
    }
}

/// A read-only VHD (with its chain) that follows a concurrent writer's published blocks.
#[derive(Debug)]
pub struct LiveVhd {
    path: PathBuf,
    opts: OpenOptions,
    view: RwLock<View>,
    /// Held while reopening; the time of the last failed attempt.
    reopen: Mutex<Option<Instant>>,
}

impl LiveVhd {
    /// Opens `path` read-only (with `key` for an encrypted chain).
    pub fn open(path: &Path, key: Option<Key>) -> Result<LiveVhd> {
        let opts = OpenOptions::read_only().with_key(key);
        let img = VhdImage::open(path, &opts)?;
        Ok(LiveVhd {
            path: path.to_path_buf(),
            opts,
            view: RwLock::new(View::new(img)),
            reopen: Mutex::new(None),
        })
    }

    fn current(&self) -> View {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reopens the image unless another reader already did since `seen` was current.
    fn refresh(&self, seen: &Arc<VhdImage>) {
        let mut failed = self.reopen.lock().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&self.current().img, seen) {
            return;
        }
        if failed.is_some_and(|t| t.elapsed() < RETRY) {
            return;
        }
        match VhdImage::open(&self.path, &self.opts) {
            Ok(img) => {
                *self.view.write().unwrap_or_else(|e| e.into_inner()) = View::new(img);
                *failed = None;
            }
            // Expected while the writer is mid-update (a resize moving the BAT): the old
            // view keeps serving, and the next stale read retries after RETRY.
            Err(_) => *failed = Some(Instant::now()),
        }
    }
}

impl DiskImage for LiveVhd {
    fn size(&self) -> u64 {
        self.current().img.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut v = self.current();
        if v.stale(offset, buf.len() as u64) {
            self.refresh(&v.img);
            v = self.current();
        }
        v.img.read_at(buf, offset)
    }

    fn write_at(&self, _: &[u8], _: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn discard(&self, _: u64, _: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn resize(&self, _: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }

    fn read_only(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use block::vhd::{self, CreateOptions};

    const MIB: u64 = 1 << 20;

    fn read(l: &LiveVhd, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        l.read_at(&mut b, off).unwrap();
        b
    }

    #[test]
    fn blocks_written_after_open_become_visible_after_the_writers_flush() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("live.vhd");
        vhd::create(&p, &CreateOptions::dynamic(16 * MIB)).unwrap();
        let w = VhdImage::open(&p, &OpenOptions::read_write()).unwrap();
        w.write_at(&[1u8; 4096], 0).unwrap();
        w.flush().unwrap();
        let live = LiveVhd::open(&p, None).unwrap();
        assert_eq!(read(&live, 0, 4096), vec![1u8; 4096]);
        assert_eq!(read(&live, 5 * MIB, 4096), vec![0u8; 4096]);
        // In place in an allocated block: visible at once.
        w.write_at(&[2u8; 512], 512).unwrap();
        assert_eq!(read(&live, 512, 512), vec![2u8; 512]);
        // A new block: visible once the writer flushed its BAT.
        w.write_at(&[3u8; 4096], 5 * MIB).unwrap();
        w.flush().unwrap();
        assert_eq!(read(&live, 5 * MIB, 4096), vec![3u8; 4096]);
        assert!(live.write_at(&[0u8; 512], 0).is_err());
    }

    #[test]
    fn differencing_sectors_written_after_open_become_visible() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.vhd");
        vhd::create(&base, &CreateOptions::dynamic(8 * MIB)).unwrap();
        let b = VhdImage::open(&base, &OpenOptions::read_write()).unwrap();
        b.write_at(&vec![9u8; 2 * MIB as usize], 0).unwrap();
        b.flush().unwrap();
        drop(b);
        let child = d.path().join("child.vhd");
        vhd::create_child(&child, &base, None).unwrap();
        let w = VhdImage::open(&child, &OpenOptions::read_write()).unwrap();
        w.write_at(&[4u8; 512], 0).unwrap();
        w.flush().unwrap();
        let live = LiveVhd::open(&child, None).unwrap();
        assert_eq!(read(&live, 0, 1024), [[4u8; 512], [9u8; 512]].concat());
        // Another sector of the same (already allocated, partly present) block.
        w.write_at(&[5u8; 512], 512).unwrap();
        w.flush().unwrap();
        assert_eq!(read(&live, 0, 1024), [[4u8; 512], [5u8; 512]].concat());
    }
}
