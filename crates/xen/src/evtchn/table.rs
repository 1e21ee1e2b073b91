//! The event-channel state machine of the guest and of the VMM's backend "domain".
//!
//! Everything here is single-threaded: [`super::EventChannels`] holds it under a mutex and runs
//! the [`Delivery`]s an operation returns only after unlocking, so a notifier or backend
//! handler may call back into the channels without deadlocking.

use std::sync::Arc;

use super::BackendHandler;
use crate::abi::errno::Errno;
use crate::abi::evtchn::{self as abi, virq_type, Port, VirqType, NR_VIRQS};
use crate::abi::{DomId, DOMID_SELF};

/// Ports are allocated in buckets, as Xen does; a port beyond the last bucket is invalid.
pub(crate) const BUCKET: u32 = 64;

/// Which end of the VMM's world a port belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The guest domain.
    Guest,
    /// The VMM's device backends, presented to the guest as one domain (normally dom0).
    Backend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    Reserved,
    Unbound { remote: DomId },
    Interdomain { side: Side, port: Port },
    Virq(u32),
    Ipi,
}

#[derive(Clone)]
pub(crate) struct Channel {
    pub(crate) state: State,
    pub(crate) vcpu: u32,
    pub(crate) handler: Option<Arc<dyn BackendHandler>>,
}

impl Channel {
    fn free() -> Channel {
        Channel {
            state: State::Free,
            vcpu: 0,
            handler: None,
        }
    }
}

/// Something to tell after the table lock is released.
pub(crate) enum Delivery {
    Guest {
        port: Port,
        vcpu: u32,
    },
    Unmask {
        port: Port,
        vcpu: u32,
    },
    Backend {
        handler: Arc<dyn BackendHandler>,
        port: Port,
    },
}

/// One domain's ports.
pub(crate) struct PortTable {
    pub(crate) domid: DomId,
    pub(crate) chans: Vec<Channel>,
    limit: u32,
}

impl PortTable {
    fn new(domid: DomId, limit: u32) -> PortTable {
        let mut t = PortTable {
            domid,
            chans: Vec::new(),
            limit,
        };
        t.grow_to(0);
        // Port 0 is never handed out (Xen reserves it at domain creation).
        t.chans[0].state = State::Reserved;
        t
    }

    fn grow_to(&mut self, port: u32) {
        let want = (port / BUCKET + 1) * BUCKET;
        let want = want.min(self.limit.max(1));
        if self.chans.len() < want as usize {
            self.chans.resize(want as usize, Channel::free());
        }
    }

    pub(crate) fn get(&self, port: Port) -> Option<&Channel> {
        self.chans.get(usize::try_from(port).ok()?)
    }

    fn get_mut(&mut self, port: Port) -> Option<&mut Channel> {
        self.chans.get_mut(usize::try_from(port).ok()?)
    }

    /// Xen's `get_free_port`: the lowest free port, or `ENOSPC`.
    fn alloc(&mut self) -> Result<Port, Errno> {
        if let Some(p) = self.chans.iter().position(|c| c.state == State::Free) {
            return Ok(p as Port);
        }
        let next = self.chans.len() as u32;
        if next >= self.limit {
            return Err(Errno::ENOSPC);
        }
        self.grow_to(next);
        Ok(next)
    }

    fn set(&mut self, port: Port, state: State, vcpu: u32) -> &mut Channel {
        let c = &mut self.chans[port as usize];
        c.state = state;
        c.vcpu = vcpu;
        c
    }

    pub(crate) fn in_use(&self) -> usize {
        self.chans
            .iter()
            .filter(|c| !matches!(c.state, State::Free | State::Reserved))
            .count()
    }
}

/// The guest's and the backends' port tables.
pub(crate) struct Tables {
    pub(crate) guest: PortTable,
    pub(crate) backend: PortTable,
    pub(crate) nr_vcpus: u32,
    /// Per vCPU, the port bound to each VIRQ (0 = none), as Xen's `virq_to_evtchn`.
    pub(crate) virq: Vec<[Port; NR_VIRQS as usize]>,
}

