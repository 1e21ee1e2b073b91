//! `memory_op`: placing shared info and grant frames, the memory map, and the balloon's
//! reservation changes.

use vm_memory::GuestMemoryBackend;

use super::{read_obj, write_obj, GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::memory::*;

/// The command is in the low bits of `memory_op`'s first argument; the rest is Xen's
/// continuation (start extent), which Oxen never sets because it finishes every call.
const MEMOP_CMD_MASK: u64 = 0x3f;
/// Bits of the continuation in the first argument.
const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Largest extent order the balloon may use (Linux uses 0; Xen limits HVM guests to 9).
const MAX_EXTENT_ORDER: u32 = 9;
/// Most extents one reservation call may name (Xen: `UINT_MAX >> MEMOP_EXTENT_SHIFT`).
const MAX_NR_EXTENTS: u64 = (u32::MAX >> MEMOP_EXTENT_SHIFT) as u64;

/// One e820 entry as `XENMEM_memory_map` writes it (`struct e820entry`, packed, 20 bytes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type (1 RAM, 2 reserved, ...).
    pub kind: u32,
}

impl E820Entry {
    fn bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn memory_op(&self, mem: &dyn GuestVirt, cmd: u64, arg: u64) -> Result<i64, Errno> {
        let start_extent = cmd >> MEMOP_EXTENT_SHIFT;
        match (cmd & MEMOP_CMD_MASK) as u32 {
            XENMEM_ADD_TO_PHYSMAP => {
                let op: XenAddToPhysmap = read_obj(mem, arg)?;
                self.add_to_physmap(&op).map(|()| 0)
            }
            XENMEM_MEMORY_MAP => {
                let mut op: XenMemoryMap = read_obj(mem, arg)?;
                let n = (op.nr_entries as usize).min(self.info.e820.len());
                if n < self.info.e820.len() {
                    // Xen fails rather than truncate the map.
                    return Err(Errno::EINVAL);
                }
                for (i, e) in self.info.e820.iter().enumerate() {
                    let at = op.buffer.checked_add(20 * i as u64).ok_or(Errno::EFAULT)?;
                    mem.write(at, &e.bytes())?;
                }
                op.nr_entries = n as u32;
                write_obj(mem, arg, &op).map(|()| 0)
            }
            XENMEM_CURRENT_RESERVATION | XENMEM_MAXIMUM_RESERVATION => {
                let dom: crate::abi::DomId = read_obj(mem, arg)?;
                self.check_self(dom)?;
                Ok(
                    if cmd & MEMOP_CMD_MASK == u64::from(XENMEM_CURRENT_RESERVATION) {
                        self.state().pages as i64
                    } else {
                        self.info.max_pages as i64
                    },
                )
            }
            XENMEM_MAXIMUM_RAM_PAGE | XENMEM_MAXIMUM_GPFN => Ok(self
                .info
                .ram
                .iter()
                .map(|r| r.end.saturating_sub(1))
                .max()
                .unwrap_or(0)
                as i64),
            c @ (XENMEM_DECREASE_RESERVATION
            | XENMEM_POPULATE_PHYSMAP
            | XENMEM_INCREASE_RESERVATION) => {
                let op: XenMemoryReservation = read_obj(mem, arg)?;
                self.reservation(mem, c, &op, start_extent)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn add_to_physmap(&self, op: &XenAddToPhysmap) -> Result<(), Errno> {
        self.check_self(op.domid)?;
        match op.space {
            XENMAPSPACE_SHARED_INFO => {
                if op.idx != 0 {
                    return Err(Errno::EINVAL);
                }
                if !self.is_ram(op.gpfn) {
                    return Err(Errno::EINVAL);
                }
                self.platform.map_shared_info(op.gpfn)?;
                self.state().shared_info = Some(op.gpfn);
                Ok(())
            }
            XENMAPSPACE_GRANT_TABLE => self.gnttab.map_frame(op.idx, op.gpfn),
            _ => Err(Errno::ENOSYS),
        }
    }

    fn is_ram(&self, gfn: u64) -> bool {
        self.info.ram.iter().any(|r| r.contains(&gfn))
    }

    /// `decrease_reservation` releases each extent's frames; `populate_physmap` and
    /// `increase_reservation` bring them back. Returns the number of extents done, which is
    /// short of `nr_extents` at the first refused one (as Xen reports partial success).
    fn reservation(
        &self,
        mem: &dyn GuestVirt,
        cmd: u32,
        op: &XenMemoryReservation,
        start: u64,
    ) -> Result<i64, Errno> {
        self.check_self(op.domid)?;
        if op.extent_order > MAX_EXTENT_ORDER {
            return Err(Errno::EINVAL);
        }
        // Xen's limit: a count whose continuation could not be encoded in the command. It
        // also bounds the result, which a guest could otherwise make anything up to 2^58.
        if op.nr_extents > MAX_NR_EXTENTS {
            return Err(Errno::EINVAL);
        }
        // Xen never hands back more extents than requested, and a guest could pass 2^64.
        if start > op.nr_extents {
            return Err(Errno::EINVAL);
        }
        let per_extent = 1u64 << op.extent_order;
        let mut done = start;
        while done < op.nr_extents {
            // A list entry that faults (or wraps past the top of the address space) ends the
            // call like a refused extent: the extents already done must be reported, or the
            // guest would lose track of pages it no longer has.
            let Some(slot) = done
                .checked_mul(8)
                .and_then(|o| op.extent_start.checked_add(o))
            else {
                break;
            };
            let Ok(gfn) = read_obj::<u64>(mem, slot) else {
                break;
            };
            let Some(end) = gfn.checked_add(per_extent) else {
                break;
            };
            let frames = gfn..end;
            if !gfn.is_multiple_of(per_extent)
                || !self
                    .info
                    .ram
                    .iter()
                    .any(|r| r.start <= frames.start && frames.end <= r.end)
            {
                break;
            }
            let ok = if cmd == XENMEM_DECREASE_RESERVATION {
                self.release(frames)
            } else {
                self.populate(frames)
            };
            if !ok {
                break;
            }
            done += 1;
        }
        Ok(done as i64)
    }

    fn release(&self, frames: std::ops::Range<u64>) -> bool {
        let mut s = self.state();
        if frames.clone().any(|f| s.released.contains(&f)) {
            return false;
        }
        for f in frames.clone() {
            if self.platform.release_page(f).is_err() {
                return false;
            }
            s.released.insert(f);
            s.pages -= 1;
        }
        true
    }

    fn populate(&self, frames: std::ops::Range<u64>) -> bool {
        let mut s = self.state();
        let missing: Vec<u64> = frames.filter(|f| s.released.contains(f)).collect();
        if s.pages + missing.len() as u64 > self.info.max_pages {
            return false;
        }
        for f in missing {
            if self.platform.populate_page(f).is_err() {
                return false;
            }
            s.released.remove(&f);
            s.pages += 1;
        }
        true
    }
}
