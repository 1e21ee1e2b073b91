//! `sched_op`: yield, block, poll and shutdown.

use vm_memory::GuestMemoryBackend;

use super::{read_obj, GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::sched::*;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn sched_op(&self, mem: &dyn GuestVirt, cmd: u32, arg: u64) -> Result<i64, Errno> {
        match cmd {
            SCHEDOP_YIELD => {
                std::thread::yield_now();
                Ok(0)
            }
            // KVM runs block and poll in the kernel once event delivery is set up; reaching
            // here, returning at once is a spurious wake-up, which both allow.
            SCHEDOP_BLOCK => Ok(0),
            SCHEDOP_POLL => {
                let _: SchedPoll = read_obj(mem, arg)?;
                std::thread::yield_now();
                Ok(0)
            }
            SCHEDOP_SHUTDOWN => {
                let op: SchedShutdown = read_obj(mem, arg)?;
                let reason = ShutdownReason::from_code(op.reason).ok_or(Errno::EINVAL)?;
                self.platform.shutdown(reason);
                Ok(0)
            }
            SCHEDOP_SHUTDOWN_CODE => {
                // Records the reason a later crash or shutdown reports; nothing to keep yet.
                let op: SchedShutdown = read_obj(mem, arg)?;
                ShutdownReason::from_code(op.reason).ok_or(Errno::EINVAL)?;
                Ok(0)
            }
            SCHEDOP_REMOTE_SHUTDOWN => {
                let op: SchedRemoteShutdown = read_obj(mem, arg)?;
                let reason = ShutdownReason::from_code(op.reason).ok_or(Errno::EINVAL)?;
                self.check_self(op.domain_id)?;
                self.platform.shutdown(reason);
                Ok(0)
            }
            _ => Err(Errno::ENOSYS),
        }
    }
}