impl Tables {
    pub(crate) fn new(guest: DomId, backend: DomId, nr_vcpus: u32, limit: u32) -> Tables {
        Tables {
            guest: PortTable::new(guest, limit),
            backend: PortTable::new(backend, limit),
            nr_vcpus,
            virq: vec![[0; NR_VIRQS as usize]; nr_vcpus as usize],
        }
    }

    fn side(&mut self, side: Side) -> &mut PortTable {
        match side {
            Side::Guest => &mut self.guest,
            Side::Backend => &mut self.backend,
        }
    }

    /// Which side a domain argument names, as the guest sees it.
    fn domain_of(&self, dom: DomId) -> Option<Side> {
        if dom == DOMID_SELF || dom == self.guest.domid {
            Some(Side::Guest)
        } else if dom == self.backend.domid {
            Some(Side::Backend)
        } else {
            None
        }
    }

    /// The guest may only operate on itself: the backend domain exists but is off limits
    /// (`EPERM`, as an XSM target check), any other domain does not exist (`ESRCH`).
    fn require_self(&self, dom: DomId) -> Result<(), Errno> {
        match self.domain_of(dom) {
            Some(Side::Guest) => Ok(()),
            Some(Side::Backend) => Err(Errno::EPERM),
            None => Err(Errno::ESRCH),
        }
    }

    pub(crate) fn alloc_unbound(&mut self, op: &mut abi::EvtchnAllocUnbound) -> Result<(), Errno> {
        self.require_self(op.dom)?;
        let remote = if op.remote_dom == DOMID_SELF {
            self.guest.domid
        } else {
            op.remote_dom
        };
        let port = self.guest.alloc()?;
        self.guest.set(port, State::Unbound { remote }, 0);
        op.port = port;
        Ok(())
    }

    /// Binds a new port on `local` to the unbound `remote_port` of `remote` (which must be
    /// waiting for `local`'s domain). Returns the new port.
    fn connect(&mut self, local: Side, remote: Side, remote_port: Port) -> Result<Port, Errno> {
        let local_domid = self.side(local).domid;
        // Xen allocates the local port before it looks at the remote one: a full table
        // reports ENOSPC even for a bad remote port.
        let lport = self.side(local).alloc()?;
        let rc = match self.side(remote).get_mut(remote_port) {
            Some(rc)
                if rc.state
                    == State::Unbound {
                        remote: local_domid,
                    } =>
            {
                rc
            }
            _ => return Err(Errno::EINVAL),
        };
        rc.state = State::Interdomain {
            side: local,
            port: lport,
        };
        self.side(local).set(
            lport,
            State::Interdomain {
                side: remote,
                port: remote_port,
            },
            0,
        );
        Ok(lport)
    }

    pub(crate) fn bind_interdomain(
        &mut self,
        op: &mut abi::EvtchnBindInterdomain,
    ) -> Result<Delivery, Errno> {
        let remote = self.domain_of(op.remote_dom).ok_or(Errno::ESRCH)?;
        let lport = self.connect(Side::Guest, remote, op.remote_port)?;
        op.local_port = lport;
        // Notifications sent while the remote port was unbound were dropped; Xen makes up for
        // them by always raising the new local port.
        Ok(Delivery::Guest {
            port: lport,
            vcpu: 0,
        })
    }

    pub(crate) fn bind_virq(&mut self, op: &mut abi::EvtchnBindVirq) -> Result<(), Errno> {
        if op.virq >= NR_VIRQS {
            return Err(Errno::EINVAL);
        }
        let kind = virq_type(op.virq);
        if kind != VirqType::Vcpu && op.vcpu != 0 {
            return Err(Errno::EINVAL);
        }
        if op.vcpu >= self.nr_vcpus {
            return Err(Errno::ENOENT);
        }
        // Global VIRQs belong to the hardware domain, which an Oxen guest never is.
        if kind == VirqType::Global {
            return Err(Errno::EBUSY);
        }
        let slot = &self.virq[op.vcpu as usize][op.virq as usize];
        if *slot != 0 {
            return Err(Errno::EEXIST);
        }
        let port = self.guest.alloc()?;
        self.guest.set(port, State::Virq(op.virq), op.vcpu);
        self.virq[op.vcpu as usize][op.virq as usize] = port;
        op.port = port;
        Ok(())
    }

