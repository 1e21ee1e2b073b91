//! Claiming grant entries (Xen's pin counts and `GTF_reading`/`GTF_writing`), and the backend
//! operations built on it: mappings and copies.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use vm_memory::bitmap::MS;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileMemory, VolatileSlice};

use super::frames::gfn_to_gpa;
use super::{Active, GrantTable, Inner};
use crate::abi::gnttab::*;
use crate::abi::{DomId, PAGE_SIZE};

/// A claimed grant: the page and the granted window in it.
#[derive(Copy, Clone, Debug)]
pub(super) struct Claim {
    pub(super) gref: GrantRef,
    pub(super) readonly: bool,
    pub(super) gpa: u64,
    pub(super) start: u16,
    pub(super) len: u16,
}

impl Claim {
    /// Checks that `offset..offset+len` is in the page and in the granted window.
    pub(super) fn check(&self, offset: usize, len: usize) -> Result<(), AccessError> {
        let end = offset.checked_add(len).filter(|&e| e <= PAGE_SIZE);
        let Some(end) = end else {
            return Err(AccessError::BadCopyArg {
                offset: offset as u32,
                len: len as u32,
            });
        };
        let (start, limit) = (
            usize::from(self.start),
            usize::from(self.start) + usize::from(self.len),
        );
        if offset < start || end > limit {
            return Err(AccessError::OutsideGrant {
                gref: self.gref,
                offset: offset as u32,
                end: end as u32,
                start: start as u32,
                limit: limit as u32,
            });
        }
        Ok(())
    }
}

use super::AccessError;

/// What a claim asks for, handed to the status-setting helpers.
#[derive(Copy, Clone, Debug)]
struct Req {
    gref: GrantRef,
    ldom: DomId,
    readonly: bool,
    /// Check the entry's type and grantee (only for the first use, as Xen).
    check: bool,
    /// A mapping: the sub-page bit must be clear.
    full_page: bool,
}

/// Most concurrent uses of one entry (Xen's pin counters are small too).
const MAX_USES: u32 = 0xffff;
/// Attempts at updating a flag word the guest keeps changing under us.
const RETRIES: usize = 5;

impl<M: GuestMemoryBackend> GrantTable<M> {
    fn mem_err(gpa: u64) -> AccessError {
        AccessError::Memory { gpa }
    }

    /// Runs `f` on the atomic `u16` at guest address `gpa`.
    fn with_u16<R>(&self, gpa: u64, f: impl FnOnce(&AtomicU16) -> R) -> Result<R, AccessError> {
        let s = self
            .mem()
            .get_slice(GuestAddress(gpa), 2)
            .map_err(|_| Self::mem_err(gpa))?;
        let a = s
            .get_atomic_ref::<AtomicU16>(0)
            .map_err(|_| Self::mem_err(gpa))?;
        Ok(f(a))
    }

    /// Where entry `gref`'s `GTF_reading`/`GTF_writing` live: the flags (v1) or the status
    /// word (v2).
    fn status_word(&self, i: &Inner, gref: GrantRef) -> Option<u64> {
        if i.version == 2 {
            i.status_gpa(gref)
        } else {
            i.entry_gpa(gref)
        }
    }

    fn clear_bits(&self, i: &Inner, gref: GrantRef, bits: u16) {
        if let Some(gpa) = self.status_word(i, gref) {
            if let Err(e) = self.with_u16(gpa, |a| a.fetch_and(!bits, Ordering::SeqCst)) {
                tracing::warn!(gref, error = %e, "gnttab: clearing status bits");
            }
        }
    }

