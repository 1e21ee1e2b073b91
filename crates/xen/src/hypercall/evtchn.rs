//! `event_channel_op`: copies the argument in and out around [`EventChannels::hypercall`],
//! and hands timer VIRQ bindings to the platform so KVM runs the guest's timer in the kernel,
//! and IPI and loopback channels so KVM delivers their sends without a VMM exit.

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
        // The other end of a loopback channel being closed loses its in-kernel route too.
        let closing_peer = match cmd {
            EVTCHNOP_CLOSE => EvtchnPort::from_slice(&buf)
                .and_then(|p| self.loopback_peer(p.port))
                .map(|(peer, _, _)| peer),
            _ => None,
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
                if let Some(peer) = closing_peer {
                    self.platform.port_closed(peer);
                }
            }
            // A channel within the guest: KVM can raise each end on a send to the other.
            EVTCHNOP_BIND_INTERDOMAIN => {
                if let Some(op) = EvtchnBindInterdomain::from_slice(&buf) {
                    if let Some((peer, vcpu, peer_vcpu)) = self.loopback_peer(op.local_port) {
                        self.platform.route(op.local_port, peer, peer_vcpu);
                        self.platform.route(peer, op.local_port, vcpu);
                    }
                }
            }
            EVTCHNOP_BIND_VCPU => {
                if let Some(op) = EvtchnBindVcpu::from_slice(&buf) {
                    if let Some((peer, vcpu, _)) = self.loopback_peer(op.port) {
                        self.platform.route(peer, op.port, vcpu);
                    }
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

    /// For one end of an interdomain channel whose other end is the guest itself (a loopback):
    /// the other end, this end's vCPU and the other end's vCPU.
    fn loopback_peer(&self, port: Port) -> Option<(Port, u32, u32)> {
        let status = |port| {
            let mut st = EvtchnStatus {
                dom: crate::abi::DOMID_SELF,
                port,
                ..Default::default()
            };
            self.evtchn.status(&mut st).ok().map(|()| st)
        };
        let st = status(port)?;
        if st.status != EVTCHNSTAT_INTERDOMAIN || st.remote_dom() != self.info.domid {
            return None;
        }
        let peer = status(st.remote_port())?;
        Some((st.remote_port(), st.vcpu, peer.vcpu))
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
