//! An open VHD image: the data path (read, write, discard, flush) for all three disk types.
//!
//! Concurrency: the BAT is an array of atomics and bitmaps are per-block atomics, so reads and
//! writes to allocated blocks take no lock at all and go straight to pread/pwrite on the shared
//! file. Only block allocation (and flush/resize) serialise on the metadata mutex.
//!
//! Crash ordering (see docs/VHD.md): a new block is placed where the footer was; the footer is
//! first rewritten past the new block, then the block's bitmap is written, and only then is the
//! block published in the in-memory BAT. BAT entries and bitmap changes reach the file at flush,
//! after a data sync, and a second sync makes them durable. The on-disk BAT and bitmaps
//! therefore only ever point at data that was already durable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::bat::{Bat, UNUSED};
use super::bitmap::{BitmapCache, BlockBitmap};
use super::footer::{DiskType, Footer};
use super::header::DynHeader;
use crate::crypt::SectorCipher;
use crate::{DiskImage, Error, Result, Storage, SECTOR_SIZE};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Metadata changed under the allocation lock.
#[derive(Debug)]
pub(crate) struct Meta {
    /// Where the footer currently sits: the next block goes here.
    pub data_end: u64,
    /// BAT entries changed since the last flush.
    pub dirty_bat: BTreeSet<u64>,
    /// Dynamic header as on disk (table offset and size change on resize).
    pub header: DynHeader,
}

/// State of a dynamic or differencing disk.
#[derive(Debug)]
pub(crate) struct Dyn {
    pub block_size: u64,
    pub bitmap_bytes: u64,
    pub bat: Bat,
    pub bitmaps: BitmapCache,
    pub meta: Mutex<Meta>,
}

impl Dyn {
    fn sectors_per_block(&self) -> u32 {
        (self.block_size / SECTOR_SIZE) as u32
    }
}

/// An open VHD file (fixed, dynamic or differencing), with its parent chain.
#[derive(Debug)]
pub struct VhdImage {
    pub(crate) name: String,
    pub(crate) path: Option<PathBuf>,
    pub(crate) store: Arc<dyn Storage>,
    pub(crate) writable: bool,
    /// The disk type, fixed at open: kept outside the footer lock for the data path.
    pub(crate) kind: DiskType,
    pub(crate) footer: Mutex<Footer>,
    pub(crate) size: AtomicU64,
    pub(crate) dynamic: Option<Dyn>,
    pub(crate) parent: Option<Arc<VhdImage>>,
    pub(crate) cipher: Option<SectorCipher>,
}

