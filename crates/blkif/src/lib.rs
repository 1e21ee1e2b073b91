//! The Xen PV block protocol (`xen/include/public/io/blkif.h`) and its request engine: the
//! back end of Linux's `xen-blkfront`.
//!
//! - [`abi`]: the request, discard, indirect and response layouts (64-bit) and constants.
//! - [`Queue`]: one ring of requests over the frontend's granted pages, run against a
//!   [`block::DiskImage`], with one vectored disk call per request straight between the
//!   disk and the granted pages (no copy for raw images). Every request is copied out of
//!   the ring and validated before anything else ([`RequestError`] names what was wrong);
//!   a bad request gets `BLKIF_RSP_ERROR` (or `EOPNOTSUPP`) and never reaches the disk.
//!   Only a broken ring ([`QueueError`]) ends the queue.
//! - [`ring_refs`] reads `ring-ref` / `ring-page-order` + `ring-refN`;
//!   [`backend_features`] lists what the backend advertises in Xenstore.
//!
//! Setting up a queue once the frontend is `Initialised`:
//!
//! ```ignore
//! let refs = blkif::ring_refs(|key| xenstore_read(&format!("{frontend}/{key}")))?;
//! let mut q = blkif::Queue::new(gnttab.clone(), guest_mem.clone(), disk, &refs,
//!                               blkif::QueueConfig::default())?;
//! // on every event from the frontend (and once after connecting):
//! let out = q.process()?;          // Err: disconnect the frontend
//! if out.notify { notify_frontend() }
//! if out.more { /* call process again soon */ }
//! // or let the queue notify as soon as responses are due, mid-batch too:
//! let out = q.process_with(&mut || notify_frontend())?;
//! ```
//!
//! Event channels and Xenstore states are the caller's business.

#![deny(missing_docs)]

pub mod abi;
mod connect;
mod error;
mod grants;
mod io;
mod metrics;
mod queue;
mod request;

#[cfg(test)]
mod tests;

pub use connect::{backend_features, ring_refs, MAX_RING_PAGE_ORDER, VDISK_READONLY};
pub use error::{ConnectError, QueueError, RequestError};
pub use grants::MAX_PERSISTENT_GRANTS;
pub use metrics::{ErrorCounts, Metrics};
pub use queue::{ProcessOutcome, Queue, QueueConfig, MAX_INDIRECT_SEGMENTS};
pub use request::{Direction, Segment};
