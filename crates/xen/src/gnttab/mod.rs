//! The guest's grant table, living in guest memory, and the backend side that uses grants.
//!
//! The guest places each grant-table frame somewhere in its physical address space
//! (`XENMEM_add_to_physmap`, `XENMAPSPACE_grant_table`); [`GrantTable::map_frame`] records
//! where, and every entry is then read and updated in guest memory, with atomics on the flag
//! words as Xen does. Backends in the VMM reach granted pages only through
//! [`GrantTable::map`], [`GrantTable::copy_from_grant`] and [`GrantTable::copy_to_grant`], which
//! apply Xen's checks (see `acquire_grant_for_copy` in `xen/common/grant_table.c`): the entry
//! permits access to the caller's domain, is writable when written, names a frame of guest RAM,
//! and `GTF_reading`/`GTF_writing` are held while the frame is in use.

mod access;
mod copy;
mod dispatch;
mod error;
mod frames;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_access;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::GuestMemoryBackend;

pub use access::GrantMapping;
pub use dispatch::arg_size;
pub use error::AccessError;

use crate::abi::gnttab::GrantRef;
use crate::abi::{DomId, PAGE_SIZE};

/// The `xen_pfn_t` Xen reports for a frame that is not in the guest's physical map.
pub const INVALID_GFN: u64 = u64::MAX;
/// Xen's default `gnttab_max_frames`.
pub const DEFAULT_MAX_FRAMES: u32 = 64;
/// The most frames Oxen lets a table have (v1: 512 entries each).
pub const MAX_FRAMES_LIMIT: u32 = 1024;

/// Why a table could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_frames` out of range.
    #[error("max_frames {0} is outside 1..={MAX_FRAMES_LIMIT}")]
    BadMaxFrames(u32),
    /// `max_version` is neither 1 nor 2.
    #[error("max_version {0} is neither 1 nor 2")]
    BadMaxVersion(u32),
    /// Guest and backend share an id.
    #[error("guest domain id {0} is also the backend domain id")]
    SameDomain(DomId),
}

/// Parameters of a guest's grant table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct GnttabConfig {
    /// The guest's domain id.
    pub domid: DomId,
    /// The domain id the VMM's backends use (they are the grantees).
    pub backend_domid: DomId,
    /// Most frames the table may grow to (`max_nr_frames` in `query_size`).
    pub max_frames: u32,
    /// Highest version the guest may select (1 or 2).
    pub max_version: u32,
}

impl GnttabConfig {
    /// A table for `domid`, backends in dom0, Xen's defaults otherwise.
    pub fn new(domid: DomId) -> GnttabConfig {
        GnttabConfig {
            domid,
            backend_domid: 0,
            max_frames: DEFAULT_MAX_FRAMES,
            max_version: 2,
        }
    }
}

/// Use counts of an entry that is in use (Xen's "active entry").
#[derive(Clone, Debug)]
struct Active {
    domid: DomId,
    readers: u32,
    writers: u32,
    /// The granted frame and window, captured when first claimed: later guest edits of the
    /// entry do not move a grant in use, as in Xen.
    gfn: u64,
    start: u16,
    len: u16,
}

/// Table state (the entries themselves are in guest memory).
struct Inner {
    version: u32,
    nr_frames: u32,
    /// Where each shared frame is placed (guest frame number), by frame index.
    shared: Vec<Option<u64>>,
    /// Where each v2 status frame is placed.
    status: Vec<Option<u64>>,
    active: HashMap<GrantRef, Active>,
}

struct Shared<M> {
    cfg: GnttabConfig,
    mem: M,
    inner: Mutex<Inner>,
}

/// A guest's grant table. Cheap to clone; clones share the table.
pub struct GrantTable<M: GuestMemoryBackend> {
    shared: Arc<Shared<M>>,
}

impl<M: GuestMemoryBackend> Clone for GrantTable<M> {
    fn clone(&self) -> Self {
        GrantTable {
            shared: self.shared.clone(),
        }
    }
}

impl<M: GuestMemoryBackend> std::fmt::Debug for GrantTable<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.lock();
        f.debug_struct("GrantTable")
            .field("domid", &self.shared.cfg.domid)
            .field("version", &i.version)
            .field("nr_frames", &i.nr_frames)
            .field("entries_in_use", &i.active.len())
            .finish()
    }
}

impl<M: GuestMemoryBackend> GrantTable<M> {
    /// A new, empty (zero frames, version 1) table for the guest whose memory is `mem`.
    pub fn new(cfg: GnttabConfig, mem: M) -> Result<Self, ConfigError> {
        if !(1..=MAX_FRAMES_LIMIT).contains(&cfg.max_frames) {
            return Err(ConfigError::BadMaxFrames(cfg.max_frames));
        }
        if !(1..=2).contains(&cfg.max_version) {
            return Err(ConfigError::BadMaxVersion(cfg.max_version));
        }
        if cfg.domid == cfg.backend_domid {
            return Err(ConfigError::SameDomain(cfg.domid));
        }
        let inner = Inner {
            version: 1,
            nr_frames: 0,
            shared: vec![None; cfg.max_frames as usize],
            status: vec![None; status_frames_for(cfg.max_frames) as usize],
            active: HashMap::new(),
        };
        Ok(GrantTable {
            shared: Arc::new(Shared {
                cfg,
                mem,
                inner: Mutex::new(inner),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is consistent between operations; a panic elsewhere must not wedge it.
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mem(&self) -> &M {
        &self.shared.mem
    }

    /// The configuration.
    pub fn config(&self) -> GnttabConfig {
        self.shared.cfg
    }

    /// The current version (1 or 2).
    pub fn version(&self) -> u32 {
        self.lock().version
    }

    /// Frames the table has grown to.
    pub fn nr_frames(&self) -> u32 {
        self.lock().nr_frames
    }

    /// Number of grant entries.
    pub fn nr_entries(&self) -> u32 {
        let i = self.lock();
        i.nr_frames * entries_per_frame(i.version)
    }

    /// Entries currently in use by a mapping or copy.
    pub fn entries_in_use(&self) -> usize {
        self.lock().active.len()
    }
}

/// Entries per frame: 512 for v1 (8 bytes each), 256 for v2 (16 bytes each).
pub fn entries_per_frame(version: u32) -> u32 {
    if version == 2 {
        (PAGE_SIZE / 16) as u32
    } else {
        (PAGE_SIZE / 8) as u32
    }
}

/// Status frames a v2 table of `nr_frames` shared frames needs (one `u16` per entry).
pub fn status_frames_for(nr_frames: u32) -> u32 {
    (nr_frames * entries_per_frame(2) * 2).div_ceil(PAGE_SIZE as u32)
}
