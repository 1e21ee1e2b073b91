//! The guest's own grant-table operations: frames, size and version.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::{entries_per_frame, status_frames_for, GrantTable, Inner, INVALID_GFN};
use crate::abi::errno::Errno;
use crate::abi::gnttab::*;
use crate::abi::memory::XENMAPIDX_GRANT_TABLE_STATUS;
use crate::abi::{DomId, DOMID_SELF, PAGE_SHIFT, PAGE_SIZE};

/// A guest frame number as an address, if it has one.
pub(super) fn gfn_to_gpa(gfn: u64) -> Option<u64> {
    gfn.checked_mul(PAGE_SIZE as u64)
}

impl Inner {
    pub(super) fn nr_entries(&self) -> u32 {
        self.nr_frames * entries_per_frame(self.version)
    }

    /// Guest address of entry `gref`'s first byte, if its frame is placed.
    pub(super) fn entry_gpa(&self, gref: GrantRef) -> Option<u64> {
        let per = entries_per_frame(self.version);
        let size = if self.version == 2 { 16 } else { 8 };
        let gfn = (*self.shared.get((gref / per) as usize)?)?;
        Some(gfn_to_gpa(gfn)? + u64::from(gref % per) * size)
    }

    /// Guest address of v2 status word `gref`, if its frame is placed.
    pub(super) fn status_gpa(&self, gref: GrantRef) -> Option<u64> {
        let per = (PAGE_SIZE / 2) as u32;
        let gfn = (*self.status.get((gref / per) as usize)?)?;
        Some(gfn_to_gpa(gfn)? + u64::from(gref % per) * 2)
    }

    fn nr_status_frames(&self) -> u32 {
        if self.version == 2 {
            status_frames_for(self.nr_frames)
        } else {
            0
        }
    }
}

/// How a guest's domain argument resolves.
enum Dom {
    Guest,
    Backend,
    Unknown,
}

impl<M: GuestMemoryBackend> GrantTable<M> {
    fn resolve(&self, dom: DomId) -> Dom {
        let cfg = &self.shared.cfg;
        if dom == DOMID_SELF || dom == cfg.domid {
            Dom::Guest
        } else if dom == cfg.backend_domid {
            Dom::Backend
        } else {
            Dom::Unknown
        }
    }

    fn dom_status(&self, dom: DomId) -> GntStatus {
        match self.resolve(dom) {
            Dom::Guest => GntStatus::okay,
            Dom::Backend => GntStatus::permission_denied,
            Dom::Unknown => GntStatus::bad_domain,
        }
    }

    /// `GNTTABOP_setup_table` (the VMM rejects `count != 1` with `EINVAL` first). Grows the
    /// table to `op.nr_frames` and returns, per frame, where it is placed (`INVALID_GFN` when
    /// not placed; HVM guests place frames with `XENMEM_add_to_physmap`). The result goes in
    /// `op.status`; the list is only meaningful when it is `GNTST_okay`.
    pub fn setup_table(&self, op: &mut GnttabSetupTable) -> Vec<u64> {
        op.status = self.dom_status(op.dom).0;
        if op.status != GntStatus::okay.0 {
            return Vec::new();
        }
        let mut i = self.lock();
        if op.nr_frames > self.shared.cfg.max_frames {
            tracing::debug!(nr = op.nr_frames, "gnttab: setup_table beyond max frames");
            op.status = GntStatus::general_error.0;
            return Vec::new();
        }
        i.nr_frames = i.nr_frames.max(op.nr_frames);
        (0..op.nr_frames as usize)
            .map(|f| i.shared[f].unwrap_or(INVALID_GFN))
            .collect()
    }

    /// `GNTTABOP_query_size`.
    pub fn query_size(&self, op: &mut GnttabQuerySize) {
        op.status = self.dom_status(op.dom).0;
        if op.status == GntStatus::okay.0 {
            op.nr_frames = self.lock().nr_frames;
            op.max_nr_frames = self.shared.cfg.max_frames;
        }
    }

