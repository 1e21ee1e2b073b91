//! Creating fixed, dynamic and differencing images, and live snapshots of open images.

use std::path::Path;
use std::sync::Arc;

use super::bat::UNUSED;
use super::footer::{DiskType, Footer, KeyTag, CREATOR_APP};
use super::header::{DynHeader, HEADER_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use super::image::VhdImage;
use super::locator::{payloads, relative_path, Locator, LOCATOR_COUNT};
use super::open::OpenOptions;
use super::util::{align_up, chs_for, new_uuid, vhd_now};
use super::MAX_DISK_SIZE;
use crate::crypt::{Key, SectorCipher};
use crate::{DiskImage, Error, FileStorage, Result, Storage};

/// Default block size of dynamic disks (the specification's and everyone else's).
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;

/// Parameters of a new image.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// Fixed or dynamic.
    pub disk_type: DiskType,
    /// Block size of dynamic disks.
    pub block_size: u32,
    /// Size the BAT is reserved for, so the disk can later grow without moving the BAT.
    pub max_size: Option<u64>,
    /// Encrypt with this key.
    pub key: Option<Key>,
    /// Sync the new file before returning (off for scratch output such as `convert` without
    /// `--sync`: on ext4 a sync also waits for other files' dirty data).
    pub sync: bool,
}

impl CreateOptions {
    /// Dynamic disk of `size` bytes with default settings.
    pub fn dynamic(size: u64) -> Self {
        CreateOptions {
            size,
            disk_type: DiskType::Dynamic,
            block_size: DEFAULT_BLOCK_SIZE,
            max_size: None,
            key: None,
            sync: true,
        }
    }

    /// Fixed disk of `size` bytes.
    pub fn fixed(size: u64) -> Self {
        CreateOptions {
            disk_type: DiskType::Fixed,
            ..Self::dynamic(size)
        }
    }
}

fn check_size(size: u64) -> Result<()> {
    if size == 0 || !size.is_multiple_of(512) || size > MAX_DISK_SIZE {
        return Err(Error::InvalidArgument(format!(
            "disk size {size} must be a non-zero multiple of 512 no larger than 2040 GiB"
        )));
    }
    Ok(())
}

pub(crate) fn new_footer(size: u64, disk_type: DiskType, key: Option<&Key>) -> Result<Footer> {
    Ok(Footer {
        features: 2,
        version: 0x0001_0000,
        data_offset: if disk_type == DiskType::Fixed {
            u64::MAX
        } else {
            512
        },
        timestamp: vhd_now(),
        creator_app: CREATOR_APP,
        creator_version: 0x0001_0003,
        creator_os: 0,
        original_size: size,
        current_size: size,
        geometry: chs_for(size),
        disk_type,
        checksum: 0,
        uuid: new_uuid(),
        saved_state: 0,
        hidden: 0,
        key_tag: key.map(KeyTag::new).transpose()?,
    })
}

fn new_file(path: &Path) -> Result<FileStorage> {
    FileStorage::create_new(path)
}

fn werr(e: std::io::Error) -> Error {
    Error::io("writing the new image", e)
}

/// Writes a new fixed or dynamic image into empty storage.
pub fn create_on(store: &dyn Storage, opts: &CreateOptions) -> Result<()> {
    check_size(opts.size)?;
    match opts.disk_type {
        DiskType::Fixed => {
            let footer = new_footer(opts.size, DiskType::Fixed, opts.key.as_ref())?;
            if let Some(k) = &opts.key {
                // Encrypted zeros are not zero bytes: fill the disk so it reads as zeros.
                let c = SectorCipher::new(k);
                let chunk = 1u64 << 20;
                let mut off = 0;
                while off < opts.size {
                    let n = chunk.min(opts.size - off);
                    let mut buf = vec![0u8; n as usize];
                    c.encrypt(&mut buf, off / 512);
                    store.write_all_at(&buf, off).map_err(werr)?;
                    off += n;
                }
            }
            store
                .write_all_at(&footer.to_bytes(), opts.size)
                .map_err(werr)?;
            if opts.sync {
                store.sync().map_err(werr)?;
            }
            Ok(())
        }
        DiskType::Dynamic => {
            let footer = new_footer(opts.size, DiskType::Dynamic, opts.key.as_ref())?;
            write_sparse(store, &footer, opts, "", &[0; 16], 0, &[])
        }
        DiskType::Differencing => Err(Error::InvalidArgument(
            "differencing disks are created with create_child".into(),
        )),
    }
}

