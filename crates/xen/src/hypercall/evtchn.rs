//! `event_channel_op`: copies the argument in and out around [`EventChannels::hypercall`],
//! and hands timer VIRQ bindings to the platform so KVM runs the guest's timer in the kernel.

use vm_memory::{ByteValued, GuestMemoryBackend};

use super::{GuestVirt, Hypervisor};
use crate::abi::errno::Errno;
use crate::abi::evtchn::*;

impl<M: GuestMemoryBackend> Hypervisor<M> {
    pub(super) fn event_channel_op(
        &self,
        mem: &dyn GuestVirt,
        cmd: u32,
        arg: u64,
    ) -> Result<i64, Errno> {
        let size = crate::evtchn::arg_size(cmd).ok_or(Errno::ENOSYS)?;
        let mut buf = vec![0u8; size];
        mem.read(arg, &mut buf)?;
        // Timer ports that a close or reset is about to drop, found before the table changes.
        let dropped_timers: Vec<u32> = match cmd {
            EVTCHNOP_CLOSE => {
                let port = EvtchnPort::from_slice(&buf).map(|p| p.port);
                self.timer_vcpus(|p| Some(p) == port)
            }
            EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => self.timer_vcpus(|_| true),
            _ => Vec::new(),
        };
        self.evtchn.hypercall(cmd, &mut buf)?;
        // Every timer is stopped even if one refuses; the first error is reported.
        let mut stopped = Ok(());
        for vcpu in dropped_timers {
            let r = self.platform.set_timer_port(vcpu, 0);
            stopped = stopped.and(r);
        }
        match cmd {
            EVTCHNOP_BIND_IPI => {
                if let Some(op) = EvtchnBindIpi::from_slice(&buf) {
                    self.platform.ipi_bound(op.port, op.vcpu);
                }
            }
            EVTCHNOP_CLOSE => {
                if let Some(op) = EvtchnPort::from_slice(&buf) {
                    self.platform.port_closed(op.port);
                }
            }
            EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => self.platform.ports_reset(),
            _ => {}
        }
        // Reported only now: the closed ports' in-kernel routes must go whatever the timers did.
        stopped?;
        if cmd == EVTCHNOP_BIND_VIRQ {
            if let Some(op) = EvtchnBindVirq::from_slice(&buf) {
                if op.virq == VIRQ_TIMER {
                    if let Err(e) = self.platform.set_timer_port(op.vcpu, op.port) {
                        // Undo the binding: a timer port KVM does not raise would leave the
                        // guest waiting for ticks that never come.
                        let _ = self.evtchn.close(op.port);
                        return Err(e);
                    }
                }
            }
        }
        mem.write(arg, &buf)?;
        Ok(0)
    }

    /// vCPUs whose timer VIRQ is bound to a port `pick` selects.
    fn timer_vcpus(&self, pick: impl Fn(Port) -> bool) -> Vec<u32> {
        (0..self.info.max_vcpus)
            .filter(|&v| {
                self.evtchn
                    .virq_port(VIRQ_TIMER, v)
                    .is_some_and(|(port, _)| pick(port))
            })
            .collect()
    }
}
