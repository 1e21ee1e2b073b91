//! Opening a vbd's image, and the handle the queues share, which a live snapshot swaps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use block::crypt::Key;
use block::vhd::{OpenOptions, VhdImage};
use block::{DiskImage, IoBuf, IoBufMut};

use crate::Error;

/// The image format of a vbd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A raw file or host block device.
    Raw,
    /// A VHD (fixed, dynamic or differencing).
    Vhd,
}

impl Format {
    /// Parses xl's format names (`raw`, `vhd`).
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "raw" | "aio" | "file" | "phy" => Some(Format::Raw),
            "vhd" | "vpc" => Some(Format::Vhd),
            _ => None,
        }
    }

    /// The name written to Xenstore.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Vhd => "vhd",
        }
    }
}

/// The image currently behind a vbd. Every I/O holds the read lock for its duration, so the
/// write lock taken by a snapshot waits for requests in flight and holds new ones back: that
/// wait is the guest-visible pause.
#[derive(Debug)]
pub struct SwapDisk {
    current: RwLock<Current>,
    read_only: bool,
}

#[derive(Debug)]
struct Current {
    image: Arc<dyn DiskImage>,
    /// The VHD, when it is one (snapshots need it).
    vhd: Option<Arc<VhdImage>>,
    path: PathBuf,
}

/// Opens `path` as `format`; `key` decrypts an encrypted VHD.
pub fn open(
    path: &Path,
    format: Format,
    read_only: bool,
    key: Option<Key>,
) -> Result<SwapDisk, Error> {
    let opened = |e: block::Error| Error::Open {
        path: path.to_path_buf(),
        source: e,
    };
    let (image, vhd): (Arc<dyn DiskImage>, _) = match format {
        Format::Raw => {
            if key.is_some() {
                return Err(Error::Config(format!(
                    "{}: an encryption key needs a VHD disk",
                    path.display()
                )));
            }
            (
                Arc::new(block::raw::RawImage::open(path, !read_only).map_err(opened)?),
                None,
            )
        }
        Format::Vhd => {
            let opts = if read_only {
                OpenOptions::read_only()
            } else {
                OpenOptions::read_write()
            }
            .with_key(key);
            let v = Arc::new(VhdImage::open(path, &opts).map_err(opened)?);
            (v.clone(), Some(v))
        }
    };
    Ok(SwapDisk {
        current: RwLock::new(Current {
            image,
            vhd,
            path: path.to_path_buf(),
        }),
        read_only,
    })
}

impl SwapDisk {
    fn get(&self) -> RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The file the vbd writes to now.
    pub fn path(&self) -> PathBuf {
        self.get().path.clone()
    }

    /// Live snapshot of a VHD disk: the current file becomes the read-only snapshot at
    /// `snapshot` (renamed; a name without a directory stays beside the disk) and the vbd
    /// continues on a new child at the disk's own path, so the domain's configuration keeps
    /// naming the live disk. Returns the snapshot's path and how long I/O was held.
    pub fn snapshot(
        &self,
        snapshot: Option<&Path>,
        key: Option<&Key>,
    ) -> Result<(PathBuf, std::time::Duration), Error> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let held = std::time::Instant::now();
        let Some(vhd) = cur.vhd.clone() else {
            return Err(Error::Config(format!(
                "{}: live snapshots need a VHD disk",
                cur.path.display()
            )));
        };
        if self.read_only {
            return Err(Error::Config(format!(
                "{}: the disk is read-only; copy it instead of snapshotting",
                cur.path.display()
            )));
        }
        let live = cur.path.clone();
        let snap = snapshot_path(&live, snapshot);
        if snap.exists() {
            return Err(Error::Config(format!(
                "snapshot {} already exists",
                snap.display()
            )));
        }
        let io = |what: &str, e: std::io::Error| Error::Snapshot(format!("{what}: {e}"));
        vhd.flush()
            .map_err(|e| Error::Snapshot(format!("flushing {}: {e}", live.display())))?;
        std::fs::rename(&live, &snap).map_err(|e| {
            io(
                &format!("renaming {} to {}", live.display(), snap.display()),
                e,
            )
        })?;
        let child = block::vhd::create_child(&live, &snap, key).and_then(|()| {
            VhdImage::open(&live, &OpenOptions::read_write().with_key(key.cloned()))
        });
        let child = match child {
            Ok(c) => Arc::new(c),
            Err(e) => {
                // Put things back: the guest keeps writing to the image it had.
                let _ = std::fs::remove_file(&live);
                let _ = std::fs::rename(&snap, &live);
                return Err(Error::Snapshot(format!(
                    "creating the child {}: {e}",
                    live.display()
                )));
            }
        };
        cur.image = child.clone();
        cur.vhd = Some(child);
        Ok((snap, held.elapsed()))
    }

    /// Grows (or shrinks) the disk online.
    pub fn resize(&self, new_size: u64) -> Result<(), Error> {
        // Resizing under the write lock keeps requests from racing the size change.
        let cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        cur.image.resize(new_size).map_err(|e| Error::Resize {
            path: cur.path.clone(),
            source: e,
        })
    }
}