    /// v1: checks the entry and sets the busy bits with a compare-exchange on flags+domid, so
    /// that a guest revoking the grant concurrently either wins or sees the bits.
    fn set_status_v1(&self, gpa: u64, req: Req) -> Result<(), AccessError> {
        let Req {
            gref,
            ldom,
            readonly,
            check,
            full_page,
        } = req;
        // A mapping needs the whole page: the sub-page bit must be clear (Xen checks it in v1
        // entries too).
        let mask = if full_page {
            GTF_TYPE_MASK | GTF_SUB_PAGE
        } else {
            GTF_TYPE_MASK
        };
        let s = self
            .mem()
            .get_slice(GuestAddress(gpa), 4)
            .map_err(|_| Self::mem_err(gpa))?;
        let word = s
            .get_atomic_ref::<AtomicU32>(0)
            .map_err(|_| Self::mem_err(gpa))?;
        let mut cur = word.load(Ordering::SeqCst);
        for _ in 0..RETRIES {
            let (flags, domid) = (cur as u16, (cur >> 16) as u16);
            if check && ((flags & mask) != GTF_PERMIT_ACCESS || domid != ldom) {
                return Err(AccessError::NotGranted {
                    gref,
                    flags,
                    domid,
                    caller: ldom,
                });
            }
            let mut new = flags | GTF_READING;
            if !readonly {
                if flags & GTF_READONLY != 0 {
                    return Err(AccessError::ReadOnly { gref });
                }
                new |= GTF_WRITING;
            }
            let new = (cur & 0xffff_0000) | u32::from(new);
            match word.compare_exchange(cur, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
        Err(AccessError::Unstable { gref })
    }

    /// v2: checks the header, sets the busy bits in the status word, then re-reads the header
    /// in case the guest revoked the grant in between (undoing the bits if so).
    fn set_status_v2(&self, i: &Inner, gpa: u64, req: Req) -> Result<(), AccessError> {
        let Req {
            gref,
            ldom,
            readonly,
            check,
            ..
        } = req;
        let status = i
            .status_gpa(gref)
            .ok_or(AccessError::FrameNotPlaced { gref })?;
        let read_hdr = || -> Result<GrantEntryHeader, AccessError> {
            self.mem()
                .read_obj(GuestAddress(gpa))
                .map_err(|_| Self::mem_err(gpa))
        };
        let valid = |h: &GrantEntryHeader| {
            (h.flags & GTF_TYPE_MASK) == GTF_PERMIT_ACCESS && h.domid == ldom
        };
        let h = read_hdr()?;
        if check && !valid(&h) {
            return Err(AccessError::NotGranted {
                gref,
                flags: h.flags,
                domid: h.domid,
                caller: ldom,
            });
        }
        if !readonly && h.flags & GTF_READONLY != 0 {
            return Err(AccessError::ReadOnly { gref });
        }
        let bits = if readonly {
            GTF_READING
        } else {
            GTF_READING | GTF_WRITING
        };
        self.with_u16(status, |a| a.fetch_or(bits, Ordering::SeqCst))?;
        let h2 = read_hdr()?;
        let revoked = (check && !valid(&h2)) || (!readonly && h2.flags & GTF_READONLY != 0);
        if revoked {
            let undo = if check { bits } else { GTF_WRITING };
            self.with_u16(status, |a| a.fetch_and(!undo, Ordering::SeqCst))?;
            return Err(AccessError::Unstable { gref });
        }
        Ok(())
    }

    /// Claims entry `gref` for domain `ldom` (Xen's `acquire_grant_for_copy`). `full_page`
    /// refuses sub-page grants (mappings need the whole page).
    pub(super) fn acquire(
        &self,
        i: &mut Inner,
        gref: GrantRef,
        ldom: DomId,
        readonly: bool,
        full_page: bool,
    ) -> Result<Claim, AccessError> {
        let nr_entries = i.nr_entries();
        if gref >= nr_entries {
            return Err(AccessError::BadRef { gref, nr_entries });
        }
        let gpa = i
            .entry_gpa(gref)
            .ok_or(AccessError::FrameNotPlaced { gref })?;
        let act = i.active.get(&gref).cloned();
        if let Some(a) = &act {
            if a.domid != ldom {
                return Err(AccessError::PinnedByOther {
                    gref,
                    domid: a.domid,
                });
            }
            if a.readers + a.writers >= MAX_USES {
                return Err(AccessError::TooManyUses { gref });
            }
        }
        let needs_status = match &act {
            None => true,
            Some(a) => !readonly && a.writers == 0,
        };
        let check = act.is_none();
        let req = Req {
            gref,
            ldom,
            readonly,
            check,
            full_page,
        };
        let (gfn, start, len) = match &act {
            Some(a) => {
                if needs_status {
                    self.set_status(i, gpa, req)?;
                }
                (a.gfn, a.start, a.len)
            }
            None => {
                self.set_status(i, gpa, req)?;
                match self.read_frame(i, gpa, gref, full_page) {
                    Ok(f) => f,
                    Err(e) => {
                        self.clear_bits(i, gref, GTF_READING | GTF_WRITING);
                        return Err(e);
                    }
                }
            }
        };
        let page = gfn_to_gpa(gfn)
            .filter(|&p| GuestMemoryBackend::check_range(self.mem(), GuestAddress(p), PAGE_SIZE));
        let Some(page) = page else {
            if check {
                self.clear_bits(i, gref, GTF_READING | GTF_WRITING);
            }
            return Err(AccessError::BadFrame { gref, gfn });
        };
        let a = i.active.entry(gref).or_insert(Active {
            domid: ldom,
            readers: 0,
            writers: 0,
            gfn,
            start,
            len,
        });
        if readonly {
            a.readers += 1;
        } else {
            a.writers += 1;
        }
        Ok(Claim {
            gref,
            readonly,
            gpa: page,
            start,
            len,
        })
    }

    fn set_status(&self, i: &Inner, gpa: u64, req: Req) -> Result<(), AccessError> {
        if i.version == 2 {
            self.set_status_v2(i, gpa, req)
        } else {
            self.set_status_v1(gpa, req)
        }
    }

    /// The granted frame and window of a freshly claimed entry.
    fn read_frame(
        &self,
        i: &Inner,
        gpa: u64,
        gref: GrantRef,
        full_page: bool,
    ) -> Result<(u64, u16, u16), AccessError> {
        let whole = PAGE_SIZE as u16;
        if i.version == 1 {
            let e: GrantEntryV1 = self
                .mem()
                .read_obj(GuestAddress(gpa))
                .map_err(|_| Self::mem_err(gpa))?;
            return Ok((u64::from(e.frame), 0, whole));
        }
        let e: GrantEntryV2 = self
            .mem()
            .read_obj(GuestAddress(gpa))
            .map_err(|_| Self::mem_err(gpa))?;
        if e.hdr.flags & GTF_TYPE_MASK == GTF_TRANSITIVE {
            return Err(AccessError::Transitive { gref });
        }
        if e.hdr.flags & GTF_SUB_PAGE == 0 {
            return Ok((e.frame(), 0, whole));
        }
        let (off, len) = (e.page_off(), e.length());
        if full_page || usize::from(off) + usize::from(len) > PAGE_SIZE {
            return Err(AccessError::SubPage {
                gref,
                offset: off,
                len,
            });
        }
        Ok((e.frame(), off, len))
    }

    /// Gives back one use of `gref` (Xen's `release_grant_for_copy`).
    pub(super) fn release(&self, i: &mut Inner, gref: GrantRef, readonly: bool) {
        let Some(a) = i.active.get_mut(&gref) else {
            tracing::warn!(gref, "gnttab: release of an entry not in use");
            return;
        };
        if readonly {
            a.readers = a.readers.saturating_sub(1);
        } else {
            a.writers = a.writers.saturating_sub(1);
        }
        let (writers, total) = (a.writers, a.readers + a.writers);
        if total == 0 {
            i.active.remove(&gref);
            self.clear_bits(i, gref, GTF_READING | GTF_WRITING);
        } else if writers == 0 {
            self.clear_bits(i, gref, GTF_WRITING);
        }
    }

    /// Maps grant `gref` for the backend domain: the whole page, read-only or writable. The
    /// entry stays in use (`GTF_reading`, and `GTF_writing` if writable) until the mapping is
    /// dropped.
    pub fn map(&self, gref: GrantRef, readonly: bool) -> Result<GrantMapping<M>, AccessError> {
        let ldom = self.shared.cfg.backend_domid;
        let claim = self.acquire(&mut self.lock(), gref, ldom, readonly, true)?;
        Ok(GrantMapping {
            table: self.clone(),
            claim,
        })
    }

    /// Copies `buf.len()` bytes at `offset` of the page granted by `gref` into `buf`
    /// (a backend's `GNTTABOP_copy` with a grant source).
    pub fn copy_from_grant(
        &self,
        gref: GrantRef,
        offset: usize,
        buf: &mut [u8],
    ) -> Result<(), AccessError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.with_claim(gref, true, offset, buf.len(), |mem, gpa| {
            mem.read_slice(buf, gpa)
        })
    }

    /// Copies `data` to `offset` of the page granted by `gref` (a backend's `GNTTABOP_copy`
    /// with a grant destination); the grant must be writable.
    pub fn copy_to_grant(
        &self,
        gref: GrantRef,
        offset: usize,
        data: &[u8],
    ) -> Result<(), AccessError> {
        if data.is_empty() {
            return Ok(());
        }
        self.with_claim(gref, false, offset, data.len(), |mem, gpa| {
            mem.write_slice(data, gpa)
        })
    }

    fn with_claim(
        &self,
        gref: GrantRef,
        readonly: bool,
        offset: usize,
        len: usize,
        f: impl FnOnce(&M, GuestAddress) -> Result<(), vm_memory::GuestMemoryError>,
    ) -> Result<(), AccessError> {
        let mut i = self.lock();
        let claim = self.acquire(&mut i, gref, self.shared.cfg.backend_domid, readonly, false)?;
        let r = claim.check(offset, len).and_then(|()| {
            let gpa = claim.gpa + offset as u64;
            f(self.mem(), GuestAddress(gpa)).map_err(|_| Self::mem_err(gpa))
        });
        self.release(&mut i, gref, readonly);
        r
    }
}

/// A backend's use of a granted page; dropping it ends the use.
pub struct GrantMapping<M: GuestMemoryBackend> {
    table: GrantTable<M>,
    claim: Claim,
}

impl<M: GuestMemoryBackend> std::fmt::Debug for GrantMapping<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantMapping")
            .field("claim", &self.claim)
            .finish()
    }
}

