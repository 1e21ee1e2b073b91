//! `HYPERVISOR_event_channel_op(cmd, arg)` on raw argument bytes.
//!
//! The VMM copies `arg_size(cmd)` bytes from the guest, calls [`EventChannels::hypercall`],
//! and copies them back when it returns `Ok` (the OUT fields have been filled in).

use vm_memory::ByteValued;

use super::EventChannels;
use crate::abi::errno::Errno;
use crate::abi::evtchn::*;

/// Bytes of argument `cmd` takes, or `None` for a command Oxen does not implement.
pub fn arg_size(cmd: u32) -> Option<usize> {
    use std::mem::size_of;
    Some(match cmd {
        EVTCHNOP_ALLOC_UNBOUND => size_of::<EvtchnAllocUnbound>(),
        EVTCHNOP_BIND_INTERDOMAIN => size_of::<EvtchnBindInterdomain>(),
        EVTCHNOP_BIND_VIRQ => size_of::<EvtchnBindVirq>(),
        EVTCHNOP_BIND_IPI => size_of::<EvtchnBindIpi>(),
        EVTCHNOP_BIND_PIRQ => size_of::<EvtchnBindPirq>(),
        EVTCHNOP_CLOSE | EVTCHNOP_SEND | EVTCHNOP_UNMASK => size_of::<EvtchnPort>(),
        EVTCHNOP_STATUS => size_of::<EvtchnStatus>(),
        EVTCHNOP_BIND_VCPU => size_of::<EvtchnBindVcpu>(),
        EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => size_of::<EvtchnReset>(),
        _ => return None,
    })
}

/// Reads a `T` from the front of `arg` (any alignment), runs `f` on it, writes it back.
fn with_arg<T: ByteValued + Default>(
    arg: &mut [u8],
    f: impl FnOnce(&mut T) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let n = std::mem::size_of::<T>();
    let bytes = arg.get_mut(..n).ok_or(Errno::EFAULT)?;
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(bytes);
    f(&mut v)?;
    bytes.copy_from_slice(v.as_slice());
    Ok(())
}

impl EventChannels {
    /// Runs `EVTCHNOP_<cmd>` on its argument structure `arg` (too short: `EFAULT`). The FIFO
    /// ABI (`init_control`, `expand_array`, `set_priority`) answers `ENOSYS`, which makes
    /// Linux stay with the 2-level ABI.
    pub fn hypercall(&self, cmd: u32, arg: &mut [u8]) -> Result<(), Errno> {
        let r = match cmd {
            EVTCHNOP_ALLOC_UNBOUND => with_arg(arg, |op| self.alloc_unbound(op)),
            EVTCHNOP_BIND_INTERDOMAIN => with_arg(arg, |op| self.bind_interdomain(op)),
            EVTCHNOP_BIND_VIRQ => with_arg(arg, |op| self.bind_virq(op)),
            EVTCHNOP_BIND_IPI => with_arg(arg, |op| self.bind_ipi(op)),
            EVTCHNOP_BIND_PIRQ => with_arg(arg, |op| self.bind_pirq(op)),
            EVTCHNOP_CLOSE => with_arg(arg, |op: &mut EvtchnPort| self.close(op.port)),
            EVTCHNOP_SEND => with_arg(arg, |op: &mut EvtchnPort| self.send(op.port)),
            EVTCHNOP_UNMASK => with_arg(arg, |op: &mut EvtchnPort| self.unmask(op.port)),
            EVTCHNOP_STATUS => with_arg(arg, |op| self.status(op)),
            EVTCHNOP_BIND_VCPU => with_arg(arg, |op: &mut EvtchnBindVcpu| {
                self.bind_vcpu(op.port, op.vcpu)
            }),
            EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => {
                with_arg(arg, |op: &mut EvtchnReset| self.reset(op.dom))
            }
            _ => Err(Errno::ENOSYS),
        };
        if let Err(e) = r {
            tracing::debug!(cmd, error = %e, "evtchn: hypercall failed");
        }
        r
    }
}
