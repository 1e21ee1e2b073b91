//! The unpacked-kernel cache: what unpacking a bzImage's payload put in guest memory (the
//! vmlinux's non-zero pages and its entry point), kept on disk so that the next boot of the same
//! bzImage reads it straight into guest memory instead of decompressing again.
//!
//! Key: a 64-bit SipHash of the bzImage's whole contents plus its length. Hashing costs one pass
//! over the ~12 MB bzImage (a few ms; unpacking it costs ~30x that), and unlike a key of size,
//! mtime and inode it cannot be fooled by a kernel rewritten in place within the file system's
//! timestamp granularity or copied with its old mtime.
//!
//! An entry (`<key>.oxk`) is `MAGIC`, the data of every extent in order, the extent index
//! (`gpa`, `len` pairs), and a trailer: entry point, kernel start and end, extent count, data
//! length, CRC-32 of the data, CRC-32 of index and trailer, `END_MAGIC`. Entries are written to
//! a temporary file and renamed into place; a truncated or corrupt entry fails its length or
//! CRC checks and is ignored, unpacked again and rewritten. Only [`KEEP`] entries are kept, the
//! least recently used go first.

use std::fs::File;
use std::hash::Hasher;
use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::elf::Image;
use crate::memory::GuestRam;

/// Entries kept (one per recently booted kernel).
pub const KEEP: usize = 4;
const MAGIC: &[u8; 8] = b"OXENKRN1";
const END_MAGIC: &[u8; 8] = b"OXENKEND";
/// entry, start, end, count, data_len (u64 each), data_crc, meta_crc (u32 each), END_MAGIC.
const TRAILER_LEN: u64 = 56;
const EXTENT_LEN: u64 = 16;
/// More extents than a kernel has (Debian's has 38): refuse instead of allocating for garbage.
const MAX_EXTENTS: u64 = 1 << 16;
const SUFFIX: &str = "oxk";
/// Bytes read and checked at a time on a hit.
const CHUNK: u64 = 1 << 20;
/// A temporary file this old is left over from a crashed writer.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A cache directory.
#[derive(Debug, Clone)]
pub struct KernelCache {
    dir: PathBuf,
}

/// Which entry a bzImage has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key of the bzImage with contents `image`.
    pub fn of(image: &[u8]) -> Key {
        // DefaultHasher::new() has fixed keys, so the hash is stable for a given build; a
        // toolchain that changes it only costs misses.
        let mut h = std::hash::DefaultHasher::new();
        h.write(image);
        Key(format!("{:016x}-{:x}", h.finish(), image.len()))
    }
}

fn env_dir(var: &str) -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os(var)?);
    p.is_absolute().then_some(p)
}