fn is_zero(b: &[u8]) -> bool {
    // Compare 16 bytes at a time: this check runs on every write to an unallocated block.
    let (pre, mid, post) = {
        // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets the aligned middle.
        unsafe { b.align_to::<u128>() }
    };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

impl VhdImage {
    /// Display name (the path) used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A copy of the footer.
    pub fn footer(&self) -> Footer {
        lock(&self.footer).clone()
    }

    /// A copy of the dynamic header (dynamic and differencing disks).
    pub fn header(&self) -> Option<DynHeader> {
        self.dynamic.as_ref().map(|d| lock(&d.meta).header.clone())
    }

    /// The disk type.
    pub fn disk_type(&self) -> DiskType {
        self.kind
    }

    /// The parent image of a differencing disk.
    pub fn parent(&self) -> Option<&Arc<VhdImage>> {
        self.parent.as_ref()
    }

    /// Block size of a dynamic or differencing disk.
    pub fn block_size(&self) -> Option<u64> {
        self.dynamic.as_ref().map(|d| d.block_size)
    }

    /// Whether data is encrypted.
    pub fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The underlying storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.store
    }

    /// Number of BAT entries.
    pub fn bat_entries(&self) -> u32 {
        self.dynamic
            .as_ref()
            .map_or(0, |d| lock(&d.meta).header.max_table_entries)
    }

    /// Sector offset of block `b`, or `None` if it is not allocated here.
    pub fn block_sector(&self, b: u64) -> Option<u32> {
        let d = self.dynamic.as_ref()?;
        let e = d.bat.get(b);
        (e != UNUSED).then_some(e)
    }

    /// (block, sector) of all allocated blocks.
    pub fn allocated_blocks(&self) -> Vec<(u64, u32)> {
        match &self.dynamic {
            Some(d) => d.bat.allocated(lock(&d.meta).header.max_table_entries),
            None => Vec::new(),
        }
    }

    /// The sector bitmap of allocated block `b` (None for fixed disks or unallocated blocks).
    pub fn block_bitmap(&self, b: u64) -> Result<Option<Arc<BlockBitmap>>> {
        match &self.dynamic {
            Some(d) if d.bat.get(b) != UNUSED => Ok(Some(self.bitmap(d, b)?)),
            _ => Ok(None),
        }
    }

    /// Where the data area ends (the footer's offset).
    pub fn data_end(&self) -> Result<u64> {
        match &self.dynamic {
            Some(d) => Ok(lock(&d.meta).data_end),
            None => Ok(self.size.load(Ordering::Acquire)),
        }
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        if !offset.is_multiple_of(SECTOR_SIZE) || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(Error::Unaligned { offset, len });
        }
        let size = self.size.load(Ordering::Acquire);
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::OutOfRange { offset, len, size });
        }
        Ok(())
    }

    fn io_err(&self, what: &str, offset: u64, e: std::io::Error) -> Error {
        Error::io(format!("{what} {} at byte {offset}", self.name), e)
    }

    fn pread(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.store.read_exact_at(buf, off).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!(
                    "{}: data at byte {off} (+{}) is past the end of the file (truncated?)",
                    self.name,
                    buf.len()
                ))
            } else {
                self.io_err("reading", off, e)
            }
        })
    }

    fn pwrite(&self, buf: &[u8], off: u64) -> Result<()> {
        self.store
            .write_all_at(buf, off)
            .map_err(|e| self.io_err("writing", off, e))
    }

    /// Reads this layer's stored bytes and decrypts them.
    fn read_stored(&self, buf: &mut [u8], file_off: u64, vsector: u64) -> Result<()> {
        self.pread(buf, file_off)?;
        if let Some(c) = &self.cipher {
            c.decrypt(buf, vsector);
        }
        Ok(())
    }

    /// Encrypts (if needed) and writes to this layer.
    fn write_stored(&self, buf: &[u8], file_off: u64, vsector: u64) -> Result<()> {
        match &self.cipher {
            Some(c) => {
                let mut tmp = buf.to_vec();
                c.encrypt(&mut tmp, vsector);
                self.pwrite(&tmp, file_off)
            }
            None => self.pwrite(buf, file_off),
        }
    }

    /// Reads what lies below this layer: the parent's data, or zeros.
    fn read_below(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        match &self.parent {
            Some(p) => {
                let psize = p.size.load(Ordering::Acquire);
                let avail = psize.saturating_sub(offset).min(buf.len() as u64) as usize;
                if avail > 0 {
                    p.read_virtual(&mut buf[..avail], offset)?;
                }
                buf[avail..].fill(0);
                Ok(())
            }
            None => {
                buf.fill(0);
                Ok(())
            }
        }
    }

    /// Bitmap of allocated block `b`, from the cache or the file.
    fn bitmap(&self, d: &Dyn, b: u64) -> Result<Arc<BlockBitmap>> {
        if let Some(bm) = d.bitmaps.get(b) {
            return Ok(bm);
        }
        let e = d.bat.get(b);
        let mut bytes = vec![0u8; d.bitmap_bytes as usize];
        self.pread(&mut bytes, u64::from(e) * SECTOR_SIZE)?;
        Ok(d.bitmaps
            .insert(b, BlockBitmap::from_bytes(&bytes, d.sectors_per_block())))
    }

    /// Splits [offset, offset+len) at block boundaries: (block, offset in block, buffer range).
    fn chunks(d: &Dyn, offset: u64, len: usize) -> impl Iterator<Item = (u64, u64, usize, usize)> {
        let bs = d.block_size;
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= len {
                return None;
            }
            let v = offset + pos as u64;
            let b = v / bs;
            let inb = v % bs;
            let n = ((bs - inb) as usize).min(len - pos);
            let r = (b, inb, pos, pos + n);
            pos += n;
            Some(r)
        })
    }

    /// Reads without range checks against this image's size (used by children, whose size may
    /// exceed ours).
    pub(crate) fn read_virtual(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let Some(d) = &self.dynamic else {
            return self.read_stored(buf, offset, offset / SECTOR_SIZE);
        };
        for (b, inb, s, e) in Self::chunks(d, offset, buf.len()) {
            let chunk = &mut buf[s..e];
            let voff = offset + s as u64;
            let ent = d.bat.get(b);
            if ent == UNUSED {
                self.read_below(chunk, voff)?;
                continue;
            }
            let data_off = u64::from(ent) * SECTOR_SIZE + d.bitmap_bytes;
            let bm = self.bitmap(d, b)?;
            if bm.is_full() {
                self.read_stored(chunk, data_off + inb, voff / SECTOR_SIZE)?;
                continue;
            }
            let first = (inb / SECTOR_SIZE) as u32;
            let count = (chunk.len() as u64 / SECTOR_SIZE) as u32;
            for (rs, rn, present) in bm.runs(first, count) {
                let a = ((rs - first) as u64 * SECTOR_SIZE) as usize;
                let z = a + (rn as u64 * SECTOR_SIZE) as usize;
                let sub_v = voff + a as u64;
                if present {
                    let at = data_off + u64::from(rs) * SECTOR_SIZE;
                    self.read_stored(&mut chunk[a..z], at, sub_v / SECTOR_SIZE)?;
                } else {
                    self.read_below(&mut chunk[a..z], sub_v)?;
                }
            }
        }
        Ok(())
    }

    /// Allocates block `b` at the end of the file and returns its sector offset.
    fn allocate(&self, d: &Dyn, b: u64) -> Result<u32> {
        let mut m = lock(&d.meta);
        let cur = d.bat.get(b);
        if cur != UNUSED {
            return Ok(cur);
        }
        if b >= u64::from(m.header.max_table_entries) {
            return Err(Error::InvalidArgument(format!(
                "block {b} is beyond the BAT of {} entries",
                m.header.max_table_entries
            )));
        }
        let blk = m.data_end;
        let sector = u32::try_from(blk / SECTOR_SIZE)
            .ok()
            .filter(|s| *s != UNUSED)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{}: file offset {blk} is beyond what a VHD BAT can address",
                    self.name
                ))
            })?;
        let new_end = blk + d.bitmap_bytes + d.block_size;
        // 1. The footer moves past the new block first, so the file always ends in a footer.
        let footer = lock(&self.footer).to_bytes();
        self.pwrite(&footer, new_end)?;
        // 2. The bitmap overwrites the old footer. Dynamic disks mark every sector present (the
        //    data area reads zeros, as the file was extended); differencing disks start empty so
        //    reads fall through to the parent.
        //    A dynamic disk's full bitmap is safe to persist before any data: its unwritten
        //    sectors read as zeros, exactly what the unallocated block read.
        // Encrypted layers track sectors too: the zero bytes of a fresh block are not
        // encrypted zeros.
        let track = self.parent_semantics() || self.cipher.is_some();
        let bm = BlockBitmap::filled(d.sectors_per_block(), !track);
        self.pwrite(&bm.to_bytes(d.bitmap_bytes as usize), blk)?;
        m.data_end = new_end;
        d.bitmaps.replace(b, Some(bm));
        // 3. Publish in memory; the on-disk BAT entry follows at the next flush.
        d.bat.set(b, sector)?;
        m.dirty_bat.insert(b);
        Ok(sector)
    }

    fn parent_semantics(&self) -> bool {
        self.parent.is_some() || self.kind == DiskType::Differencing
    }

    fn write_dyn(&self, d: &Dyn, buf: &[u8], offset: u64) -> Result<()> {
        let diff = self.parent_semantics();
        for (b, inb, s, e) in Self::chunks(d, offset, buf.len()) {
            let chunk = &buf[s..e];
            let voff = offset + s as u64;
            let mut ent = d.bat.get(b);
            if ent == UNUSED {
                // Zero-detection: an unallocated block of a disk without parent already reads
                // as zeros, so a zero write needs no space.
                if !diff && is_zero(chunk) {
                    continue;
                }
                ent = self.allocate(d, b)?;
            }
            let data_off = u64::from(ent) * SECTOR_SIZE + d.bitmap_bytes;
            self.write_stored(chunk, data_off + inb, voff / SECTOR_SIZE)?;
            let bm = self.bitmap(d, b)?;
            if !bm.is_full() {
                let first = (inb / SECTOR_SIZE) as u32;
                let count = (chunk.len() as u64 / SECTOR_SIZE) as u32;
                // The bit is set only after the data write returned, so any bit that a flush
                // persists describes data written before that flush's first sync.
                if bm.set_range(first, count) {
                    d.bitmaps.mark_dirty(b);
                }
            }
        }
        Ok(())
    }

    fn discard_dyn(&self, d: &Dyn, offset: u64, len: u64) -> Result<()> {
        let diff = self.parent_semantics();
        let zeros = vec![0u8; d.block_size.min(len) as usize];
        for (b, _, s, e) in Self::chunks(d, offset, len as usize) {
            let n = (e - s) as u64;
            let voff = offset + s as u64;
            let ent = d.bat.get(b);
            if !diff {
                if ent == UNUSED {
                    continue;
                }
                if n == d.block_size {
                    // Whole block: unlink it, then give its space back to the host. The region
                    // is never reused (allocation only appends), so a stale on-disk BAT entry
                    // can only ever see zeros.
                    {
                        let mut m = lock(&d.meta);
                        d.bat.set(b, UNUSED)?;
                        m.dirty_bat.insert(b);
                        d.bitmaps.replace(b, None);
                    }
                    let at = u64::from(ent) * SECTOR_SIZE;
                    self.store
                        .punch_hole(at, d.bitmap_bytes + d.block_size)
                        .map_err(|e| self.io_err("punching a hole in", at, e))?;
                    continue;
                }
                self.write_dyn(d, &zeros[..n as usize], voff)?;
                continue;
            }
            // Differencing: the parent shows through unallocated sectors, so zeros must be
            // written, unless what shows through is already zero.
            if ent == UNUSED {
                let mut below = vec![0u8; n as usize];
                self.read_below(&mut below, voff)?;
                if is_zero(&below) {
                    continue;
                }
            }
            self.write_dyn(d, &zeros[..n as usize], voff)?;
        }
        Ok(())
    }

    /// Persists dirty bitmaps and BAT entries with the ordering described in the module docs.
    pub(crate) fn flush_inner(&self) -> Result<()> {
        self.flush_meta(true)
    }

    /// Writes dirty bitmaps and BAT entries; with `durable`, between two syncs.
    fn flush_meta(&self, durable: bool) -> Result<()> {
        let sync = |what: &str| {
            if !durable {
                return Ok(());
            }
            self.store
                .sync()
                .map_err(|e| Error::io(format!("syncing {} ({what})", self.name), e))
        };
        let Some(d) = &self.dynamic else {
            return sync("data");
        };
        let bitmaps = d.bitmaps.take_dirty(d.bitmap_bytes as usize);
        let (bat_writes, table_offset) = {
            let mut m = lock(&d.meta);
            let dirty = std::mem::take(&mut m.dirty_bat);
            let sectors: BTreeSet<u64> = dirty.iter().map(|b| b / 128).collect();
            let entries = m.header.max_table_entries;
            let w: Vec<(u64, [u8; 512])> = sectors
                .into_iter()
                .map(|s| (s, d.bat.sector_bytes(s, entries)))
                .collect();
            (w, m.header.table_offset)
        };
        sync("data")?;
        if bitmaps.is_empty() && bat_writes.is_empty() {
            return Ok(());
        }
        for (b, bytes) in &bitmaps {
            let e = d.bat.get(*b);
            if e != UNUSED {
                self.pwrite(bytes, u64::from(e) * SECTOR_SIZE)?;
            }
        }
        for (s, bytes) in &bat_writes {
            self.pwrite(bytes, table_offset + s * 512)?;
        }
        sync("metadata")
    }

    /// Rewrites both footer copies, the one at `end` first: that is the one readers trust.
    pub(crate) fn write_footer_at(&self, f: &Footer, end: u64) -> Result<()> {
        let bytes = f.to_bytes();
        self.pwrite(&bytes, end)?;
        if self.dynamic.is_some() {
            self.pwrite(&bytes, 0)?;
        }
        Ok(())
    }

    /// Changes the footer (lock order: metadata, then footer) and makes it durable.
    pub(crate) fn update_footer(&self, change: impl FnOnce(&mut Footer)) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        let meta = self.dynamic.as_ref().map(|d| lock(&d.meta));
        let mut f = lock(&self.footer);
        change(&mut f);
        let end = meta.as_ref().map_or(f.current_size, |m| m.data_end);
        self.write_footer_at(&f, end)?;
        self.store
            .sync()
            .map_err(|e| Error::io(format!("syncing {}", self.name), e))
    }

    /// Sets the hidden flag (vhd-util's marker for snapshot parents).
    pub fn set_hidden(&self, hidden: bool) -> Result<()> {
        self.update_footer(|f| f.hidden = u8::from(hidden))
    }
}

impl DiskImage for VhdImage {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.read_virtual(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.check_range(offset, buf.len() as u64)?;
        match &self.dynamic {
            Some(d) => self.write_dyn(d, buf, offset),
            None => self.write_stored(buf, offset, offset / SECTOR_SIZE),
        }
    }

    fn flush(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.flush_inner()
    }

    fn flush_unsynced(&self) -> Result<()> {
        if !self.writable {
            return Ok(());
        }
        self.flush_meta(false)
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.check_range(offset, len)?;
        match &self.dynamic {
            Some(d) => self.discard_dyn(d, offset, len),
            None if self.cipher.is_none() => self
                .store
                .punch_hole(offset, len)
                .map_err(|e| self.io_err("punching a hole in", offset, e)),
            None => {
                // Encrypted zeros are not zero bytes: write them.
                let zeros = vec![0u8; len.min(1 << 20) as usize];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(zeros.len() as u64);
                    self.write_stored(&zeros[..n as usize], offset + done, (offset + done) / 512)?;
                    done += n;
                }
                Ok(())
            }
        }
    }

    fn resize(&self, new_size: u64) -> Result<()> {
        super::resize::resize(self, new_size)
    }

    fn read_only(&self) -> bool {
        !self.writable
    }
}
