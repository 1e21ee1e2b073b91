//! The ring's layout: header offsets and slot arithmetic shared by both ends.

use std::sync::atomic::{fence, Ordering};

use crate::{RingError, RingPages};

/// Offset of `req_prod` in the ring header.
pub const REQ_PROD_OFFSET: usize = 0;
/// Offset of `req_event` in the ring header.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Offset of `rsp_prod` in the ring header.
pub const RSP_PROD_OFFSET: usize = 8;
/// Offset of `rsp_event` in the ring header.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Offset of the first slot: the header is 16 bytes of indices plus 48 bytes of padding.
pub const ENTRIES_OFFSET: usize = 64;

/// Where the slots of a ring lie in its area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    entry_size: usize,
    nr_ents: u32,
}

impl RingLayout {
    /// The layout of a ring of `entry_size`-byte slots in an `area`-byte area: the largest
    /// power of two `n` with `64 + n * entry_size <= area` (Xen's `__RING_SIZE`).
    pub fn new(area: usize, entry_size: usize) -> Result<Self, RingError> {
        let too_small = RingError::TooSmall { area, entry_size };
        if entry_size == 0 || area < ENTRIES_OFFSET {
            return Err(too_small);
        }
        let fit = (area - ENTRIES_OFFSET) / entry_size;
        if fit == 0 {
            return Err(too_small);
        }
        // Largest power of two <= fit, capped so that it fits a u32 and index arithmetic.
        let n = 1usize << (usize::BITS - 1 - fit.leading_zeros());
        let nr_ents = u32::try_from(n.min(1 << 31)).map_err(|_| too_small)?;
        Ok(RingLayout {
            entry_size,
            nr_ents,
        })
    }

    /// Size of one slot in bytes.
    pub fn entry_size(&self) -> usize {
        self.entry_size
    }

    /// Number of slots (a power of two).
    pub fn nr_ents(&self) -> u32 {
        self.nr_ents
    }

    /// Offset in the area of the slot that index `idx` (free-running) designates.
    pub fn slot_offset(&self, idx: u32) -> usize {
        ENTRIES_OFFSET + (idx & (self.nr_ents - 1)) as usize * self.entry_size
    }

    /// Checks that a `len`-byte request or response fits one slot.
    pub(crate) fn check_buffer(&self, len: usize) -> Result<(), RingError> {
        if len > self.entry_size {
            return Err(RingError::BadBufferSize {
                len,
                entry_size: self.entry_size,
            });
        }
        Ok(())
    }
}

/// Xen's event rule: after moving a producer index from `old` to `new`, the other end asked
/// to be notified (its event index is `event`) iff `event` lies in `(old, new]`.
pub(crate) fn needs_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Publishes producer index `new` at `prod_off` (the previous one was `old`) and tells
/// whether the other end, whose event index is at `event_off`, must be notified
/// (`RING_PUSH_*_AND_CHECK_NOTIFY`).
pub(crate) fn publish<P: RingPages>(
    pages: &P,
    prod_off: usize,
    event_off: usize,
    old: u32,
    new: u32,
) -> Result<bool, RingError> {
    // Release: the entries are visible before the index that publishes them.
    pages.store_u32(prod_off, new)?;
    // Full barrier: the event index must be read after the producer index is visible, or a
    // peer going to sleep could miss both the entries and the notification.
    fence(Ordering::SeqCst);
    let event = pages.load_u32(event_off)?;
    Ok(needs_notify(old, new, event))
}