    pub(crate) fn bind_ipi(&mut self, op: &mut abi::EvtchnBindIpi) -> Result<(), Errno> {
        if op.vcpu >= self.nr_vcpus {
            return Err(Errno::ENOENT);
        }
        let port = self.guest.alloc()?;
        self.guest.set(port, State::Ipi, op.vcpu);
        op.port = port;
        Ok(())
    }

    /// Closes `port` of `side`; the interdomain peer falls back to unbound, waiting for us.
    pub(crate) fn close(&mut self, side: Side, port: Port) -> Result<(), Errno> {
        let domid = self.side(side).domid;
        let chan = self.side(side).get(port).ok_or(Errno::EINVAL)?;
        let (state, vcpu) = (chan.state.clone(), chan.vcpu);
        match state {
            State::Free | State::Reserved => return Err(Errno::EINVAL),
            State::Unbound { .. } | State::Ipi => {}
            State::Virq(virq) => {
                let v = if virq_type(virq) == VirqType::Vcpu {
                    vcpu
                } else {
                    0
                };
                if let Some(slot) = self.virq.get_mut(v as usize) {
                    slot[virq as usize] = 0;
                }
            }
            State::Interdomain {
                side: rside,
                port: rport,
            } => {
                if let Some(rc) = self.side(rside).get_mut(rport) {
                    rc.state = State::Unbound { remote: domid };
                }
            }
        }
        if let Some(c) = self.side(side).get_mut(port) {
            *c = Channel::free();
        }
        Ok(())
    }

    /// A send on `port` of `side`: what to deliver, if anything.
    pub(crate) fn send(&mut self, side: Side, port: Port) -> Result<Option<Delivery>, Errno> {
        let chan = self.side(side).get(port).ok_or(Errno::EINVAL)?;
        match chan.state.clone() {
            State::Interdomain {
                side: rside,
                port: rport,
            } => {
                let rc = self.side(rside).get(rport).ok_or(Errno::EINVAL)?;
                Ok(Some(match rside {
                    Side::Guest => Delivery::Guest {
                        port: rport,
                        vcpu: rc.vcpu,
                    },
                    Side::Backend => match &rc.handler {
                        Some(h) => Delivery::Backend {
                            handler: h.clone(),
                            port: rport,
                        },
                        None => return Ok(None),
                    },
                }))
            }
            State::Ipi if side == Side::Guest => Ok(Some(Delivery::Guest {
                port,
                vcpu: chan.vcpu,
            })),
            // Xen silently drops a send on a port nobody is bound to yet.
            State::Unbound { .. } => Ok(None),
            _ => Err(Errno::EINVAL),
        }
    }

    pub(crate) fn status(&self, op: &mut abi::EvtchnStatus) -> Result<(), Errno> {
        self.require_self(op.dom)?;
        let chan = self.guest.get(op.port).ok_or(Errno::EINVAL)?;
        op.u = [0, 0];
        op.status = match chan.state {
            State::Free | State::Reserved => abi::EVTCHNSTAT_CLOSED,
            State::Unbound { remote } => {
                op.u[0] = u32::from(remote);
                abi::EVTCHNSTAT_UNBOUND
            }
            State::Interdomain { side, port } => {
                op.u = [
                    u32::from(match side {
                        Side::Guest => self.guest.domid,
                        Side::Backend => self.backend.domid,
                    }),
                    port,
                ];
                abi::EVTCHNSTAT_INTERDOMAIN
            }
            State::Virq(virq) => {
                op.u[0] = virq;
                abi::EVTCHNSTAT_VIRQ
            }
            State::Ipi => abi::EVTCHNSTAT_IPI,
        };
        op.vcpu = chan.vcpu;
        Ok(())
    }

