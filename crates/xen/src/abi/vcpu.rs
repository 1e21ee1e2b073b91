//! vCPU operations (vcpu.h).

use super::byte_valued;

/// `VCPUOP_initialise`.
pub const VCPUOP_INITIALISE: u32 = 0;
/// `VCPUOP_up`.
pub const VCPUOP_UP: u32 = 1;
/// `VCPUOP_down`.
pub const VCPUOP_DOWN: u32 = 2;
/// `VCPUOP_is_up`.
pub const VCPUOP_IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info`.
pub const VCPUOP_GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area`.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer`.
pub const VCPUOP_SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer`.
pub const VCPUOP_STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer`.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`.
pub const VCPUOP_REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi`.
pub const VCPUOP_SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid`.
pub const VCPUOP_GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
/// `VCPUOP_register_runstate_phys_area`.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
/// `VCPUOP_register_vcpu_time_phys_area`.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u32 = 15;

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while Xen updates the area.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;
/// `VCPU_SSHOTTMR_future`: fail with `ETIME` if the deadline has passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1;

/// Size of one `struct vcpu_info` (64-bit guest); it must not cross a page boundary.
pub const VCPU_INFO_SIZE: usize = 64;

/// `struct vcpu_register_vcpu_info`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterVcpuInfo {
    /// Guest frame holding the vcpu_info.
    pub mfn: u64,
    /// Offset in the frame.
    pub offset: u32,
    /// Reserved, must be zero.
    pub rsvd: u32,
}

/// `struct vcpu_set_periodic_timer`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}

/// `struct vcpu_set_singleshot_timer`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time of the deadline, in nanoseconds.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    /// Padding.
    pub _pad: u32,
}

/// `struct vcpu_runstate_info`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    /// Padding.
    pub _pad: u32,
    /// When the current state was entered (system time, ns).
    pub state_entry_time: u64,
    /// Time spent in each state (ns).
    pub time: [u64; 4],
}

/// `struct vcpu_register_time_memory_area` / `vcpu_register_runstate_memory_area`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuRegisterMemoryArea {
    /// Guest virtual address (or guest physical for the `_phys_area` variants).
    pub addr: u64,
}

byte_valued!(
    VcpuRegisterVcpuInfo,
    VcpuSetPeriodicTimer,
    VcpuSetSingleshotTimer,
    VcpuRunstateInfo,
    VcpuRegisterMemoryArea,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_vcpu_h() {
        crate::abi::assert_sizes!(
            VcpuRegisterVcpuInfo => 16,
            VcpuSetPeriodicTimer => 8,
            VcpuSetSingleshotTimer => 16,
            VcpuRunstateInfo => 48,
            VcpuRegisterMemoryArea => 8,
        );
        assert_eq!(std::mem::offset_of!(VcpuRunstateInfo, state_entry_time), 8);
    }
}