impl<M: GuestMemoryBackend> GrantMapping<M> {
    /// The grant reference.
    pub fn gref(&self) -> GrantRef {
        self.claim.gref
    }

    /// Guest physical address of the granted page.
    pub fn gpa(&self) -> GuestAddress {
        GuestAddress(self.claim.gpa)
    }

    /// Whether the mapping is read-only.
    pub fn is_readonly(&self) -> bool {
        self.claim.readonly
    }

    /// Reads from the page at `offset`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        self.claim.check(offset, buf.len())?;
        let gpa = self.claim.gpa + offset as u64;
        self.table
            .mem()
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| AccessError::Memory { gpa })
    }

    /// The guest memory of `offset..offset + len` in the page, for I/O straight out of it
    /// (no copy through a buffer). The slice borrows the mapping, so the grant stays in use
    /// for as long as it lives. Only for reading the page: see [`GrantMapping::slice_mut`].
    pub fn slice(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<VolatileSlice<'_, MS<'_, M>>, AccessError> {
        self.claim.check(offset, len)?;
        let gpa = self.claim.gpa + offset as u64;
        self.table
            .mem()
            .get_slice(GuestAddress(gpa), len)
            .map_err(|_| AccessError::Memory { gpa })
    }

    /// Like [`GrantMapping::slice`], for I/O straight into the page; refused on a read-only
    /// mapping.
    pub fn slice_mut(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<VolatileSlice<'_, MS<'_, M>>, AccessError> {
        if self.claim.readonly {
            return Err(AccessError::ReadOnly {
                gref: self.claim.gref,
            });
        }
        self.slice(offset, len)
    }

    /// Writes to the page at `offset`; refused on a read-only mapping.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        if self.claim.readonly {
            return Err(AccessError::ReadOnly {
                gref: self.claim.gref,
            });
        }
        self.claim.check(offset, data.len())?;
        let gpa = self.claim.gpa + offset as u64;
        self.table
            .mem()
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| AccessError::Memory { gpa })
    }
}

impl<M: GuestMemoryBackend> Drop for GrantMapping<M> {
    fn drop(&mut self) {
        let mut i = self.table.lock();
        self.table
            .release(&mut i, self.claim.gref, self.claim.readonly);
    }
}
