//! Errors: per request (answered on the ring), per queue (the ring is lost), at connection.

use xen::gnttab::AccessError;
use xen_ring::RingError;

use crate::abi::{BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR};

/// Why one request was refused or failed. The request is answered with
/// [`RequestError::status`]; the queue goes on.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// An operation code the backend does not know.
    #[error("unknown operation {0}")]
    UnknownOperation(u8),
    /// An indirect request whose inner operation is not read or write.
    #[error("indirect request with operation {0} (only read and write may be indirect)")]
    BadIndirectOperation(u8),
    /// A read or write without segments.
    #[error("operation {op} with no segments")]
    NoSegments {
        /// The operation.
        op: u8,
    },
    /// More segments than the request kind allows.
    #[error("operation {op} with {nr} segments (at most {max})")]
    TooManySegments {
        /// The operation.
        op: u8,
        /// Segments asked for.
        nr: u32,
        /// The limit.
        max: u32,
    },
    /// A segment whose sector bounds are impossible.
    #[error(
        "segment {index} (grant {gref}): sectors {first_sect}..={last_sect} do not fit a page"
    )]
    BadSegment {
        /// Position of the segment in the request.
        index: usize,
        /// Its grant reference.
        gref: u32,
        /// First sector.
        first_sect: u8,
        /// Last sector.
        last_sect: u8,
    },
    /// A sector range that does not lie within the disk (or overflows).
    #[error("sectors {sector}+{nr_sectors} are beyond the disk's {disk_sectors} sectors")]
    BeyondDisk {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        nr_sectors: u64,
        /// Size of the disk in sectors.
        disk_sectors: u64,
    },
    /// A write or discard to a read-only disk.
    #[error("operation {op} on a read-only disk")]
    ReadOnlyDisk {
        /// The operation.
        op: u8,
    },
    /// The grant layer refused a page.
    #[error("grant {gref}: {source}")]
    Grant {
        /// The grant reference.
        gref: u32,
        /// What the grant table said.
        source: AccessError,
    },
    /// The disk image failed or refused the operation.
    #[error("disk {what}: {source}")]
    Disk {
        /// The disk operation.
        what: &'static str,
        /// The image's error.
        source: block::Error,
    },
}

impl RequestError {
    /// The `BLKIF_RSP_*` status the frontend gets.
    pub fn status(&self) -> i16 {
        match self {
            RequestError::UnknownOperation(_) => BLKIF_RSP_EOPNOTSUPP,
            RequestError::Disk {
                source: block::Error::Unsupported(_),
                ..
            } => BLKIF_RSP_EOPNOTSUPP,
            _ => BLKIF_RSP_ERROR,
        }
    }
}

/// The queue cannot go on: the ring is unusable (hostile indices or unreachable memory). The
/// caller should disconnect the frontend (switch the backend to `Closing`).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The shared ring failed.
    #[error("blkif ring: {0}")]
    Ring(#[from] RingError),
}

/// Why a queue could not be set up from the frontend's Xenstore entries.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `ring-page-order` is not a number or exceeds the advertised maximum.
    #[error("ring-page-order {value:?} is invalid (at most {max})")]
    BadRingPageOrder {
        /// The value read.
        value: String,
        /// `max-ring-page-order`.
        max: u32,
    },
    /// A ring reference key is missing or not a number.
    #[error("{key} is missing or invalid ({value:?})")]
    BadRingRef {
        /// The key.
        key: String,
        /// The value read, if any.
        value: Option<String>,
    },
    /// The number of ring pages is not a power of two within the maximum.
    #[error("{0} ring pages (must be a power of two, at most 16)")]
    BadPageCount(usize),
    /// A ring page's grant was refused.
    #[error("ring page {index}, grant {gref}: {source}")]
    Grant {
        /// Position of the page.
        index: usize,
        /// Its grant reference.
        gref: u32,
        /// What the grant table said.
        source: AccessError,
    },
    /// The ring could not be laid over the pages.
    #[error("ring: {0}")]
    Ring(#[from] RingError),
}
