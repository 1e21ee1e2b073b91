//! `hvm_op`: HVM parameters (the callback vector, the Xenstore and console rings) and the
//! per-vCPU upcall vector.

use vm_memory::GuestMemoryBackend;

use super::{read_obj, write_obj, GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::hvm::*;

/// Xen refuses upcall vectors below this (they are exceptions).
const MIN_VECTOR: u8 = 0x10;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn hvm_op(&self, mem: &dyn GuestVirt, cmd: u32, arg: u64) -> Result<i64, Errno> {
        match cmd {
            HVMOP_GET_PARAM => {
                let mut p: XenHvmParam = read_obj(mem, arg)?;
                self.check_self(p.domid)?;
                p.value = self.param(p.index).ok_or(Errno::EINVAL)?;
                write_obj(mem, arg, &p).map(|()| 0)
            }
            HVMOP_SET_PARAM => {
                let p: XenHvmParam = read_obj(mem, arg)?;
                self.check_self(p.domid)?;
                self.guest_set_param(p.index, p.value).map(|()| 0)
            }
            HVMOP_SET_EVTCHN_UPCALL_VECTOR => {
                let v: XenHvmEvtchnUpcallVector = read_obj(mem, arg)?;
                self.check_vcpu(v.vcpu)?;
                if v.vector < MIN_VECTOR {
                    return Err(Errno::EINVAL);
                }
                self.platform.set_vcpu_upcall_vector(v.vcpu, v.vector)?;
                self.state().percpu_upcall = true;
                Ok(0)
            }
            // A hint that a page table is going away: nothing to drop on KVM.
            HVMOP_PAGETABLE_DYING => Ok(0),
            _ => Err(Errno::ENOSYS),
        }
    }

    fn guest_set_param(&self, index: u32, value: u64) -> Result<(), Errno> {
        if index >= HVM_NR_PARAMS {
            return Err(Errno::EINVAL);
        }
        match index {
            HVM_PARAM_CALLBACK_IRQ => match CallbackVia::decode(value) {
                Some(CallbackVia::Vector(v)) if v >= MIN_VECTOR => {
                    self.platform.set_callback_vector(v)?;
                }
                Some(CallbackVia::None) => self.platform.set_callback_vector(0)?,
                // Vectors below 0x10 are exceptions: a bad value, not an unsupported type.
                Some(CallbackVia::Vector(_)) => return Err(Errno::EINVAL),
                // With per-vCPU upcall vectors, Linux still writes GSI 1 "to look enlightened"
                // to the toolstack; events keep going through the vectors, so it is only kept.
                Some(CallbackVia::Gsi(_)) if self.state().percpu_upcall => {}
                // GSI and PCI INTx callbacks need a level-triggered line the VMM would have to
                // de-assert when the guest acknowledges; Linux uses the vector when offered.
                Some(_) => return Err(Errno::ENOSYS),
                None => return Err(Errno::EINVAL),
            },
            // The toolstack's values; a guest may read but not move them.
            HVM_PARAM_STORE_PFN
            | HVM_PARAM_STORE_EVTCHN
            | HVM_PARAM_CONSOLE_PFN
            | HVM_PARAM_CONSOLE_EVTCHN
            | HVM_PARAM_IOREQ_PFN
            | HVM_PARAM_BUFIOREQ_PFN
            | HVM_PARAM_IDENT_PT
            | HVM_PARAM_DM_DOMAIN => return Err(Errno::EPERM),
            _ => {}
        }
        self.set_param(index, value)
    }
}
