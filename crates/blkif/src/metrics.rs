//! Per-queue counters.

use crate::error::RequestError;

/// Requests refused or failed, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Unknown operations and unsupported disk operations (answered `EOPNOTSUPP`).
    pub unsupported: u64,
    /// Bad segment counts or sector bounds within a page, bad indirect operations.
    pub malformed: u64,
    /// Sector ranges beyond the disk.
    pub out_of_range: u64,
    /// Writes or discards to a read-only disk.
    pub read_only: u64,
    /// Grants the grant table refused.
    pub grant: u64,
    /// Disk I/O failures.
    pub io: u64,
}

/// What a queue has done since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Requests answered (successfully or not).
    pub requests: u64,
    /// Bytes read from the disk into guest pages.
    pub bytes_read: u64,
    /// Bytes written from guest pages to the disk.
    pub bytes_written: u64,
    /// Flushes done (alone or around barrier writes).
    pub flushes: u64,
    /// Discards done.
    pub discards: u64,
    /// Failures by kind.
    pub errors: ErrorCounts,
}

impl Metrics {
    /// Adds `other`'s counters to these (totals over several queues or connections).
    pub fn add(&mut self, other: &Metrics) {
        self.requests += other.requests;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.flushes += other.flushes;
        self.discards += other.discards;
        let (e, o) = (&mut self.errors, &other.errors);
        e.unsupported += o.unsupported;
        e.malformed += o.malformed;
        e.out_of_range += o.out_of_range;
        e.read_only += o.read_only;
        e.grant += o.grant;
        e.io += o.io;
    }

    pub(crate) fn count_error(&mut self, e: &RequestError) {
        let c = &mut self.errors;
        match e {
            RequestError::UnknownOperation(_) => c.unsupported += 1,
            RequestError::BadIndirectOperation(_)
            | RequestError::NoSegments { .. }
            | RequestError::TooManySegments { .. }
            | RequestError::BadSegment { .. } => c.malformed += 1,
            RequestError::BeyondDisk { .. } => c.out_of_range += 1,
            RequestError::ReadOnlyDisk { .. } => c.read_only += 1,
            RequestError::Grant { .. } => c.grant += 1,
            RequestError::Disk {
                source: block::Error::Unsupported(_),
                ..
            } => c.unsupported += 1,
            RequestError::Disk { .. } => c.io += 1,
        }
    }
}