fn crc_of(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// Runs `f` on guest bytes `gpa..gpa+len`, which must lie in one region.
fn with_guest_bytes<R>(
    ram: &GuestRam,
    gpa: u64,
    len: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, String> {
    let slice = ram
        .mem
        .get_slice(GuestAddress(gpa), len as usize)
        .map_err(|e| format!("guest range {gpa:#x}+{len:#x}: {e}"))?;
    let guard = slice.ptr_guard();
    // SAFETY: the slice is a live mapping of `len` bytes, valid while `guard` lives. The VM's
    // vCPUs have not started and every other writer during start-up touches disjoint ranges,
    // so nothing changes these bytes while the shared view exists.
    let bytes = unsafe { std::slice::from_raw_parts(guard.as_ptr(), slice.len()) };
    Ok(f(bytes))
}

impl KernelCache {
    /// The cache in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        KernelCache { dir: dir.into() }
    }

    /// `$OXEN_CACHE/kernels`, else `$XDG_CACHE_HOME/oxen/kernels`, else
    /// `$HOME/.cache/oxen/kernels`; `None` if `OXEN_KERNEL_CACHE=off` or none is set.
    pub fn from_env() -> Option<Self> {
        if std::env::var_os("OXEN_KERNEL_CACHE").is_some_and(|v| v == "off") {
            return None;
        }
        let base = env_dir("OXEN_CACHE")
            .or_else(|| env_dir("XDG_CACHE_HOME").map(|d| d.join("oxen")))
            .or_else(|| env_dir("HOME").map(|d| d.join(".cache").join("oxen")))?;
        Some(Self::at(base.join("kernels")))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("{}.{SUFFIX}", key.0))
    }

    /// Whether the directory may be trusted: ours and writable by nobody else (an entry decides
    /// what code the guest runs).
    fn trusted(&self) -> Result<(), String> {
        let m = std::fs::metadata(&self.dir).map_err(|e| e.to_string())?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me || m.mode() & 0o022 != 0 {
            return Err("not owned by this user or writable by others".into());
        }
        Ok(())
    }

    /// Loads entry `key` into guest memory. `None` on a miss or an unusable entry (whatever it
    /// wrote is zeroed again, the entry removed). `bounds` is where the kernel may lie.
    pub fn load(&self, key: &Key, ram: &GuestRam, bounds: Range<u64>) -> Option<Image> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), "kernel cache miss: {e}");
                return None;
            }
        };
        if let Err(e) = self.trusted() {
            tracing::debug!(dir = %self.dir.display(), "kernel cache not used: {e}");
            return None;
        }
        let mut written = Vec::new();
        match read_entry(&file, ram, bounds, &mut written) {
            Ok(image) => {
                // Recently used entries are the ones pruning keeps.
                let _ = file.set_modified(SystemTime::now());
                tracing::debug!(path = %path.display(), "kernel cache hit");
                Some(image)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring a bad kernel cache entry: {e}");
                for (gpa, len) in written {
                    let _ = ram.discard(gpa, len);
                }
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Starts writing entry `key`; `None` (logged at debug) if the directory is not usable.
    pub fn writer(&self, key: &Key) -> Option<Writer> {
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|_| self.trusted());
        // Unique per writer, so concurrent writers of one key never share a temporary file.
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.0,
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let file = made.and_then(|_| {
            let mut f = File::create(&tmp).map_err(|e| e.to_string())?;
            f.write_all(MAGIC).map_err(|e| e.to_string())?;
            Ok(f)
        });
        match file {
            Ok(file) => Some(Writer {
                file,
                tmp,
                path: self.path(key),
                dir: self.dir.clone(),
                extents: Vec::new(),
                crc: crc32fast::Hasher::new(),
                data_len: 0,
                failed: false,
            }),
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), "not caching the unpacked kernel: {e}");
                None
            }
        }
    }
}

/// Validates the entry in `f` and reads its extents into guest memory, noting each range in
/// `written` before it is touched.
fn read_entry(
    f: &File,
    ram: &GuestRam,
    bounds: Range<u64>,
    written: &mut Vec<(u64, u64)>,
) -> Result<Image, String> {
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let short = || format!("{len} bytes is too short for an entry (truncated?)");
    let index_at = len
        .checked_sub(TRAILER_LEN)
        .filter(|n| *n >= MAGIC.len() as u64)
        .ok_or_else(short)?;
    let mut magic = [0u8; 8];
    let mut trailer = [0u8; TRAILER_LEN as usize];
    f.read_exact_at(&mut magic, 0)
        .and_then(|_| f.read_exact_at(&mut trailer, index_at))
        .map_err(|e| e.to_string())?;
    if &magic != MAGIC || &trailer[48..] != END_MAGIC {
        return Err("not an entry of this format (or truncated)".into());
    }
    let (entry, start, end) = (
        u64_at(&trailer, 0),
        u64_at(&trailer, 8),
        u64_at(&trailer, 16),
    );
    let (count, data_len) = (u64_at(&trailer, 24), u64_at(&trailer, 32));
    let data_crc = u32::from_le_bytes([trailer[40], trailer[41], trailer[42], trailer[43]]);
    let meta_crc = u32::from_le_bytes([trailer[44], trailer[45], trailer[46], trailer[47]]);
    let expect = count
        .checked_mul(EXTENT_LEN)
        .zip(data_len.checked_add(MAGIC.len() as u64 + TRAILER_LEN))
        .and_then(|(a, b)| a.checked_add(b));
    if count > MAX_EXTENTS || expect != Some(len) {
        return Err(format!(
            "{len} bytes, not what its {count} extents of {data_len} bytes take (truncated?)"
        ));
    }
    let mut index = vec![0u8; (count * EXTENT_LEN) as usize];
    let index_start = index_at - index.len() as u64;
    f.read_exact_at(&mut index, index_start)
        .map_err(|e| e.to_string())?;
    if crc_of(&[&index, &trailer[..44]]) != meta_crc {
        return Err("index checksum mismatch".into());
    }
    if !(start <= entry && entry < end && bounds.start <= start && end <= bounds.end) {
        return Err(format!(
            "kernel {start:#x}..{end:#x} (entry {entry:#x}) is not within guest RAM"
        ));
    }
    let extents: Vec<(u64, u64)> = index
        .chunks_exact(EXTENT_LEN as usize)
        .map(|e| (u64_at(e, 0), u64_at(e, 8)))
        .collect();
    if extents
        .iter()
        .any(|&(g, l)| g < start || g.checked_add(l).is_none_or(|e| e > end))
        || extents.iter().map(|e| e.1).sum::<u64>() != data_len
    {
        return Err("an extent lies outside the kernel".into());
    }

    let mut crc = crc32fast::Hasher::new();
    // The extents' data follows the magic, in index order.
    let mut src = f;
    src.seek(SeekFrom::Start(MAGIC.len() as u64))
        .map_err(|e| e.to_string())?;
    for (gpa, ext_len) in extents {
        written.push((gpa, ext_len));
        let mut done = 0;
        while done < ext_len {
            let n = (ext_len - done).min(CHUNK);
            let at = gpa + done;
            // Straight from the file into guest memory, then checked while still in cache.
            let mut got = 0;
            while got < n {
                let r = ram
                    .mem
                    .read_volatile_from(GuestAddress(at + got), &mut src, (n - got) as usize)
                    .map_err(|e| e.to_string())?;
                if r == 0 {
                    return Err("unexpected end of file".into());
                }
                got += r as u64;
            }
            with_guest_bytes(ram, at, n, |b| crc.update(b))?;
            done += n;
        }
    }
    if crc.finalize() != data_crc {
        return Err("data checksum mismatch".into());
    }
    Ok(Image { entry, start, end })
}

