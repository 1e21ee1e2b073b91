//! Xen's shared I/O rings (`xen/include/public/io/ring.h`) for Oxen's PV backends.
//!
//! A split driver's frontend (in the guest) and backend (here) share a ring area of one or
//! more pages: a 64-byte header with four free-running 32-bit indices (`req_prod@0`,
//! `req_event@4`, `rsp_prod@8`, `rsp_event@12`) followed by `nr_ents` slots, each holding
//! either a request or the response that replaces it.
//!
//! - [`RingPages`] is the shared area as bytes; [`GuestRingPages`] implements it over guest
//!   pages at arbitrary guest-physical addresses (the frontend maps them contiguously, so an
//!   entry may straddle two pages).
//! - [`BackRing`] is the backend's view: it copies each request out of shared memory before
//!   use, pushes responses, applies Xen's event (notification) rules and refuses hostile
//!   indices with [`RingError::Overflow`], after which the caller should disconnect the ring.
//! - [`FrontRing`] is a fake frontend for tests (of this crate and of backends built on it).
//!
//! All indices are `u32` and wrap, as `RING_IDX` does in Xen.

#![deny(missing_docs)]

mod back;
mod front;
mod layout;
mod pages;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_back;

pub use back::BackRing;
pub use front::FrontRing;
pub use layout::{
    RingLayout, ENTRIES_OFFSET, REQ_EVENT_OFFSET, REQ_PROD_OFFSET, RSP_EVENT_OFFSET,
    RSP_PROD_OFFSET,
};
pub use pages::{GuestRingPages, PAGE_SIZE};

/// Why a ring operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The frontend's indices are impossible: more requests than slots are outstanding. The
    /// ring cannot be trusted any longer; the caller should disconnect it.
    #[error(
        "ring overflow: req_prod {req_prod}, req_cons {req_cons}, rsp_prod_pvt {rsp_prod_pvt}, \
         {nr_ents} slots"
    )]
    Overflow {
        /// `req_prod` as read from shared memory.
        req_prod: u32,
        /// The backend's private request consumer index.
        req_cons: u32,
        /// The backend's private response producer index.
        rsp_prod_pvt: u32,
        /// Number of slots in the ring.
        nr_ents: u32,
    },
    /// An access outside the ring area.
    #[error("access of {len} bytes at offset {off} is outside the {area}-byte ring area")]
    OutOfBounds {
        /// Offset of the access.
        off: usize,
        /// Length of the access.
        len: usize,
        /// Size of the ring area.
        area: usize,
    },
    /// An index word access at an offset that is not 4-byte aligned.
    #[error("index word access at offset {0} is not 4-byte aligned")]
    Misaligned(usize),
    /// Guest memory refused an access.
    #[error("guest memory access of {len} bytes at ring offset {off} failed: {detail}")]
    Memory {
        /// Offset in the ring area.
        off: usize,
        /// Length of the access.
        len: usize,
        /// What the memory layer said.
        detail: String,
    },
    /// The page list is empty.
    #[error("a ring needs at least one page")]
    NoPages,
    /// A ring page address is not 4 KiB aligned.
    #[error("ring page {index} at {gpa:#x} is not 4 KiB aligned")]
    UnalignedPage {
        /// Position in the page list.
        index: usize,
        /// Its guest-physical address.
        gpa: u64,
    },
    /// A ring page is not (entirely) in guest memory.
    #[error("ring page {index} at {gpa:#x} is not in guest memory")]
    PageNotInMemory {
        /// Position in the page list.
        index: usize,
        /// Its guest-physical address.
        gpa: u64,
    },
    /// The area cannot hold the header and at least one entry, or the entry size is 0.
    #[error("a {area}-byte area cannot hold a ring of {entry_size}-byte entries")]
    TooSmall {
        /// Size of the ring area.
        area: usize,
        /// Entry size asked for.
        entry_size: usize,
    },
    /// A request or response buffer is larger than a ring entry.
    #[error("buffer of {len} bytes does not fit a {entry_size}-byte ring entry")]
    BadBufferSize {
        /// Length of the buffer.
        len: usize,
        /// The ring's entry size.
        entry_size: usize,
    },
    /// The backend pushed a response with no request outstanding (a backend bug).
    #[error("response pushed with no request outstanding (req_cons {req_cons}, rsp_prod_pvt {rsp_prod_pvt})")]
    NoRequestOutstanding {
        /// The backend's private request consumer index.
        req_cons: u32,
        /// The backend's private response producer index.
        rsp_prod_pvt: u32,
    },
    /// The fake frontend has no free slot for another request.
    #[error("ring full: {0} requests outstanding")]
    Full(u32),
}

/// The shared ring area as bytes.
///
/// Offsets are from the start of the area (the ring header). Implementations must check
/// bounds and return errors rather than panic: the area is guest memory.
pub trait RingPages: Send + Sync {
    /// Size of the area in bytes.
    fn len(&self) -> usize;

    /// Whether the area is empty (never true for a usable ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes at `off` out of the area.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<(), RingError>;

    /// Copies `data` into the area at `off`.
    fn write(&self, off: usize, data: &[u8]) -> Result<(), RingError>;

    /// Loads the 32-bit index word at `off` (4-byte aligned) with acquire ordering.
    fn load_u32(&self, off: usize) -> Result<u32, RingError>;

    /// Stores the 32-bit index word at `off` (4-byte aligned) with release ordering.
    fn store_u32(&self, off: usize, v: u32) -> Result<(), RingError>;
}

/// Checks that `len` bytes at `off` lie within an area of `area` bytes.
pub(crate) fn check_bounds(off: usize, len: usize, area: usize) -> Result<(), RingError> {
    match off.checked_add(len) {
        Some(end) if end <= area => Ok(()),
        _ => Err(RingError::OutOfBounds { off, len, area }),
    }
}
