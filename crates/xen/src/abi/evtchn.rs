//! Event-channel operations (event_channel.h).

use super::{byte_valued, DomId};

/// An event-channel port number (`evtchn_port_t`).
pub type Port = u32;

/// `EVTCHNOP_bind_interdomain`.
pub const EVTCHNOP_BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`.
pub const EVTCHNOP_BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq`.
pub const EVTCHNOP_BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close`.
pub const EVTCHNOP_CLOSE: u32 = 3;
/// `EVTCHNOP_send`.
pub const EVTCHNOP_SEND: u32 = 4;
/// `EVTCHNOP_status`.
pub const EVTCHNOP_STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`.
pub const EVTCHNOP_ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`.
pub const EVTCHNOP_BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`.
pub const EVTCHNOP_BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`.
pub const EVTCHNOP_UNMASK: u32 = 9;
/// `EVTCHNOP_reset`.
pub const EVTCHNOP_RESET: u32 = 10;
/// `EVTCHNOP_init_control` (FIFO ABI).
pub const EVTCHNOP_INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (FIFO ABI).
pub const EVTCHNOP_EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI).
pub const EVTCHNOP_SET_PRIORITY: u32 = 13;
/// `EVTCHNOP_reset_cont`.
pub const EVTCHNOP_RESET_CONT: u32 = 14;

/// `EVTCHNSTAT_closed`: the channel is not in use.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`: waiting for an interdomain connection.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`: connected to a remote domain.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`: bound to a virtual IRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`: bound to a virtual IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

/// Number of 2-level channels for a 64-bit guest (`EVTCHN_2L_NR_CHANNELS` = 64 * 64).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;
/// Number of 2-level channels for a 32-bit guest (32 * 32).
pub const EVTCHN_2L_NR_CHANNELS_32: u32 = 32 * 32;

/// `BIND_PIRQ__WILL_SHARE`.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `VIRQ_TIMER` (per vCPU).
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG` (per vCPU).
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE` (global).
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC` (global).
pub const VIRQ_DOM_EXC: u32 = 3;
/// `VIRQ_TBUF` (global).
pub const VIRQ_TBUF: u32 = 4;
/// `VIRQ_DEBUGGER` (global).
pub const VIRQ_DEBUGGER: u32 = 6;
/// `VIRQ_XENOPROF` (per vCPU).
pub const VIRQ_XENOPROF: u32 = 7;
/// `VIRQ_CON_RING` (global).
pub const VIRQ_CON_RING: u32 = 8;
/// `VIRQ_PCPU_STATE` (global).
pub const VIRQ_PCPU_STATE: u32 = 9;
/// `VIRQ_MEM_EVENT` (global).
pub const VIRQ_MEM_EVENT: u32 = 10;
/// `VIRQ_ARGO` (per domain).
pub const VIRQ_ARGO: u32 = 11;
/// `VIRQ_ENOMEM` (global).
pub const VIRQ_ENOMEM: u32 = 12;
/// `VIRQ_XENPMU` (per vCPU).
pub const VIRQ_XENPMU: u32 = 13;
/// `VIRQ_ARCH_0`, first of eight architecture VIRQs (global on x86).
pub const VIRQ_ARCH_0: u32 = 16;
/// `NR_VIRQS`.
pub const NR_VIRQS: u32 = 24;

/// How a VIRQ is routed (Xen's `enum virq_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum VirqType {
    /// Each vCPU has its own binding.
    Vcpu,
    /// One binding per domain, on vCPU 0.
    Domain,
    /// Belongs to one domain system-wide (the hardware domain unless reassigned).
    Global,
}