    /// `GNTTABOP_get_version`.
    pub fn get_version(&self, op: &mut GnttabGetVersion) -> Result<(), Errno> {
        match self.resolve(op.dom) {
            Dom::Guest => {
                op.version = self.lock().version;
                Ok(())
            }
            Dom::Backend => Err(Errno::EPERM),
            Dom::Unknown => Err(Errno::ESRCH),
        }
    }

    /// `XENMEM_add_to_physmap` with `XENMAPSPACE_grant_table`: place shared frame `idx` (or
    /// status frame `idx & !XENMAPIDX_grant_table_status`, v2 only) at guest frame `gpfn`,
    /// growing the table as Xen does. A frame placed for the first time is zeroed (a new Xen
    /// grant frame is empty); a frame moved takes its contents along. Another table frame at
    /// `gpfn` is displaced. `gpfn` must be guest memory (`EINVAL`).
    pub fn map_frame(&self, idx: u64, gpfn: u64) -> Result<(), Errno> {
        let gpa = gfn_to_gpa(gpfn).ok_or(Errno::EINVAL)?;
        if !GuestMemoryBackend::check_range(self.mem(), GuestAddress(gpa), PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let mut i = self.lock();
        let max = self.shared.cfg.max_frames;
        let is_status = idx & XENMAPIDX_GRANT_TABLE_STATUS != 0;
        let idx = idx & !XENMAPIDX_GRANT_TABLE_STATUS;
        if is_status {
            if i.version != 2 {
                return Err(Errno::EINVAL);
            }
            if idx >= u64::from(i.nr_status_frames()) {
                // Grow the shared frames so that the status frame exists, if within the limit
                // (8 shared frames per status frame).
                let want = (idx + 1).saturating_mul(8).min(u64::from(max)) as u32;
                if idx >= u64::from(status_frames_for(want)) {
                    return Err(Errno::EINVAL);
                }
                i.nr_frames = i.nr_frames.max(want);
            }
        } else {
            if idx >= u64::from(max) {
                return Err(Errno::EINVAL);
            }
            i.nr_frames = i.nr_frames.max(idx as u32 + 1);
        }
        let old = if is_status {
            i.status[idx as usize]
        } else {
            i.shared[idx as usize]
        };
        if old == Some(gpfn) {
            return Ok(());
        }
        let mut page = vec![0u8; PAGE_SIZE];
        if let Some(old) = old {
            self.mem()
                .read_slice(&mut page, GuestAddress(old << PAGE_SHIFT))
                .map_err(|_| Errno::EFAULT)?;
        }
        self.mem()
            .write_slice(&page, GuestAddress(gpa))
            .map_err(|_| Errno::EFAULT)?;
        let inner = &mut *i;
        for slot in inner.shared.iter_mut().chain(inner.status.iter_mut()) {
            if *slot == Some(gpfn) {
                *slot = None;
            }
        }
        if is_status {
            i.status[idx as usize] = Some(gpfn);
        } else {
            i.shared[idx as usize] = Some(gpfn);
        }
        tracing::debug!(idx, gpfn, is_status, "gnttab: frame placed");
        Ok(())
    }

    /// `GNTTABOP_set_version`. Like Xen: 1 or 2 only (`EINVAL`), 2 only if allowed
    /// (`ENOSYS`), `EBUSY` while entries past the 8 reserved ones are in use, `ERANGE` when a
    /// reserved v2 entry cannot be written as v1. The table is cleared except for the reserved
    /// entries, which are converted. `op.version` returns the version in force.
    pub fn set_version(&self, op: &mut GnttabSetVersion) -> Result<(), Errno> {
        let want = op.version;
        if want != 1 && want != 2 {
            op.version = self.version();
            return Err(Errno::EINVAL);
        }
        if want == 2 && self.shared.cfg.max_version < 2 {
            op.version = self.version();
            return Err(Errno::ENOSYS);
        }
        let mut i = self.lock();
        let r = self.switch_version(&mut i, want);
        op.version = i.version;
        r
    }

    fn switch_version(&self, i: &mut Inner, want: u32) -> Result<(), Errno> {
        if i.version == want {
            return Ok(());
        }
        if i.active.keys().any(|&g| g >= GNTTAB_NR_RESERVED_ENTRIES) {
            return Err(Errno::EBUSY);
        }
        let reserved = self.read_reserved(i)?;
        if want == 1 && reserved.iter().any(|e| e.2 > u64::from(u32::MAX)) {
            return Err(Errno::ERANGE);
        }
        let zero = vec![0u8; PAGE_SIZE];
        for gfn in i.shared[..i.nr_frames as usize].iter().flatten() {
            self.mem()
                .write_slice(&zero, GuestAddress(gfn << PAGE_SHIFT))
                .map_err(|_| Errno::EFAULT)?;
        }
        if want == 1 {
            i.status.iter_mut().for_each(|s| *s = None);
        }
        i.version = want;
        self.write_reserved(i, &reserved)
    }

    /// The reserved entries as (flags incl. reading/writing, domid, frame); v2 entries other
    /// than full-page grants read as invalid, as in Xen. Fails with `ERANGE` for transitive.
    fn read_reserved(&self, i: &Inner) -> Result<Vec<(u16, DomId, u64)>, Errno> {
        let mut out = Vec::new();
        for g in 0..GNTTAB_NR_RESERVED_ENTRIES.min(i.nr_entries()) {
            let Some(gpa) = i.entry_gpa(g) else { continue };
            let gpa = GuestAddress(gpa);
            let e = if i.version == 1 {
                let e: GrantEntryV1 = self.mem().read_obj(gpa).map_err(|_| Errno::EFAULT)?;
                (e.flags, e.domid, u64::from(e.frame))
            } else {
                let e: GrantEntryV2 = self.mem().read_obj(gpa).map_err(|_| Errno::EFAULT)?;
                match e.hdr.flags & GTF_TYPE_MASK {
                    GTF_PERMIT_ACCESS => {
                        let st: u16 = match i.status_gpa(g) {
                            Some(s) => self
                                .mem()
                                .read_obj(GuestAddress(s))
                                .map_err(|_| Errno::EFAULT)?,
                            None => 0,
                        };
                        (e.hdr.flags | st, e.hdr.domid, e.frame())
                    }
                    GTF_TRANSITIVE => return Err(Errno::ERANGE),
                    _ => (0, 0, 0),
                }
            };
            out.push(e);
        }
        Ok(out)
    }

    fn write_reserved(&self, i: &Inner, reserved: &[(u16, DomId, u64)]) -> Result<(), Errno> {
        let busy = GTF_READING | GTF_WRITING;
        for (g, &(flags, domid, frame)) in (0..).zip(reserved) {
            let Some(gpa) = i.entry_gpa(g) else { continue };
            let gpa = GuestAddress(gpa);
            let r = if i.version == 1 {
                let e = GrantEntryV1 {
                    flags,
                    domid,
                    frame: frame as u32,
                };
                self.mem().write_obj(e, gpa)
            } else {
                if let Some(s) = i.status_gpa(g) {
                    self.mem()
                        .write_obj(flags & busy, GuestAddress(s))
                        .map_err(|_| Errno::EFAULT)?;
                }
                let hdr = GrantEntryHeader {
                    flags: flags & !busy,
                    domid,
                };
                self.mem().write_obj(
                    GrantEntryV2 {
                        hdr,
                        word1: 0,
                        word2: frame,
                    },
                    gpa,
                )
            };
            r.map_err(|_| Errno::EFAULT)?;
        }
        Ok(())
    }
}
