//! Whole-image operations: allocation map of a chain, coalesce into the parent, and copying
//! between images (the engine of `convert`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::footer::DiskType;
use super::image::VhdImage;
use super::open::OpenOptions;
use crate::crypt::Key;
use crate::{DiskImage, Error, Result, SECTOR_SIZE};

/// A run of the virtual disk and the chain layer that holds it (0 = the image itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// Virtual byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Layer index in the chain, or `None` if no layer holds data (reads as zeros).
    pub layer: Option<usize>,
}

/// The chain from `img` down to its base.
pub fn chain(img: &VhdImage) -> Vec<&VhdImage> {
    let mut v = vec![img];
    while let Some(p) = v.last().and_then(|i| i.parent()) {
        v.push(p);
    }
    v
}

/// Fills `owner[i]` (sector `first + i`) with `layer` where the layer holds data and no upper
/// layer claimed it.
fn claim(img: &VhdImage, layer: usize, first: u64, owner: &mut [Option<usize>]) -> Result<()> {
    let count = owner.len() as u64;
    let size_sectors = img.size() / SECTOR_SIZE;
    let Some(bs) = img.block_size() else {
        for (i, o) in owner.iter_mut().enumerate() {
            if o.is_none() && first + (i as u64) < size_sectors {
                *o = Some(layer);
            }
        }
        return Ok(());
    };
    let spb = bs / SECTOR_SIZE;
    let mut s = first;
    while s < first + count {
        let b = s / spb;
        let in_b = s % spb;
        let n = (spb - in_b).min(first + count - s);
        if let Some(bm) = img.block_bitmap(b)? {
            for k in 0..n {
                let idx = (s - first + k) as usize;
                if owner[idx].is_none() && (bm.is_full() || bm.test((in_b + k) as u32)) {
                    owner[idx] = Some(layer);
                }
            }
        }
        s += n;
    }
    Ok(())
}

/// Whether `img` may hold data in [off, off+n): fixed disks always do, sparse ones if a block
/// covering the range is allocated.
fn may_hold(img: &VhdImage, off: u64, n: u64) -> bool {
    match img.block_size() {
        None => off < img.size(),
        Some(bs) => (off / bs..=(off + n - 1) / bs).any(|b| img.block_sector(b).is_some()),
    }
}

/// Which layer of the chain holds each part of the disk, as merged extents.
pub fn map(img: &VhdImage) -> Result<Vec<Extent>> {
    let layers = chain(img);
    let size = img.size();
    let step = img.block_size().unwrap_or(2 << 20);
    let mut out: Vec<Extent> = Vec::new();
    let mut off = 0;
    while off < size {
        let n = step.min(size - off);
        if !layers.iter().any(|l| may_hold(l, off, n)) {
            // Nothing anywhere in the chain: no per-sector work (sparse disks are mostly this).
            match out.last_mut() {
                Some(e) if e.layer.is_none() && e.offset + e.len == off => e.len += n,
                _ => out.push(Extent {
                    offset: off,
                    len: n,
                    layer: None,
                }),
            }
            off += n;
            continue;
        }
        let mut owner = vec![None; (n / SECTOR_SIZE) as usize];
        for (li, l) in layers.iter().enumerate() {
            if owner.iter().all(Option::is_some) {
                break;
            }
            claim(l, li, off / SECTOR_SIZE, &mut owner)?;
        }
        for (i, o) in owner.into_iter().enumerate() {
            let at = off + i as u64 * SECTOR_SIZE;
            match out.last_mut() {
                Some(e) if e.layer == o && e.offset + e.len == at => e.len += SECTOR_SIZE,
                _ => out.push(Extent {
                    offset: at,
                    len: SECTOR_SIZE,
                    layer: o,
                }),
            }
        }
        off += n;
    }
    Ok(out)
}