    pub(crate) fn bind_vcpu(&mut self, port: Port, vcpu: u32) -> Result<(), Errno> {
        if vcpu >= self.nr_vcpus {
            return Err(Errno::ENOENT);
        }
        let chan = self.guest.get_mut(port).ok_or(Errno::EINVAL)?;
        match chan.state {
            State::Virq(virq) if virq_type(virq) != VirqType::Vcpu => chan.vcpu = vcpu,
            State::Unbound { .. } | State::Interdomain { .. } => chan.vcpu = vcpu,
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    pub(crate) fn unmask(&self, port: Port) -> Result<Delivery, Errno> {
        let chan = self.guest.get(port).ok_or(Errno::EINVAL)?;
        Ok(Delivery::Unmask {
            port,
            vcpu: chan.vcpu,
        })
    }

    pub(crate) fn reset(&mut self, dom: DomId) -> Result<(), Errno> {
        self.require_self(dom)?;
        for port in 1..self.guest.chans.len() as Port {
            if !matches!(
                self.guest.chans[port as usize].state,
                State::Free | State::Reserved
            ) {
                self.close(Side::Guest, port)?;
            }
        }
        Ok(())
    }

    /// The port a VIRQ is bound to for `vcpu` (per-domain VIRQs live on vCPU 0).
    pub(crate) fn virq_port(&self, virq: u32, vcpu: u32) -> Option<(Port, u32)> {
        if virq >= NR_VIRQS {
            return None;
        }
        let v = if virq_type(virq) == VirqType::Vcpu {
            vcpu
        } else {
            0
        };
        let port = *self.virq.get(v as usize)?.get(virq as usize)?;
        if port == 0 {
            return None;
        }
        Some((port, self.guest.get(port)?.vcpu))
    }

    /// Allocates an unbound guest port for `remote` on the toolstack's behalf.
    pub(crate) fn host_alloc_unbound(&mut self, remote: DomId) -> Result<Port, Errno> {
        let port = self.guest.alloc()?;
        self.guest.set(port, State::Unbound { remote }, 0);
        Ok(port)
    }

    pub(crate) fn backend_bind(
        &mut self,
        guest_port: Port,
        handler: Arc<dyn BackendHandler>,
    ) -> Result<Port, Errno> {
        let bport = self.connect(Side::Backend, Side::Guest, guest_port)?;
        self.backend.chans[bport as usize].handler = Some(handler);
        Ok(bport)
    }

    pub(crate) fn backend_alloc_unbound(
        &mut self,
        handler: Arc<dyn BackendHandler>,
    ) -> Result<Port, Errno> {
        let remote = self.guest.domid;
        let bport = self.backend.alloc()?;
        self.backend
            .set(bport, State::Unbound { remote }, 0)
            .handler = Some(handler);
        Ok(bport)
    }

    /// Every invariant the tables keep; the fuzz test checks it after each operation.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for (side, t) in [(Side::Guest, &self.guest), (Side::Backend, &self.backend)] {
            assert_eq!(t.chans[0].state, State::Reserved);
            assert!(t.chans.len() as u32 <= t.limit.max(1));
            for (p, c) in t.chans.iter().enumerate() {
                match c.state {
                    State::Interdomain { side: rs, port: rp } => {
                        let other = if rs == Side::Guest {
                            &self.guest
                        } else {
                            &self.backend
                        };
                        assert_eq!(
                            other.chans[rp as usize].state,
                            State::Interdomain {
                                side,
                                port: p as Port
                            },
                            "interdomain peers must point at each other"
                        );
                    }
                    State::Virq(virq) => {
                        assert_eq!(side, Side::Guest);
                        let v = if virq_type(virq) == VirqType::Vcpu {
                            c.vcpu
                        } else {
                            0
                        };
                        assert_eq!(self.virq[v as usize][virq as usize], p as Port);
                    }
                    State::Free => assert!(c.vcpu == 0 && c.handler.is_none()),
                    _ => {}
                }
                assert!(c.vcpu < self.nr_vcpus.max(1));
            }
        }
        for per_vcpu in &self.virq {
            for (virq, &port) in per_vcpu.iter().enumerate() {
                if port != 0 {
                    assert_eq!(
                        self.guest.chans[port as usize].state,
                        State::Virq(virq as u32)
                    );
                }
            }
        }
    }
}