/// Lays out footer copy, header, BAT, parent locators and footer of a sparse disk.
fn write_sparse(
    store: &dyn Storage,
    footer: &Footer,
    opts: &CreateOptions,
    parent_name: &str,
    parent_uuid: &[u8; 16],
    parent_timestamp: u32,
    locs: &[([u8; 4], Vec<u8>)],
) -> Result<()> {
    let bs = opts.block_size;
    if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
        return Err(Error::InvalidArgument(format!(
            "block size {bs} must be a power of two between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
        )));
    }
    let reserve = opts.max_size.unwrap_or(opts.size).max(opts.size);
    check_size(reserve)?;
    let entries = u32::try_from(reserve.div_ceil(u64::from(bs)))
        .map_err(|_| Error::InvalidArgument("too many blocks".into()))?;
    let table_offset = 512 + HEADER_SIZE as u64;
    let bat_bytes = align_up(u64::from(entries) * 4, 512);
    let mut pos = table_offset + bat_bytes;
    let mut locators = [Locator::default(); LOCATOR_COUNT];
    for (i, (code, data)) in locs.iter().enumerate().take(LOCATOR_COUNT) {
        let space = align_up(data.len() as u64, 512).max(512);
        locators[i] = Locator {
            code: *code,
            data_space: space as u32,
            data_len: data.len() as u32,
            data_offset: pos,
        };
        store.write_all_at(data, pos).map_err(werr)?;
        pos += space;
    }
    let header = DynHeader {
        data_offset: u64::MAX,
        table_offset,
        version: 0x0001_0000,
        max_table_entries: entries,
        block_size: bs,
        parent_uuid: *parent_uuid,
        parent_timestamp,
        parent_name: parent_name.to_string(),
        locators,
    };
    let fb = footer.to_bytes();
    store.write_all_at(&fb, 0).map_err(werr)?;
    store.write_all_at(&header.to_bytes(), 512).map_err(werr)?;
    let bat = vec![0xffu8; bat_bytes as usize];
    debug_assert_eq!(UNUSED, 0xffff_ffff);
    store.write_all_at(&bat, table_offset).map_err(werr)?;
    store.write_all_at(&fb, pos).map_err(werr)?;
    if opts.sync {
        store.sync().map_err(werr)?;
    }
    Ok(())
}

/// Creates a new fixed or dynamic image file (refuses to overwrite an existing file).
pub fn create(path: &Path, opts: &CreateOptions) -> Result<()> {
    let store = new_file(path)?;
    let r = create_on(&store, opts);
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Creates a differencing disk at `child` whose parent is the VHD at `parent`. The child is
/// encrypted if the parent is (with the same key, which must be given) or if `key` is given.
pub fn create_child(child: &Path, parent: &Path, key: Option<&Key>) -> Result<()> {
    let popts = OpenOptions::read_only().with_key(key.cloned());
    let p = VhdImage::open(parent, &popts)?;
    create_child_of(child, &p, key)
}

/// Creates a differencing disk at `child` on top of the open image `p`.
pub fn create_child_of(child: &Path, p: &VhdImage, key: Option<&Key>) -> Result<()> {
    let pf = p.footer();
    let ppath = p
        .path()
        .ok_or_else(|| Error::InvalidArgument("parent has no path".into()))?
        .to_path_buf();
    let abs_child = if child.is_absolute() {
        child.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("reading the current directory", e))?
            .join(child)
    };
    let child_dir = abs_child
        .parent()
        .ok_or_else(|| Error::InvalidArgument("child path has no directory".into()))?;
    let child_dir = child_dir
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", child_dir.display()), e))?;
    let mut footer = new_footer(pf.current_size, DiskType::Differencing, key)?;
    footer.geometry = pf.geometry;
    let opts = CreateOptions {
        size: pf.current_size,
        disk_type: DiskType::Differencing,
        block_size: p.block_size().map_or(DEFAULT_BLOCK_SIZE, |b| b as u32),
        max_size: p
            .header()
            .map(|h| u64::from(h.max_table_entries) * u64::from(h.block_size)),
        key: key.cloned(),
        sync: true,
    };
    let rel = relative_path(&ppath, &child_dir);
    let store = new_file(child)?;
    let r = write_sparse(
        &store,
        &footer,
        &opts,
        &rel,
        &pf.uuid,
        pf.timestamp,
        &payloads(&ppath, &child_dir),
    );
    if r.is_err() {
        let _ = std::fs::remove_file(child);
    }
    r
}

impl VhdImage {
    /// Live snapshot: flushes this image, creates `child` on top of it and opens the child
    /// (writable) over a fresh read-only view of this image. The caller swaps its handle to the
    /// returned image and stops writing to this one.
    pub fn snapshot_to(&self, child: &Path, key: Option<&Key>) -> Result<VhdImage> {
        self.flush()?;
        create_child_of(child, self, key)?;
        VhdImage::open(child, &OpenOptions::read_write().with_key(key.cloned()))
    }

    /// Same as [`VhdImage::snapshot_to`] for a shared handle.
    pub fn snapshot_arc(
        self: &Arc<Self>,
        child: &Path,
        key: Option<&Key>,
    ) -> Result<Arc<VhdImage>> {
        self.snapshot_to(child, key).map(Arc::new)
    }
}
