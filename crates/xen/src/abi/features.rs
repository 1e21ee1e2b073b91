//! Feature bits reported by `XENVER_get_features` (features.h).

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`: the guest uses its own physical addresses (HVM).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`: `HVM_PARAM_CALLBACK_IRQ` accepts the vector type.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`: the PV clock is usable by HVM guests.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`: PIRQs are delivered as event channels.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity`.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_runstate_phys_area`.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `XENFEAT_vcpu_time_phys_area`.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// `XENFEAT_dm_msix_all_writes`.
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;
/// `XENFEAT_NR_SUBMAPS`: number of 32-bit submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// A set of `XENFEAT_*` bits, answered one 32-bit submap at a time.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Features(u32);

impl Features {
    /// The features an HVM guest on a KVM-based VMM is offered: auto-translated physmap,
    /// vector callbacks, safe PV clock (the set QEMU's Xen emulation reports).
    pub fn hvm_guest() -> Features {
        Features::default()
            .with(XENFEAT_WRITABLE_PAGE_TABLES)
            .with(XENFEAT_AUTO_TRANSLATED_PHYSMAP)
            .with(XENFEAT_SUPERVISOR_MODE_KERNEL)
            .with(XENFEAT_HVM_CALLBACK_VECTOR)
            .with(XENFEAT_HVM_SAFE_PVCLOCK)
    }

    /// Adds feature `bit` (ignored at or above 32: there is one submap).
    pub fn with(self, bit: u32) -> Features {
        match 1u32.checked_shl(bit) {
            Some(m) => Features(self.0 | m),
            None => self,
        }
    }

    /// Whether feature `bit` is set.
    pub fn has(self, bit: u32) -> bool {
        bit < 32 && self.0 & (1 << bit) != 0
    }

    /// The bits of submap `idx` (zero for every submap beyond the first).
    pub fn submap(self, idx: u32) -> u32 {
        if idx == 0 {
            self.0
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submaps() {
        let f = Features::hvm_guest();
        assert!(f.has(XENFEAT_HVM_CALLBACK_VECTOR));
        assert!(f.has(XENFEAT_AUTO_TRANSLATED_PHYSMAP));
        assert!(!f.has(XENFEAT_DOM0));
        assert!(!f.has(40));
        assert_eq!(f.with(40), f);
        assert_eq!(f.submap(0) & (1 << 8), 1 << 8);
        assert_eq!(f.submap(1), 0);
        assert_eq!(f.submap(u32::MAX), 0);
    }
}
