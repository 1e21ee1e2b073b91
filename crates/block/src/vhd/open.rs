//! Opening images: parsing and validating metadata, checking the key, and resolving the parent
//! chain (locators, UUID and timestamp checks, cycle detection).

use std::collections::BTreeSet;
use std::fs::OpenOptions as FsOpen;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use super::bat::Bat;
use super::bitmap::BitmapCache;
use super::footer::{DiskType, Footer, FOOTER_SIZE};
use super::header::{DynHeader, HEADER_SIZE};
use super::image::{Dyn, Meta, VhdImage};
use super::locator::{resolve, MAX_LOCATOR_DATA};
use super::util::{align_up, uuid_string};
use super::MAX_DISK_SIZE;
use crate::crypt::{Key, SectorCipher};
use crate::{Error, FileStorage, Result, Storage, SECTOR_SIZE};

/// Deepest parent chain accepted; deeper chains are almost certainly a loop or an attack.
pub const MAX_CHAIN_DEPTH: usize = 128;
/// Most BAT slots kept in memory beyond the table itself, for online growth.
const MAX_SPARE_CAPACITY: u64 = 1 << 22;

/// How to open an image.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Open for writing (parents are always opened read-only).
    pub writable: bool,
    /// Key for encrypted images (used for every encrypted image of the chain).
    pub key: Option<Key>,
    /// Resolve and open the parent of a differencing disk. Without it, unallocated sectors of a
    /// differencing disk read as zeros (used to inspect a single file).
    pub open_parent: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            writable: false,
            key: None,
            open_parent: true,
        }
    }
}

impl OpenOptions {
    /// Read-only options with parents.
    pub fn read_only() -> Self {
        Self::default()
    }

    /// Writable options with parents.
    pub fn read_write() -> Self {
        OpenOptions {
            writable: true,
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: Option<Key>) -> Self {
        self.key = key;
        self
    }
}

fn read_at(store: &dyn Storage, len: usize, off: u64, what: &str) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    store.read_exact_at(&mut b, off).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::corrupt(format!(
                "{what} at byte {off} is past the end of the file (truncated)"
            ))
        } else {
            Error::io(format!("reading {what} at byte {off}"), e)
        }
    })?;
    Ok(b)
}

/// Reads and validates the footer at the end of the file.
pub(crate) fn read_footer(store: &dyn Storage) -> Result<(Footer, u64)> {
    let len = store
        .len()
        .map_err(|e| Error::io("reading the file size", e))?;
    if len < FOOTER_SIZE as u64 {
        return Err(Error::corrupt(format!(
            "file is {len} bytes, too short to hold a 512-byte VHD footer"
        )));
    }
    let foot_off = len - FOOTER_SIZE as u64;
    let b = read_at(store, FOOTER_SIZE, foot_off, "footer")?;
    match Footer::parse(&b) {
        Ok(f) => Ok((f, foot_off)),
        Err(e) => {
            // Tell the user if the copy at the start is intact: `repair` can restore from it.
            let copy = read_at(store, FOOTER_SIZE, 0, "footer copy")
                .ok()
                .and_then(|c| Footer::parse(&c).ok());
            match copy {
                Some(c) if c.disk_type != DiskType::Fixed => Err(Error::corrupt(format!(
                    "footer at the end of the file is invalid ({e}); the copy at offset 0 is \
                     valid, run `oxen-vhd repair`"
                ))),
                _ => Err(e),
            }
        }
    }
}

/// Reads a locator's payload, with bounds checks.
pub(crate) fn locator_payload(
    store: &dyn Storage,
    l: &super::locator::Locator,
    file_len: u64,
) -> Result<Vec<u8>> {
    if l.data_len > MAX_LOCATOR_DATA {
        return Err(Error::corrupt(format!(
            "parent locator {} claims {} bytes of data",
            l.code_str(),
            l.data_len
        )));
    }
    if l.data_offset
        .checked_add(u64::from(l.data_len))
        .is_none_or(|e| e > file_len)
    {
        return Err(Error::corrupt(format!(
            "parent locator {} data at byte {} (+{}) is outside the file",
            l.code_str(),
            l.data_offset,
            l.data_len
        )));
    }
    read_at(
        store,
        l.data_len as usize,
        l.data_offset,
        "parent locator data",
    )
}

