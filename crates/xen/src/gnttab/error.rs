//! Why a grant access was refused, mapped onto Xen's `GNTST_*` codes.

use crate::abi::gnttab::{GntStatus, GrantRef};
use crate::abi::DomId;

/// A refused grant access; [`AccessError::status`] is what Xen would report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The reference is beyond the table.
    #[error("grant reference {gref} is outside the table ({nr_entries} entries)")]
    BadRef {
        /// The reference.
        gref: GrantRef,
        /// Entries the table has.
        nr_entries: u32,
    },
    /// The entry does not grant access to this domain.
    #[error("grant {gref} is not granted to domain {caller} (flags {flags:#x}, domid {domid})")]
    NotGranted {
        /// The reference.
        gref: GrantRef,
        /// The entry's flags.
        flags: u16,
        /// The entry's grantee.
        domid: DomId,
        /// Who asked.
        caller: DomId,
    },
    /// Write access to a read-only grant.
    #[error("grant {gref} is read-only")]
    ReadOnly {
        /// The reference.
        gref: GrantRef,
    },
    /// The grant is in use by another domain.
    #[error("grant {gref} is in use by domain {domid}")]
    PinnedByOther {
        /// The reference.
        gref: GrantRef,
        /// The domain using it.
        domid: DomId,
    },
    /// The guest kept changing the entry while it was being claimed.
    #[error("grant {gref} is unstable: the guest keeps changing it")]
    Unstable {
        /// The reference.
        gref: GrantRef,
    },
    /// The grant-table frame holding the entry is not placed in guest memory.
    #[error("grant {gref}: its grant-table frame is not mapped in guest memory")]
    FrameNotPlaced {
        /// The reference.
        gref: GrantRef,
    },
    /// The granted frame is not guest RAM.
    #[error("grant {gref} names frame {gfn:#x}, which is not guest RAM")]
    BadFrame {
        /// The reference.
        gref: GrantRef,
        /// The frame.
        gfn: u64,
    },
    /// A guest frame (not a grant) outside guest RAM.
    #[error("frame {gfn:#x} is not guest RAM")]
    BadGmfn {
        /// The frame.
        gfn: u64,
    },
    /// A copy crosses the end of a page.
    #[error("copy of {len} bytes at offset {offset} crosses the page end")]
    BadCopyArg {
        /// Offset in the page.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// A copy leaves the granted part of a sub-page grant.
    #[error("grant {gref}: bytes {offset}..{end} are outside the granted {start}..{limit}")]
    OutsideGrant {
        /// The reference.
        gref: GrantRef,
        /// Start of the access.
        offset: u32,
        /// End of the access.
        end: u32,
        /// Start of the granted window.
        start: u32,
        /// End of the granted window.
        limit: u32,
    },
    /// A sub-page grant where a whole page is needed, or whose window leaves the page.
    #[error("grant {gref} covers bytes {offset}+{len} only, not a whole page")]
    SubPage {
        /// The reference.
        gref: GrantRef,
        /// Window start.
        offset: u16,
        /// Window length.
        len: u16,
    },
    /// Transitive grants (v2) are not supported.
    #[error("grant {gref} is transitive, which Oxen does not support")]
    Transitive {
        /// The reference.
        gref: GrantRef,
    },
    /// The entry's use counter would overflow.
    #[error("grant {gref} is in use too many times")]
    TooManyUses {
        /// The reference.
        gref: GrantRef,
    },
    /// A domain that does not exist.
    #[error("domain {0} does not exist")]
    BadDomain(DomId),
    /// A domain the caller may not touch, or a frame of a domain other than the caller's.
    #[error("domain {0} may not be accessed this way")]
    PermissionDenied(DomId),
    /// Guest memory could not be accessed.
    #[error("guest memory access at {gpa:#x} failed")]
    Memory {
        /// The guest physical address.
        gpa: u64,
    },
}

impl AccessError {
    /// The `GNTST_*` status Xen reports for this refusal.
    pub fn status(&self) -> GntStatus {
        match self {
            AccessError::BadRef { .. } => GntStatus::bad_gntref,
            AccessError::BadFrame { .. } | AccessError::BadGmfn { .. } => GntStatus::bad_page,
            AccessError::BadCopyArg { .. } => GntStatus::bad_copy_arg,
            AccessError::BadDomain(_) => GntStatus::bad_domain,
            AccessError::PermissionDenied(_) => GntStatus::permission_denied,
            _ => GntStatus::general_error,
        }
    }
}
