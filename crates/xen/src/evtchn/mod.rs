//! A domain's event channels, 2-level ABI.
//!
//! [`EventChannels`] holds the guest's port table and a second table for the VMM's device
//! backends, which the guest sees as one peer domain (normally dom0). It implements the guest's
//! `EVTCHNOP_*` hypercalls with Xen's error codes (see `xen/common/event_channel.c`) and offers
//! the VMM the toolstack's and backends' side: unbound ports for Xenstore and the console,
//! [`BackendHandle`]s for backends bound to guest ports, and VIRQ injection.
//!
//! Pending and mask bits are not kept here: they live in the guest's shared-info page, where
//! KVM sets them (`KVM_XEN_HVM_EVTCHN_SEND`). Every "raise port P on vCPU V" leaves through
//! the [`Notifier`] the VMM supplies.

mod backend;
mod bits;
mod dispatch;
mod table;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};

pub use backend::BackendHandle;
pub use bits::{BitsError, EventBits};
pub use dispatch::arg_size;

use crate::abi::errno::Errno;
use crate::abi::evtchn::{self as abi, Port, EVTCHN_2L_NR_CHANNELS};
use crate::abi::DomId;
use table::{Delivery, Side, Tables};

/// Where the VMM raises guest events.
pub trait Notifier: Send + Sync {
    /// Set `port` pending and, unless it is masked, raise the upcall on vCPU `vcpu` (what
    /// `KVM_XEN_HVM_EVTCHN_SEND` does in the kernel).
    fn deliver(&self, port: Port, vcpu: u32);

    /// The guest unmasked `port` (`EVTCHNOP_unmask`): clear its mask bit in shared info and,
    /// if it is pending, raise the upcall on `vcpu` again, as Xen's 2-level `unmask` does.
    fn unmask(&self, port: Port, vcpu: u32);
}

/// A device backend's end of an interdomain channel: told when the guest sends on it.
pub trait BackendHandler: Send + Sync {
    /// The guest sent an event to the backend's `port`.
    fn notify(&self, port: Port);
}

impl<F: Fn(Port) + Send + Sync> BackendHandler for F {
    fn notify(&self, port: Port) {
        self(port)
    }
}

/// Why the channels could not be created.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The guest and the backend domain need different ids.
    #[error("guest domain id {0} is also the backend domain id")]
    SameDomain(DomId),
    /// A domain id is one of Xen's reserved ids.
    #[error("domain id {0:#x} is reserved (DOMID_SELF and above)")]
    ReservedDomid(DomId),
    /// The port limit is outside what the 2-level ABI can address.
    #[error("port limit {0} is outside 2..={max}", max = EVTCHN_2L_NR_CHANNELS)]
    BadLimit(u32),
    /// A guest needs at least one vCPU.
    #[error("a domain needs at least one vCPU")]
    NoVcpus,
}

/// Parameters of a domain's event channels.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct EvtchnConfig {
    /// The guest's domain id.
    pub domid: DomId,
    /// The domain id the VMM's backends appear as (0: the guest sees them as dom0).
    pub backend_domid: DomId,
    /// Number of guest vCPUs.
    pub nr_vcpus: u32,
    /// Ports `0..max_ports` exist; the 2-level ABI allows 4096 for a 64-bit guest.
    pub max_ports: u32,
}

impl EvtchnConfig {
    /// A 64-bit guest `domid` with `nr_vcpus` vCPUs, its backends in dom0.
    pub fn new(domid: DomId, nr_vcpus: u32) -> EvtchnConfig {
        EvtchnConfig {
            domid,
            backend_domid: 0,
            nr_vcpus,
            max_ports: EVTCHN_2L_NR_CHANNELS,
        }
    }
}

/// One guest's event channels, shareable between vCPU threads and backends.
#[derive(Clone)]
pub struct EventChannels {
    tables: Arc<Mutex<Tables>>,
    notifier: Arc<dyn Notifier>,
}

impl std::fmt::Debug for EventChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.lock();
        f.debug_struct("EventChannels")
            .field("domid", &t.guest.domid)
            .field("guest_ports_in_use", &t.guest.in_use())
            .field("backend_ports_in_use", &t.backend.in_use())
            .finish()
    }
}