/// The routing type of a VIRQ below [`NR_VIRQS`], as Xen's `get_virq_type` on x86.
pub fn virq_type(virq: u32) -> VirqType {
    match virq {
        VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU => VirqType::Vcpu,
        VIRQ_ARGO => VirqType::Domain,
        _ => VirqType::Global,
    }
}

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnAllocUnbound {
    /// IN: domain to allocate in (`DOMID_SELF` or own id).
    pub dom: DomId,
    /// IN: domain allowed to bind the port.
    pub remote_dom: DomId,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindInterdomain {
    /// IN: the domain holding the unbound port.
    pub remote_dom: DomId,
    /// Padding.
    pub _pad: u16,
    /// IN: the unbound port in `remote_dom`.
    pub remote_port: Port,
    /// OUT: the new local port.
    pub local_port: Port,
}

/// `struct evtchn_bind_virq`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVirq {
    /// IN: the VIRQ.
    pub virq: u32,
    /// IN: the vCPU it is delivered to.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_bind_pirq`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindPirq {
    /// IN: the physical IRQ.
    pub pirq: u32,
    /// IN: `BIND_PIRQ__*` flags.
    pub flags: u32,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_bind_ipi`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindIpi {
    /// IN: the vCPU notified.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}

/// `struct evtchn_close`, `struct evtchn_send` and `struct evtchn_unmask` (one port each).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnPort {
    /// IN: the port.
    pub port: Port,
}

/// `struct evtchn_status`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnStatus {
    /// IN: the domain (`DOMID_SELF` or own id for an unprivileged guest).
    pub dom: DomId,
    /// Padding.
    pub _pad: u16,
    /// IN: the port.
    pub port: Port,
    /// OUT: one of `EVTCHNSTAT_*`.
    pub status: u32,
    /// OUT: the vCPU notified.
    pub vcpu: u32,
    /// OUT: the state-dependent union, see the accessors.
    pub u: [u32; 2],
}

impl EvtchnStatus {
    /// `u.unbound.dom` / `u.interdomain.dom`: the remote domain.
    pub fn remote_dom(&self) -> DomId {
        self.u[0] as DomId
    }
    /// `u.interdomain.port`.
    pub fn remote_port(&self) -> Port {
        self.u[1]
    }
    /// `u.virq` / `u.pirq`.
    pub fn virq(&self) -> u32 {
        self.u[0]
    }
}

/// `struct evtchn_bind_vcpu`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnBindVcpu {
    /// IN: the port.
    pub port: Port,
    /// IN: the vCPU to notify from now on.
    pub vcpu: u32,
}

/// `struct evtchn_reset`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnReset {
    /// IN: the domain to reset (`DOMID_SELF` or own id).
    pub dom: DomId,
}

/// `struct evtchn_init_control` (FIFO ABI).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnInitControl {
    /// IN: frame of the control block.
    pub control_gfn: u64,
    /// IN: offset of the control block in the frame.
    pub offset: u32,
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: bits in the LINK field.
    pub link_bits: u8,
    /// Padding.
    pub _pad: [u8; 7],
}

/// `struct evtchn_expand_array` (FIFO ABI).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnExpandArray {
    /// IN: frame of the new event array page.
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority` (FIFO ABI).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct EvtchnSetPriority {
    /// IN: the port.
    pub port: Port,
    /// IN: the priority.
    pub priority: u32,
}

byte_valued!(
    EvtchnAllocUnbound,
    EvtchnBindInterdomain,
    EvtchnBindVirq,
    EvtchnBindPirq,
    EvtchnBindIpi,
    EvtchnPort,
    EvtchnStatus,
    EvtchnBindVcpu,
    EvtchnReset,
    EvtchnInitControl,
    EvtchnExpandArray,
    EvtchnSetPriority,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_event_channel_h() {
        crate::abi::assert_sizes!(
            EvtchnAllocUnbound => 8,
            EvtchnBindInterdomain => 12,
            EvtchnBindVirq => 12,
            EvtchnBindPirq => 12,
            EvtchnBindIpi => 8,
            EvtchnPort => 4,
            EvtchnStatus => 24,
            EvtchnBindVcpu => 8,
            EvtchnReset => 2,
            EvtchnInitControl => 24,
            EvtchnExpandArray => 8,
            EvtchnSetPriority => 8,
        );
        assert_eq!(std::mem::offset_of!(EvtchnStatus, u), 16);
        assert_eq!(std::mem::offset_of!(EvtchnBindInterdomain, remote_port), 4);
    }

    #[test]
    fn virq_types_follow_xen() {
        assert_eq!(virq_type(VIRQ_TIMER), VirqType::Vcpu);
        assert_eq!(virq_type(VIRQ_XENPMU), VirqType::Vcpu);
        assert_eq!(virq_type(VIRQ_ARGO), VirqType::Domain);
        assert_eq!(virq_type(VIRQ_CONSOLE), VirqType::Global);
        assert_eq!(virq_type(VIRQ_ARCH_0 + 7), VirqType::Global);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 4096);
    }
}
