//! Hypercall numbers (`__HYPERVISOR_*`, xen.h).

/// Defines the hypercall number constants and a name lookup over them.
macro_rules! hypercalls {
    ($($name:ident = $val:expr),* $(,)?) => {
        $(
            #[doc = concat!("`__HYPERVISOR_", stringify!($name), "`.")]
            #[allow(non_upper_case_globals)]
            pub const $name: u32 = $val;
        )*

        /// The name of hypercall `nr` (as in xen.h without the prefix), if it has one.
        pub fn name(nr: u32) -> Option<&'static str> {
            match nr {
                $( $val => Some(stringify!($name)), )*
                _ => None,
            }
        }
    };
}

hypercalls! {
    set_trap_table = 0,
    mmu_update = 1,
    set_gdt = 2,
    stack_switch = 3,
    set_callbacks = 4,
    fpu_taskswitch = 5,
    sched_op_compat = 6,
    platform_op = 7,
    set_debugreg = 8,
    get_debugreg = 9,
    update_descriptor = 10,
    memory_op = 12,
    multicall = 13,
    update_va_mapping = 14,
    set_timer_op = 15,
    event_channel_op_compat = 16,
    xen_version = 17,
    console_io = 18,
    physdev_op_compat = 19,
    grant_table_op = 20,
    vm_assist = 21,
    update_va_mapping_otherdomain = 22,
    iret = 23,
    vcpu_op = 24,
    set_segment_base = 25,
    mmuext_op = 26,
    xsm_op = 27,
    nmi_op = 28,
    sched_op = 29,
    callback_op = 30,
    xenoprof_op = 31,
    event_channel_op = 32,
    physdev_op = 33,
    hvm_op = 34,
    sysctl = 35,
    domctl = 36,
    kexec_op = 37,
    tmem_op = 38,
    argo_op = 39,
    xenpmu_op = 40,
    dm_op = 41,
    hypfs_op = 42,
    arch_0 = 48,
    arch_1 = 49,
    arch_2 = 50,
    arch_3 = 51,
    arch_4 = 52,
    arch_5 = 53,
    arch_6 = 54,
    arch_7 = 55,
}

/// Size of each hypercall-page stub: hypercall `n` is called at `page + n * 32`.
pub const STUB_SIZE: usize = 32;

/// Highest hypercall number a hypercall page has a stub for (4096 / 32 - 1).
pub const MAX_HYPERCALL: u32 = 127;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xen_h() {
        assert_eq!(memory_op, 12);
        assert_eq!(grant_table_op, 20);
        assert_eq!(vcpu_op, 24);
        assert_eq!(sched_op, 29);
        assert_eq!(event_channel_op, 32);
        assert_eq!(hvm_op, 34);
        assert_eq!(name(17), Some("xen_version"));
        assert_eq!(name(11), None, "11 is unused in xen.h");
        assert_eq!(name(u32::MAX), None);
        assert_eq!(
            (MAX_HYPERCALL as usize + 1) * STUB_SIZE,
            super::super::PAGE_SIZE
        );
    }
}