impl VhdImage {
    /// Opens the image at `path` and, for differencing disks, its parent chain.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<VhdImage> {
        let mut visited = Vec::new();
        open_chain(path.as_ref(), opts, &mut visited)
    }

    /// Opens an image held in `store` without resolving parents (used by tests and fuzzing).
    pub fn open_storage(store: Arc<dyn Storage>, name: &str, opts: &OpenOptions) -> Result<Self> {
        parse(store, name.to_string(), None, opts)
    }

    /// Paths where this differencing disk's parent may be, in the order they are tried.
    pub fn parent_candidates(&self) -> Vec<PathBuf> {
        let Some(h) = self.header() else {
            return Vec::new();
        };
        let dir = self
            .path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let len = self.store.len().unwrap_or(0);
        let mut out: Vec<PathBuf> = Vec::new();
        for l in h.locators.iter().filter(|l| l.is_used()) {
            if let Ok(p) = locator_payload(self.store.as_ref(), l, len) {
                if let Some(path) = l.decode_path(&p, &dir) {
                    out.push(path);
                }
            }
        }
        if !h.parent_name.is_empty() {
            out.push(resolve(&h.parent_name, &dir));
        }
        let mut seen = BTreeSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }
}

fn open_chain(path: &Path, opts: &OpenOptions, visited: &mut Vec<PathBuf>) -> Result<VhdImage> {
    let canon = path
        .canonicalize()
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    if visited.contains(&canon) {
        return Err(Error::Parent {
            child: visited
                .last()
                .map_or_else(String::new, |p| p.display().to_string()),
            reason: format!("cycle: {} is its own ancestor", canon.display()),
        });
    }
    if visited.len() >= MAX_CHAIN_DEPTH {
        return Err(Error::Parent {
            child: path.display().to_string(),
            reason: format!("chain deeper than {MAX_CHAIN_DEPTH} images"),
        });
    }
    visited.push(canon.clone());
    let file = FsOpen::new()
        .read(true)
        .write(opts.writable)
        .open(&canon)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let store: Arc<dyn Storage> = Arc::new(FileStorage::new(file));
    let name = path.display().to_string();
    let mut img = parse(store, name.clone(), Some(canon), opts)?;
    if img.disk_type() == DiskType::Differencing && opts.open_parent {
        img.parent = Some(Arc::new(open_parent(&img, opts, visited)?));
    }
    Ok(img)
}

fn open_parent(
    child: &VhdImage,
    opts: &OpenOptions,
    visited: &mut Vec<PathBuf>,
) -> Result<VhdImage> {
    let h = child
        .header()
        .ok_or_else(|| Error::corrupt("differencing disk without header"))?;
    let candidates = child.parent_candidates();
    let perr = |reason: String| Error::Parent {
        child: child.name.clone(),
        reason,
    };
    let Some(found) = candidates.iter().find(|p| p.exists()) else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(perr(format!(
            "not found (tried: {})",
            if tried.is_empty() {
                "no locator".to_string()
            } else {
                tried.join(", ")
            }
        )));
    };
    let popts = OpenOptions {
        writable: false,
        ..opts.clone()
    };
    let parent = open_chain(found, &popts, visited)?;
    let pf = parent.footer();
    if pf.uuid != h.parent_uuid {
        return Err(perr(format!(
            "{} has UUID {}, but the child expects {}",
            found.display(),
            uuid_string(&pf.uuid),
            uuid_string(&h.parent_uuid)
        )));
    }
    if pf.timestamp != h.parent_timestamp {
        tracing::warn!(
            child = %child.name,
            parent = %found.display(),
            "parent timestamp {} differs from the one recorded in the child ({})",
            pf.timestamp,
            h.parent_timestamp
        );
    }
    Ok(parent)
}