impl EventChannels {
    /// Creates the channels of a new domain (only port 0, reserved, exists in each table).
    pub fn new(cfg: EvtchnConfig, notifier: Arc<dyn Notifier>) -> Result<Self, ConfigError> {
        for d in [cfg.domid, cfg.backend_domid] {
            if d >= crate::abi::DOMID_FIRST_RESERVED {
                return Err(ConfigError::ReservedDomid(d));
            }
        }
        if cfg.domid == cfg.backend_domid {
            return Err(ConfigError::SameDomain(cfg.domid));
        }
        if !(2..=EVTCHN_2L_NR_CHANNELS).contains(&cfg.max_ports) {
            return Err(ConfigError::BadLimit(cfg.max_ports));
        }
        if cfg.nr_vcpus == 0 {
            return Err(ConfigError::NoVcpus);
        }
        let tables = Tables::new(cfg.domid, cfg.backend_domid, cfg.nr_vcpus, cfg.max_ports);
        Ok(EventChannels {
            tables: Arc::new(Mutex::new(tables)),
            notifier,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic elsewhere must not take the guest's events down with it: the tables are
        // consistent between operations, so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, d: Delivery) {
        match d {
            Delivery::Guest { port, vcpu } => {
                tracing::trace!(port, vcpu, "evtchn: deliver to guest");
                self.notifier.deliver(port, vcpu)
            }
            Delivery::Unmask { port, vcpu } => self.notifier.unmask(port, vcpu),
            Delivery::Backend { handler, port } => handler.notify(port),
        }
    }

    /// `EVTCHNOP_alloc_unbound`.
    pub fn alloc_unbound(&self, op: &mut abi::EvtchnAllocUnbound) -> Result<(), Errno> {
        self.lock().alloc_unbound(op)
    }

    /// `EVTCHNOP_bind_interdomain`: to a backend's unbound port, or (loopback) the guest's own.
    pub fn bind_interdomain(&self, op: &mut abi::EvtchnBindInterdomain) -> Result<(), Errno> {
        let d = self.lock().bind_interdomain(op)?;
        self.run(d);
        Ok(())
    }

    /// `EVTCHNOP_bind_virq`.
    pub fn bind_virq(&self, op: &mut abi::EvtchnBindVirq) -> Result<(), Errno> {
        self.lock().bind_virq(op)
    }

    /// `EVTCHNOP_bind_ipi`.
    pub fn bind_ipi(&self, op: &mut abi::EvtchnBindIpi) -> Result<(), Errno> {
        self.lock().bind_ipi(op)
    }

    /// `EVTCHNOP_bind_pirq`: the domain has no PIRQs, so every PIRQ is out of range (`EINVAL`,
    /// Xen's answer for `pirq >= nr_pirqs`).
    pub fn bind_pirq(&self, op: &mut abi::EvtchnBindPirq) -> Result<(), Errno> {
        tracing::debug!(pirq = op.pirq, "evtchn: bind_pirq refused, no PIRQs");
        Err(Errno::EINVAL)
    }

    /// `EVTCHNOP_close`.
    pub fn close(&self, port: Port) -> Result<(), Errno> {
        self.lock().close(Side::Guest, port)
    }

    /// `EVTCHNOP_send`.
    pub fn send(&self, port: Port) -> Result<(), Errno> {
        let d = self.lock().send(Side::Guest, port)?;
        if let Some(d) = d {
            self.run(d);
        }
        Ok(())
    }

    /// `EVTCHNOP_status`.
    pub fn status(&self, op: &mut abi::EvtchnStatus) -> Result<(), Errno> {
        self.lock().status(op)
    }

    /// `EVTCHNOP_bind_vcpu`.
    pub fn bind_vcpu(&self, port: Port, vcpu: u32) -> Result<(), Errno> {
        self.lock().bind_vcpu(port, vcpu)
    }

    /// `EVTCHNOP_unmask`.
    pub fn unmask(&self, port: Port) -> Result<(), Errno> {
        let d = self.lock().unmask(port)?;
        self.run(d);
        Ok(())
    }

    /// `EVTCHNOP_reset`: closes every port of the guest.
    pub fn reset(&self, dom: DomId) -> Result<(), Errno> {
        self.lock().reset(dom)
    }

    /// Raises `virq` for vCPU `vcpu` (ignored for per-domain VIRQs, which have one binding).
    /// Returns whether the guest had bound it.
    pub fn send_virq(&self, virq: u32, vcpu: u32) -> bool {
        let bound = self.lock().virq_port(virq, vcpu);
        match bound {
            Some((port, target)) => {
                self.run(Delivery::Guest { port, vcpu: target });
                true
            }
            None => false,
        }
    }

    /// The port and target vCPU `virq` is bound to for `vcpu`, if any: what the VMM hands to
    /// KVM for the in-kernel timer (`KVM_XEN_VCPU_ATTR_TYPE_TIMER`) after a `bind_virq`.
    pub fn virq_port(&self, virq: u32, vcpu: u32) -> Option<(Port, u32)> {
        self.lock().virq_port(virq, vcpu)
    }

    /// The toolstack's `alloc_unbound` in the guest for `remote` (e.g. the Xenstore and
    /// console ports a backend later binds with [`EventChannels::backend_bind`]).
    pub fn host_alloc_unbound(&self, remote: DomId) -> Result<Port, Errno> {
        self.lock().host_alloc_unbound(remote)
    }

    /// Binds a new backend port to the guest's unbound `guest_port`, which must be waiting
    /// for the backend domain (`EINVAL` otherwise, as `bind_interdomain`).
    pub fn backend_bind(
        &self,
        guest_port: Port,
        handler: Arc<dyn BackendHandler>,
    ) -> Result<BackendHandle, Errno> {
        let port = self.lock().backend_bind(guest_port, handler.clone())?;
        // Like a guest-side bind, the new local port starts out raised.
        handler.notify(port);
        Ok(BackendHandle::new(self.clone(), port))
    }

    /// Allocates a backend port the guest can bind with `EVTCHNOP_bind_interdomain`.
    pub fn backend_alloc_unbound(
        &self,
        handler: Arc<dyn BackendHandler>,
    ) -> Result<BackendHandle, Errno> {
        let port = self.lock().backend_alloc_unbound(handler)?;
        Ok(BackendHandle::new(self.clone(), port))
    }

    /// The guest's domain id.
    pub fn domid(&self) -> DomId {
        self.lock().guest.domid
    }
}

#[cfg(test)]
impl EventChannels {
    /// Asserts the tables' invariants (for the fuzz test).
    pub(crate) fn check_invariants(&self) {
        self.lock().check_invariants()
    }
}
