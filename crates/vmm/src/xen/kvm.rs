//! KVM's Xen ioctls, which kvm-ioctls does not wrap.

use std::os::fd::AsRawFd;

use kvm_bindings::{
    kvm_irq_routing_xen_evtchn, kvm_xen_hvm_attr, kvm_xen_hvm_config, kvm_xen_vcpu_attr, KVMIO,
};
use vmm_sys_util::ioctl::ioctl_with_ref;
use vmm_sys_util::ioctl_iow_nr;

ioctl_iow_nr!(KVM_XEN_HVM_CONFIG, KVMIO, 0x7a, kvm_xen_hvm_config);
ioctl_iow_nr!(KVM_XEN_HVM_SET_ATTR, KVMIO, 0xc9, kvm_xen_hvm_attr);
ioctl_iow_nr!(KVM_XEN_VCPU_SET_ATTR, KVMIO, 0xcb, kvm_xen_vcpu_attr);
ioctl_iow_nr!(
    KVM_XEN_HVM_EVTCHN_SEND,
    KVMIO,
    0xd0,
    kvm_irq_routing_xen_evtchn
);

/// `KVM_IRQ_ROUTING_XEN_EVTCHN_PRIO_2LEVEL` (the only priority KVM supports).
pub const EVTCHN_PRIO_2LEVEL: u32 = u32::MAX;

pub use kvm_bindings::KVM_CAP_XEN_HVM;

fn check(r: i32) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `KVM_XEN_HVM_CONFIG` on the VM.
pub fn hvm_config(vm: &impl AsRawFd, cfg: &kvm_xen_hvm_config) -> std::io::Result<()> {
    // SAFETY: the ioctl reads a `kvm_xen_hvm_config`, which `cfg` is, and keeps no pointer.
    check(unsafe { ioctl_with_ref(vm, KVM_XEN_HVM_CONFIG(), cfg) })
}

/// `KVM_XEN_HVM_SET_ATTR` on the VM.
pub fn set_hvm_attr(vm: &impl AsRawFd, attr: &kvm_xen_hvm_attr) -> std::io::Result<()> {
    // SAFETY: the ioctl reads a `kvm_xen_hvm_attr`, which `attr` is, and keeps no pointer.
    check(unsafe { ioctl_with_ref(vm, KVM_XEN_HVM_SET_ATTR(), attr) })
}

/// `KVM_XEN_VCPU_SET_ATTR` on a vCPU (only its own thread may call it while it runs).
pub fn set_vcpu_attr(vcpu: &impl AsRawFd, attr: &kvm_xen_vcpu_attr) -> std::io::Result<()> {
    // SAFETY: the ioctl reads a `kvm_xen_vcpu_attr`, which `attr` is, and keeps no pointer.
    check(unsafe { ioctl_with_ref(vcpu, KVM_XEN_VCPU_SET_ATTR(), attr) })
}

/// `KVM_XEN_HVM_EVTCHN_SEND`: set `port` pending and raise the upcall on `vcpu`.
pub fn evtchn_send(vm: &impl AsRawFd, port: u32, vcpu: u32) -> std::io::Result<()> {
    let e = kvm_irq_routing_xen_evtchn {
        port,
        vcpu,
        priority: EVTCHN_PRIO_2LEVEL,
    };
    // SAFETY: the ioctl reads a `kvm_irq_routing_xen_evtchn`, which `e` is.
    check(unsafe { ioctl_with_ref(vm, KVM_XEN_HVM_EVTCHN_SEND(), &e) })
}

/// A VM attribute carrying one `u64` (gfn) or smaller value.
pub fn hvm_attr(kind: u32, set: impl FnOnce(&mut kvm_xen_hvm_attr)) -> kvm_xen_hvm_attr {
    // SAFETY: the struct is plain old data for which all-zero is valid.
    let mut a: kvm_xen_hvm_attr = unsafe { std::mem::zeroed() };
    a.type_ = kind as u16;
    set(&mut a);
    a
}

/// A vCPU attribute.
pub fn vcpu_attr(kind: u32, set: impl FnOnce(&mut kvm_xen_vcpu_attr)) -> kvm_xen_vcpu_attr {
    // SAFETY: the struct is plain old data for which all-zero is valid.
    let mut a: kvm_xen_vcpu_attr = unsafe { std::mem::zeroed() };
    a.type_ = kind as u16;
    set(&mut a);
    a
}