fn parse(
    store: Arc<dyn Storage>,
    name: String,
    path: Option<PathBuf>,
    opts: &OpenOptions,
) -> Result<VhdImage> {
    let ctx = |e: Error| match e {
        Error::Corrupt(m) => Error::Corrupt(format!("{name}: {m}")),
        other => other,
    };
    let (footer, foot_off) = read_footer(store.as_ref()).map_err(ctx)?;
    let cipher = match (&footer.key_tag, &opts.key) {
        (None, _) => None,
        (Some(_), None) => return Err(Error::KeyRequired(name)),
        (Some(t), Some(k)) => {
            if !t.matches(k) {
                return Err(Error::WrongKey(name));
            }
            Some(SectorCipher::new(k))
        }
    };
    let size = footer.current_size;
    let dynamic = match footer.disk_type {
        DiskType::Fixed => {
            if foot_off != size {
                return Err(ctx(Error::corrupt(format!(
                    "fixed disk of {size} bytes needs a {} byte file, the file has {} bytes{}",
                    size + FOOTER_SIZE as u64,
                    foot_off + FOOTER_SIZE as u64,
                    if foot_off < size { " (truncated)" } else { "" }
                ))));
            }
            None
        }
        DiskType::Dynamic | DiskType::Differencing => {
            Some(parse_dynamic(store.as_ref(), &footer, foot_off).map_err(ctx)?)
        }
    };
    Ok(VhdImage {
        name,
        path,
        store,
        writable: opts.writable,
        kind: footer.disk_type,
        footer: Mutex::new(footer),
        size: AtomicU64::new(size),
        dynamic,
        parent: None,
        cipher,
    })
}

fn parse_dynamic(store: &dyn Storage, footer: &Footer, foot_off: u64) -> Result<Dyn> {
    let hoff = footer.data_offset;
    if !hoff.is_multiple_of(SECTOR_SIZE)
        || hoff
            .checked_add(HEADER_SIZE as u64)
            .is_none_or(|e| e > foot_off)
    {
        return Err(Error::corrupt(format!(
            "dynamic header offset {hoff:#x} is not a sector inside the file"
        )));
    }
    let header = DynHeader::parse(&read_at(store, HEADER_SIZE, hoff, "dynamic header")?)?;
    let bs = u64::from(header.block_size);
    let entries = u64::from(header.max_table_entries);
    if entries * bs < footer.current_size {
        return Err(Error::corrupt(format!(
            "BAT has {entries} entries of {bs} bytes, less than the disk size {}",
            footer.current_size
        )));
    }
    if entries * bs > MAX_DISK_SIZE + bs {
        return Err(Error::corrupt(format!(
            "BAT has {entries} entries of {bs} bytes, more than a VHD can address"
        )));
    }
    let bat_bytes = header.bat_bytes();
    if header
        .table_offset
        .checked_add(bat_bytes)
        .is_none_or(|e| e > foot_off)
    {
        return Err(Error::corrupt(format!(
            "BAT at byte {} ({entries} entries) extends past the end of the file",
            header.table_offset
        )));
    }
    let raw = read_at(store, bat_bytes as usize, header.table_offset, "BAT")?;
    let spare = (MAX_DISK_SIZE / bs).min(MAX_SPARE_CAPACITY) as usize;
    let bat = Bat::from_bytes(&raw, header.max_table_entries, spare);
    let bitmap_bytes = align_up(bs / SECTOR_SIZE / 8, SECTOR_SIZE);
    let meta_regions = [
        (0, FOOTER_SIZE as u64),
        (hoff, HEADER_SIZE as u64),
        (header.table_offset, bat_bytes),
    ];
    for (i, e) in bat.allocated(header.max_table_entries) {
        let start = u64::from(e) * SECTOR_SIZE;
        let end = start + bitmap_bytes + bs;
        if end > foot_off {
            return Err(Error::corrupt(format!(
                "BAT entry {i} points to sector {e}: the block ends at byte {end}, past the \
                 footer at byte {foot_off}"
            )));
        }
        if let Some((ro, _)) = meta_regions
            .iter()
            .find(|(ro, rl)| start < ro + rl && *ro < end)
        {
            return Err(Error::corrupt(format!(
                "BAT entry {i} points to sector {e}, overlapping metadata at byte {ro}"
            )));
        }
    }
    debug_assert!(bat.capacity() as u64 >= entries);
    Ok(Dyn {
        block_size: bs,
        bitmap_bytes,
        bat,
        bitmaps: BitmapCache::default(),
        meta: Mutex::new(Meta {
            data_end: align_up(foot_off, SECTOR_SIZE),
            dirty_bat: BTreeSet::new(),
            header,
        }),
    })
}