/// Progress callback: (bytes done, bytes total).
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// Merges a differencing disk's data into its parent (vhd-util `coalesce`). The parent is
/// changed in place; other children of that parent become invalid, as with vhd-util.
pub fn coalesce(
    child: &std::path::Path,
    key: Option<&Key>,
    progress: Progress<'_>,
) -> Result<PathBuf> {
    let opts = OpenOptions::read_only().with_key(key.cloned());
    let c = VhdImage::open(child, &opts)?;
    if c.disk_type() != DiskType::Differencing {
        return Err(Error::InvalidArgument(format!(
            "{} is not a differencing disk",
            child.display()
        )));
    }
    let ppath = c
        .parent()
        .and_then(|p| p.path())
        .ok_or_else(|| Error::InvalidArgument("parent has no path".into()))?
        .to_path_buf();
    let parent = VhdImage::open(&ppath, &OpenOptions::read_write().with_key(key.cloned()))?;
    if parent.size() < c.size() {
        parent.resize(c.size())?;
    }
    let bs = c.block_size().unwrap_or(2 << 20);
    let blocks = c.allocated_blocks();
    let total = blocks.len() as u64 * bs;
    let mut buf = vec![0u8; bs as usize];
    for (i, (b, _)) in blocks.iter().enumerate() {
        let Some(bm) = c.block_bitmap(*b)? else {
            continue;
        };
        let base = b * bs;
        let spb = (bs / SECTOR_SIZE) as u32;
        for (start, n, present) in bm.runs(0, spb) {
            let off = base + u64::from(start) * SECTOR_SIZE;
            if !present || off >= c.size() {
                continue;
            }
            let len = (u64::from(n) * SECTOR_SIZE).min(c.size() - off) as usize;
            c.read_at(&mut buf[..len], off)?;
            parent.write_at(&buf[..len], off)?;
        }
        progress((i as u64 + 1) * bs, total);
    }
    parent.flush()?;
    Ok(ppath)
}

/// Copies `extents` (byte ranges holding data; everything else is zero) from `src` to `dst`,
/// which must be freshly created (reads as zeros); `sync` flushes it at the end (without it
/// the data is in the host's page cache, as `qemu-img convert` leaves it). Zero chunks are
/// skipped, so they stay
/// unallocated in sparse destinations. Chunks are copied by a few threads at once: the engine
/// takes no global lock, so writes into different blocks proceed in parallel.
pub fn copy_extents(
    src: &dyn DiskImage,
    dst: &dyn DiskImage,
    extents: &[(u64, u64)],
    sync: bool,
    progress: Progress<'_>,
) -> Result<()> {
    const CHUNK: u64 = 2 << 20;
    let total: u64 = extents.iter().map(|e| e.1).sum();
    // Chunks aligned to CHUNK, so each maps onto one 2 MiB VHD block.
    let mut chunks: Vec<(u64, u64)> = Vec::new();
    for &(off, len) in extents {
        let mut pos = off;
        while pos < off + len {
            let n = (CHUNK - pos % CHUNK).min(off + len - pos);
            chunks.push((pos, n));
            pos += n;
        }
    }
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    // I/O-bound: more workers than cores keeps reads in flight while another thread writes.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let worker = |report: Option<Progress<'_>>| -> Result<()> {
        let mut buf = vec![0u8; CHUNK as usize];
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&(pos, n)) = chunks.get(i) else {
                return Ok(());
            };
            let b = &mut buf[..n as usize];
            src.read_at(b, pos)?;
            if b.iter().any(|&x| x != 0) {
                dst.write_at(b, pos)?;
            }
            let d = done.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(p) = report {
                p(d, total);
            }
        }
    };
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(|| worker(None))).collect();
        // The calling thread copies too, and is the one that reports progress.
        let mine = worker(Some(progress));
        for h in handles {
            h.join()
                .map_err(|_| Error::InvalidArgument("copy worker panicked".into()))??;
        }
        mine
    })?;
    progress(total, total);
    if sync {
        dst.flush()
    } else {
        // Metadata (BAT, bitmaps) must still reach the file, just without waiting for the disk.
        dst.flush_unsynced()
    }
}

/// Byte ranges of `img` (whole chain) that may hold data, sector-aligned and merged.
pub fn data_extents(img: &VhdImage) -> Result<Vec<(u64, u64)>> {
    Ok(map(img)?
        .into_iter()
        .filter(|e| e.layer.is_some())
        .map(|e| (e.offset, e.len))
        .collect())
}
