//! Oxen's PV block backend: serves a guest's `vbd` devices (Linux's xen-blkfront) from raw
//! files, host block devices and VHD images.
//!
//! [`Vbd::start`] opens the image and runs the device's xenbus back end
//! ([`xenbus_backend`]); once the frontend has written its rings, each blkif queue gets its
//! own thread ([`blkif::Queue`]) woken by the queue's event channel. [`Vbd::snapshot`] takes a
//! live snapshot of a VHD disk and [`Vbd::resize`] grows a disk the guest is using.
#![deny(missing_docs)]

mod disk;
mod driver;
mod queue;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use blkif::{Metrics, QueueConfig};
use block::crypt::Key;
use pv_host::DomainHost;
use xenbus_backend::{Backend, BackendHandle, DeviceId, NodeWriter, XenbusState};

pub use disk::{Format, SwapDisk};

/// Most queues a vbd offers (`multi-queue-max-queues`).
pub const MAX_QUEUES: u32 = 16;

/// What can go wrong with a vbd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image could not be opened.
    #[error("opening disk {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: block::Error,
    },
    /// A setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// A live snapshot failed (the disk continues unchanged).
    #[error("live snapshot: {0}")]
    Snapshot(String),
    /// An online resize failed.
    #[error("resizing {path}: {source}")]
    Resize {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: block::Error,
    },
    /// Xenstore refused something.
    #[error(transparent)]
    Xenbus(#[from] xenbus_backend::Error),
}

/// How a vbd is set up (from xl.cfg's `disk` or `oxl block-attach`).
#[derive(Debug, Clone)]
pub struct VbdConfig {
    /// The image or device.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Export it read-only.
    pub read_only: bool,
    /// Key of an encrypted VHD.
    pub key: Option<Key>,
    /// Most queues the frontend may use.
    pub max_queues: u32,
    /// Offer persistent grants.
    pub persistent_grants: bool,
    /// Largest ring the frontend may use, as a power of two of pages (0 to
    /// [`blkif::MAX_RING_PAGE_ORDER`]).
    pub max_ring_page_order: u32,
}

/// A running vbd.
#[derive(Debug)]
pub struct Vbd {
    handle: BackendHandle,
    disk: Arc<SwapDisk>,
    key: Option<Key>,
    shared: Arc<queue::Shared>,
}

impl Vbd {
    /// Opens the disk and starts the back end of device `id`, whose Xenstore directories the
    /// toolstack has written, on Xenstore's socket `xenstore`.
    pub fn start(
        host: Arc<dyn DomainHost>,
        xenstore: &Path,
        id: DeviceId,
        cfg: VbdConfig,
    ) -> Result<Vbd, Error> {
        if cfg.max_ring_page_order > blkif::MAX_RING_PAGE_ORDER {
            return Err(Error::Config(format!(
                "{id}: ring page order {} (0 to {})",
                cfg.max_ring_page_order,
                blkif::MAX_RING_PAGE_ORDER
            )));
        }
        if cfg.max_queues == 0 || cfg.max_queues > MAX_QUEUES {
            return Err(Error::Config(format!(
                "{id}: {} queues (1 to {MAX_QUEUES})",
                cfg.max_queues
            )));
        }
        let disk = Arc::new(disk::open(
            &cfg.path,
            cfg.format,
            cfg.read_only,
            cfg.key.clone(),
        )?);
        let shared = Arc::new(queue::Shared::default());
        let name = format!("vbd{}.{}", id.domid, id.devid);
        let fail_name = name.clone();
        // A broken ring closes the device as xenbus_dev_fatal would: back end Closing, so the
        // frontend closes too (and may connect again with fresh rings).
        let writer: Arc<OnceLock<NodeWriter>> = Arc::default();
        let fail_writer = writer.clone();
        let driver = driver::VbdDriver {
            host,
            disk: disk.clone(),
            cfg: QueueConfig {
                persistent_grants: cfg.persistent_grants,
                read_only: cfg.read_only,
                max_ring_page_order: cfg.max_ring_page_order,
                ..QueueConfig::default()
            },
            max_queues: cfg.max_queues,
            name,
            shared: shared.clone(),
            on_fail: Arc::new(move |msg| {
                tracing::warn!(vbd = %fail_name, "{msg}; closing the device");
                if let Some(w) = fail_writer.get() {
                    let _ = w.write_node("state", &XenbusState::Closing.to_string());
                }
            }),
            queues: Vec::new(),
        };
        let handle = Backend::spawn(xenstore, id, driver)?;
        let _ = writer.set(handle.node_writer());
        Ok(Vbd {
            handle,
            disk,
            key: cfg.key,
            shared,
        })
    }

    /// The device.
    pub fn id(&self) -> &DeviceId {
        self.handle.id()
    }

    /// Whether the frontend is connected and served.
    pub fn is_connected(&self) -> bool {
        self.handle.is_connected()
    }

    /// Whether the device is gone (removed from Xenstore or closed).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Why a queue stopped serving, if one did (a broken ring).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters over the device's life.
    pub fn metrics(&self) -> Metrics {
        self.shared.totals()
    }

    /// The image the device writes now.
    pub fn path(&self) -> PathBuf {
        self.disk.path()
    }

    /// Live snapshot (see [`SwapDisk::snapshot`]): returns the snapshot's path and how long
    /// the guest's I/O was held.
    pub fn snapshot(&self, name: Option<&Path>) -> Result<(PathBuf, std::time::Duration), Error> {
        let r = self.disk.snapshot(name, self.key.as_ref())?;
        // Record the file the device now writes (it is the same path: the child took it).
        let _ = self
            .handle
            .write_node("params", &self.disk.path().display().to_string());
        Ok(r)
    }

    /// Grows the disk to `new_size` bytes and tells a connected frontend to re-read its size.
    pub fn resize(&self, new_size: u64) -> Result<(), Error> {
        if !new_size.is_multiple_of(512) {
            return Err(Error::Config(format!(
                "new size {new_size} is not a multiple of 512"
            )));
        }
        self.disk.resize(new_size)?;
        self.handle
            .write_nodes_and_notify(&[("sectors", (new_size / 512).to_string())])?;
        Ok(())
    }

    /// Stops the device: the frontend sees the back end close.
    pub fn close(self) {
        self.handle.close();
    }
}
