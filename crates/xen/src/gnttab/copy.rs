//! `GNTTABOP_copy` issued by the guest itself.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::access::Claim;
use super::frames::gfn_to_gpa;
use super::{AccessError, GrantTable, Inner};
use crate::abi::gnttab::*;
use crate::abi::{DOMID_SELF, PAGE_SIZE};

impl<M: GuestMemoryBackend> GrantTable<M> {
    /// One `GNTTABOP_copy` element from the guest; the outcome goes in `op.status`. Either end
    /// is a grant reference in the guest's own table (granted to itself) or, with `DOMID_SELF`,
    /// one of its frames. Checks follow Xen's `gnttab_copy_one`: ends resolved first
    /// (`permission_denied` for a frame of another domain, `bad_domain` for an unknown one),
    /// grants claimed, then `bad_copy_arg` for a copy crossing a page end and `general_error`
    /// outside a sub-page grant.
    pub fn guest_copy(&self, op: &mut GnttabCopy) {
        op.status = match self.guest_copy_inner(op) {
            Ok(()) => GntStatus::okay.0,
            Err(e) => {
                tracing::debug!(error = %e, "gnttab: guest copy refused");
                e.status().0
            }
        };
    }

    fn guest_copy_inner(&self, op: &GnttabCopy) -> Result<(), AccessError> {
        if op.len == 0 {
            return Ok(());
        }
        let src_gref = op.flags & GNTCOPY_SOURCE_GREF != 0;
        let dst_gref = op.flags & GNTCOPY_DEST_GREF != 0;
        for (ptr, is_gref) in [(&op.source, src_gref), (&op.dest, dst_gref)] {
            if ptr.domid != DOMID_SELF && !is_gref {
                return Err(AccessError::PermissionDenied(ptr.domid));
            }
            let cfg = self.config();
            if ptr.domid == cfg.backend_domid {
                return Err(AccessError::PermissionDenied(ptr.domid));
            }
            if ptr.domid != DOMID_SELF && ptr.domid != cfg.domid {
                return Err(AccessError::BadDomain(ptr.domid));
            }
        }
        let mut i = self.lock();
        let src = self.claim_end(&mut i, &op.source, src_gref, true)?;
        let dst = match self.claim_end(&mut i, &op.dest, dst_gref, false) {
            Ok(d) => d,
            Err(e) => {
                self.unclaim(&mut i, src);
                return Err(e);
            }
        };
        let r = self.copy_between(op, src, dst);
        self.unclaim(&mut i, src);
        self.unclaim(&mut i, dst);
        r
    }

    fn copy_between(
        &self,
        op: &GnttabCopy,
        src: Option<Claim>,
        dst: Option<Claim>,
    ) -> Result<(), AccessError> {
        let (so, doff, len) = (
            usize::from(op.source.offset),
            usize::from(op.dest.offset),
            usize::from(op.len),
        );
        if so + len > PAGE_SIZE || doff + len > PAGE_SIZE {
            return Err(AccessError::BadCopyArg {
                offset: so.max(doff) as u32,
                len: len as u32,
            });
        }
        let src_page = match src {
            Some(c) => {
                c.check(so, len)?;
                c.gpa
            }
            None => op.source.u << crate::abi::PAGE_SHIFT,
        };
        let dst_page = match dst {
            Some(c) => {
                c.check(doff, len)?;
                c.gpa
            }
            None => op.dest.u << crate::abi::PAGE_SHIFT,
        };
        let mut buf = vec![0u8; len];
        let s = src_page + so as u64;
        self.mem()
            .read_slice(&mut buf, GuestAddress(s))
            .map_err(|_| AccessError::Memory { gpa: s })?;
        let d = dst_page + doff as u64;
        self.mem()
            .write_slice(&buf, GuestAddress(d))
            .map_err(|_| AccessError::Memory { gpa: d })
    }

    /// Claims one end: a grant (returns the claim) or a plain guest frame (checked, `None`).
    fn claim_end(
        &self,
        i: &mut Inner,
        ptr: &GnttabCopyPtr,
        is_gref: bool,
        readonly: bool,
    ) -> Result<Option<Claim>, AccessError> {
        if is_gref {
            let gref = ptr.u as GrantRef;
            return self
                .acquire(i, gref, self.config().domid, readonly, false)
                .map(Some);
        }
        let ok = gfn_to_gpa(ptr.u).is_some_and(|p| {
            GuestMemoryBackend::check_range(self.mem(), GuestAddress(p), PAGE_SIZE)
        });
        if !ok {
            return Err(AccessError::BadGmfn { gfn: ptr.u });
        }
        Ok(None)
    }

    fn unclaim(&self, i: &mut Inner, c: Option<Claim>) {
        if let Some(c) = c {
            self.release(i, c.gref, c.readonly);
        }
    }
}
