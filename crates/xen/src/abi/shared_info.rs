//! The shared-info page and `vcpu_info` (xen.h, arch-x86/xen.h), 64-bit guest layout.

use super::byte_valued;

/// vCPUs whose `vcpu_info` lives in the shared-info page (`XEN_LEGACY_MAX_VCPUS`).
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;
/// Offset of `evtchn_pending[64]` in shared info.
pub const SHINFO_EVTCHN_PENDING: u64 = 0x800;
/// Offset of `evtchn_mask[64]` in shared info.
pub const SHINFO_EVTCHN_MASK: u64 = 0xa00;
/// Offset of `wc_version` (the wall-clock fields follow).
pub const SHINFO_WC_VERSION: u64 = 0xc00;
/// Offset of `vcpu_info.evtchn_upcall_pending`.
pub const VCPU_INFO_UPCALL_PENDING: u64 = 0;
/// Offset of `vcpu_info.evtchn_upcall_mask`.
pub const VCPU_INFO_UPCALL_MASK: u64 = 1;
/// Offset of `vcpu_info.evtchn_pending_sel`.
pub const VCPU_INFO_PENDING_SEL: u64 = 8;

/// `struct vcpu_time_info`: the PV clock.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimeInfo {
    /// Odd while being updated.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns) at the last update.
    pub system_time: u64,
    /// TSC to ns multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// TSC shift before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}

/// `struct vcpu_info`: 64 bytes per vCPU.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuInfo {
    /// Set when an upcall is due.
    pub evtchn_upcall_pending: u8,
    /// Set by the guest to hold off upcalls.
    pub evtchn_upcall_mask: u8,
    /// Padding.
    pub pad: [u8; 6],
    /// Which words of `evtchn_pending` have pending ports for this vCPU.
    pub evtchn_pending_sel: u64,
    /// `arch_vcpu_info.cr2`.
    pub cr2: u64,
    /// `arch_vcpu_info.pad`.
    pub arch_pad: u64,
    /// The PV clock.
    pub time: VcpuTimeInfo,
}

byte_valued!(VcpuTimeInfo, VcpuInfo);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_xen_h() {
        crate::abi::assert_sizes!(VcpuTimeInfo => 32, VcpuInfo => 64);
        assert_eq!(
            offset_of!(VcpuInfo, evtchn_pending_sel) as u64,
            VCPU_INFO_PENDING_SEL
        );
        assert_eq!(
            offset_of!(VcpuInfo, evtchn_upcall_mask) as u64,
            VCPU_INFO_UPCALL_MASK
        );
        assert_eq!(offset_of!(VcpuInfo, time), 32);
        assert_eq!(SHINFO_EVTCHN_PENDING, (XEN_LEGACY_MAX_VCPUS * 64) as u64);
        assert_eq!(SHINFO_EVTCHN_MASK, SHINFO_EVTCHN_PENDING + 64 * 8);
        assert_eq!(SHINFO_WC_VERSION, SHINFO_EVTCHN_MASK + 64 * 8);
    }
}
