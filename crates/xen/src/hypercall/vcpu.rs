//! `vcpu_op`: vcpu_info and runstate placement, and the timer operations KVM leaves to us.

use vm_memory::GuestMemoryBackend;

use super::{read_obj, GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::vcpu::*;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn vcpu_op(
        &self,
        mem: &dyn GuestVirt,
        caller: u32,
        cmd: u32,
        vcpu: u32,
        arg: u64,
    ) -> Result<i64, Errno> {
        self.check_vcpu(vcpu)?;
        match cmd {
            VCPUOP_REGISTER_VCPU_INFO => {
                let op: VcpuRegisterVcpuInfo = read_obj(mem, arg)?;
                if op.rsvd != 0 {
                    return Err(Errno::EINVAL);
                }
                // The structure must lie within one page.
                if u64::from(op.offset) + VCPU_INFO_SIZE as u64 > crate::abi::PAGE_SIZE as u64 {
                    return Err(Errno::EINVAL);
                }
                let gpa = op
                    .mfn
                    .checked_mul(crate::abi::PAGE_SIZE as u64)
                    .ok_or(Errno::EINVAL)?
                    + u64::from(op.offset);
                if !self.is_ram_range(gpa, VCPU_INFO_SIZE as u64) {
                    return Err(Errno::EINVAL);
                }
                self.platform.set_vcpu_info(vcpu, gpa).map(|()| 0)
            }
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
                let op: VcpuRegisterMemoryArea = read_obj(mem, arg)?;
                if op.addr == 0 {
                    return self.platform.set_runstate_area(vcpu, None).map(|()| 0);
                }
                let gpa = mem.translate(op.addr)?;
                let size = std::mem::size_of::<VcpuRunstateInfo>() as u64;
                // KVM updates the area by guest-physical address: its last byte must be mapped
                // too, right after the first (not on some other page the guest maps next).
                let last = op.addr.checked_add(size - 1).ok_or(Errno::EFAULT)?;
                if Some(mem.translate(last)?) != gpa.checked_add(size - 1) {
                    return Err(Errno::EINVAL);
                }
                if !self.is_ram_range(gpa, size) {
                    return Err(Errno::EFAULT);
                }
                self.platform.set_runstate_area(vcpu, Some(gpa)).map(|()| 0)
            }
            VCPUOP_IS_UP => Ok(1),
            // There is no periodic timer to stop, which tells Linux to use the one-shot one.
            VCPUOP_STOP_PERIODIC_TIMER => Ok(0),
            // Only reached before the guest bound its timer VIRQ (KVM handles them after).
            VCPUOP_SET_SINGLESHOT_TIMER | VCPUOP_STOP_SINGLESHOT_TIMER => {
                tracing::debug!(
                    caller,
                    vcpu,
                    cmd,
                    "vcpu timer op before VIRQ_TIMER is bound"
                );
                Err(Errno::EINVAL)
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    /// Whether `gpa..gpa+len` is guest RAM within one region.
    fn is_ram_range(&self, gpa: u64, len: u64) -> bool {
        let first = gpa >> crate::abi::PAGE_SHIFT;
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        let last = (end - 1) >> crate::abi::PAGE_SHIFT;
        self.info
            .ram
            .iter()
            .any(|r| r.contains(&first) && r.contains(&last))
    }
}