/// Where a snapshot goes: `name` (beside the disk when it has no directory), or
/// `<stem>-snap-<unix time>.vhd` beside the disk.
fn snapshot_path(live: &Path, name: Option<&Path>) -> PathBuf {
    let dir = live.parent().unwrap_or(Path::new("."));
    match name {
        Some(n) if n.parent().is_some_and(|p| !p.as_os_str().is_empty()) => n.to_path_buf(),
        Some(n) => dir.join(n),
        None => {
            let stem = live
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "disk".into());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            dir.join(format!("{stem}-snap-{now}.vhd"))
        }
    }
}

impl DiskImage for SwapDisk {
    fn size(&self) -> u64 {
        self.get().image.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> block::Result<()> {
        self.get().image.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> block::Result<()> {
        self.get().image.write_at(buf, offset)
    }
    // Forwarded so that raw images keep their direct (preadv/pwritev) path.
    fn read_vectored_at(&self, bufs: &mut [IoBufMut<'_>], offset: u64) -> block::Result<()> {
        self.get().image.read_vectored_at(bufs, offset)
    }
    fn write_vectored_at(&self, bufs: &[IoBuf<'_>], offset: u64) -> block::Result<()> {
        self.get().image.write_vectored_at(bufs, offset)
    }
    fn flush(&self) -> block::Result<()> {
        self.get().image.flush()
    }
    fn flush_unsynced(&self) -> block::Result<()> {
        self.get().image.flush_unsynced()
    }
    fn discard(&self, offset: u64, len: u64) -> block::Result<()> {
        self.get().image.discard(offset, len)
    }
    fn resize(&self, new_size: u64) -> block::Result<()> {
        self.get().image.resize(new_size)
    }
    fn read_only(&self) -> bool {
        self.read_only || self.get().image.read_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keeps_the_live_path_and_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("d.vhd");
        block::vhd::create(&live, &block::vhd::CreateOptions::dynamic(8 << 20)).unwrap();
        let d = open(&live, Format::Vhd, false, None).unwrap();
        d.write_at(&[7u8; 4096], 0).unwrap();
        let (snap, _) = d.snapshot(Some(Path::new("s1.vhd")), None).unwrap();
        assert_eq!(snap, dir.path().join("s1.vhd"));
        d.write_at(&[9u8; 4096], 4096).unwrap();
        d.flush().unwrap();
        // The snapshot holds what was written before it, the live disk both.
        let s = VhdImage::open(&snap, &OpenOptions::read_only()).unwrap();
        let mut b = [0u8; 8192];
        s.read_at(&mut b, 0).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 7) && b[4096..].iter().all(|&x| x == 0));
        let l = VhdImage::open(&live, &OpenOptions::read_only()).unwrap();
        l.read_at(&mut b, 0).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 7) && b[4096..].iter().all(|&x| x == 9));
        assert_eq!(d.path(), live);
        assert!(
            d.snapshot(Some(Path::new("s1.vhd")), None).is_err(),
            "exists"
        );
    }

    /// An image that only answers vectored calls, to see that they are forwarded as such.
    #[derive(Debug)]
    struct VectoredOnly;

    impl DiskImage for VectoredOnly {
        fn size(&self) -> u64 {
            4096
        }
        fn read_at(&self, _: &mut [u8], _: u64) -> block::Result<()> {
            Err(block::Error::Unsupported("bounced read".into()))
        }
        fn write_at(&self, _: &[u8], _: u64) -> block::Result<()> {
            Err(block::Error::Unsupported("bounced write".into()))
        }
        fn read_vectored_at(&self, bufs: &mut [IoBufMut<'_>], offset: u64) -> block::Result<()> {
            for b in bufs {
                b.copy_from(&vec![offset as u8; b.len()]);
            }
            Ok(())
        }
        fn write_vectored_at(&self, bufs: &[IoBuf<'_>], _: u64) -> block::Result<()> {
            match bufs.len() {
                2 => Ok(()),
                n => Err(block::Error::InvalidArgument(format!("{n} buffers"))),
            }
        }
        fn flush(&self) -> block::Result<()> {
            Ok(())
        }
        fn discard(&self, _: u64, _: u64) -> block::Result<()> {
            Ok(())
        }
        fn resize(&self, _: u64) -> block::Result<()> {
            Ok(())
        }
        fn read_only(&self) -> bool {
            false
        }
    }

    #[test]
    fn vectored_io_is_forwarded_to_the_image() {
        let d = SwapDisk {
            current: RwLock::new(Current {
                image: Arc::new(VectoredOnly),
                vhd: None,
                path: PathBuf::from("v.img"),
            }),
            read_only: false,
        };
        let (mut a, mut b) = ([0u8; 3], [0u8; 5]);
        d.read_vectored_at(&mut [IoBufMut::new(&mut a), IoBufMut::new(&mut b)], 9)
            .unwrap();
        assert_eq!((a, b), ([9; 3], [9; 5]));
        d.write_vectored_at(&[IoBuf::new(&a), IoBuf::new(&b)], 0)
            .unwrap();
    }

    #[test]
    fn raw_disks_refuse_snapshots_and_resize_online() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let d = open(&p, Format::Raw, false, None).unwrap();
        let e = d.snapshot(None, None).unwrap_err().to_string();
        assert!(e.contains("need a VHD"), "{e}");
        d.resize(2 << 20).unwrap();
        assert_eq!(d.size(), 2 << 20);
        assert!(open(&p, Format::Raw, false, Some(Key::from_bytes([1; 64]))).is_err());
    }
}
