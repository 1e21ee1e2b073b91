//! `grant_table_op`: copies `count` argument elements in and out around
//! [`GrantTable::hypercall`](crate::gnttab::GrantTable::hypercall) and writes the frame list
//! of `setup_table`.

use vm_memory::{ByteValued, GuestMemoryBackend};

use super::{GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::gnttab::*;

/// Most elements one call takes: bounds the VMM's buffer whatever `count` the guest passes
/// (Linux batches at most a few hundred copies).
const MAX_BATCH: u32 = 1024;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn grant_table_op(
        &self,
        mem: &dyn GuestVirt,
        cmd: u32,
        arg: u64,
        count: u64,
    ) -> Result<i64, Errno> {
        let size = crate::gnttab::arg_size(cmd).ok_or(Errno::ENOSYS)?;
        let count = u32::try_from(count).map_err(|_| Errno::EINVAL)?;
        if count > MAX_BATCH {
            return Err(Errno::E2BIG);
        }
        let mut buf = vec![0u8; size * count as usize];
        mem.read(arg, &mut buf)?;
        let frames = self.gnttab.hypercall(cmd, count, &mut buf)?;
        if cmd == GNTTABOP_SETUP_TABLE {
            if let Some(op) = GnttabSetupTable::from_slice(&buf[..size]) {
                if op.status == 0 {
                    for (i, f) in frames.iter().enumerate() {
                        let at = op
                            .frame_list
                            .checked_add(8 * i as u64)
                            .ok_or(Errno::EFAULT)?;
                        mem.write(at, &f.to_le_bytes())?;
                    }
                }
            }
        }
        mem.write(arg, &buf)?;
        Ok(0)
    }
}