/// Writes one entry while the kernel is unpacked; [`Writer::finish`] puts it in place.
#[derive(Debug)]
pub struct Writer {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    extents: Vec<(u64, u64)>,
    crc: crc32fast::Hasher,
    data_len: u64,
    failed: bool,
}

impl Writer {
    /// Appends `data`, which belongs at `gpa`. A write error abandons the entry (at debug).
    pub fn append(&mut self, gpa: u64, data: &[u8]) {
        if self.failed {
            return;
        }
        if let Err(e) = self.file.write_all(data) {
            tracing::debug!(path = %self.tmp.display(), "not caching the unpacked kernel: {e}");
            self.failed = true;
            return;
        }
        self.crc.update(data);
        self.data_len += data.len() as u64;
        match self.extents.last_mut() {
            Some((g, l)) if *g + *l == gpa => *l += data.len() as u64,
            _ => self.extents.push((gpa, data.len() as u64)),
        }
    }

    /// Completes the entry for `image`, renames it into place and prunes old entries.
    pub fn finish(mut self, image: &Image) {
        if self.failed {
            return;
        }
        let mut tail = Vec::with_capacity(self.extents.len() * 16 + TRAILER_LEN as usize);
        for (g, l) in &self.extents {
            tail.extend_from_slice(&g.to_le_bytes());
            tail.extend_from_slice(&l.to_le_bytes());
        }
        let index_len = tail.len();
        for v in [
            image.entry,
            image.start,
            image.end,
            self.extents.len() as u64,
            self.data_len,
        ] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        tail.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        let meta = crc_of(&[&tail]);
        tail.extend_from_slice(&meta.to_le_bytes());
        tail.extend_from_slice(END_MAGIC);
        debug_assert_eq!(tail.len() - index_len, TRAILER_LEN as usize);
        // No fsync: an entry a crash leaves short or garbled fails its checks on the next load.
        let done = self
            .file
            .write_all(&tail)
            .and_then(|_| std::fs::rename(&self.tmp, &self.path));
        match done {
            Ok(()) => {
                tracing::debug!(path = %self.path.display(), bytes = self.data_len, "kernel cached");
                prune(&self.dir);
            }
            Err(e) => {
                tracing::debug!(path = %self.path.display(), "not caching the unpacked kernel: {e}")
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Gone already once renamed into place; otherwise an abandoned entry.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Removes all but the [`KEEP`] most recently used entries, and stale temporary files.
fn prune(dir: &Path) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut entries = Vec::new();
    for e in list.flatten() {
        let (path, Ok(meta)) = (e.path(), e.metadata()) else {
            continue;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(&format!(".{SUFFIX}")) {
            entries.push((mtime, path));
        } else if name.ends_with(".tmp")
            && now.duration_since(mtime).is_ok_and(|age| age > STALE_TMP)
        {
            let _ = std::fs::remove_file(path);
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (_, path) in entries.into_iter().skip(KEEP) {
        tracing::debug!(path = %path.display(), "pruning the kernel cache");
        let _ = std::fs::remove_file(path);
    }
}
