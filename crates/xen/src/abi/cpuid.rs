//! The Xen CPUID leaves (arch-x86/cpuid.h).
//!
//! Xen's leaves start at 0x40000000, or at 0x40000100 when another hypervisor's leaves (e.g.
//! Hyper-V's) come first. Relative to that base:
//! * `+0`: EAX = highest Xen leaf, EBX:ECX:EDX = "XenVMMXenVMM".
//! * `+1`: EAX = version, major in bits 31:16, minor in 15:0.
//! * `+2`: EAX = number of hypercall-page frames, EBX = the MSR that installs them,
//!   ECX/EDX = `XEN_CPUID_FEAT1_*`/`FEAT2_*` feature bits.
//! * `+3`: time (TSC mode and frequency), sub-leaf in ECX.
//! * `+4`: HVM: EAX = `XEN_HVM_CPUID_*` flags, EBX = vCPU id, ECX = domain id.
//! * `+5`: PV: EAX = machine address width.

/// First Xen leaf when Xen's leaves come first.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Leaf stride when probing for Xen behind another hypervisor's leaves.
pub const XEN_CPUID_LEAF_STRIDE: u32 = 0x100;
/// "XenV".
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// "MMXe".
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// "nVMM".
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;
/// `XEN_CPUID_MAX_NUM_LEAVES`: leaves beyond the base.
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;
/// The MSR a guest writes a frame address to, to have the hypercall page installed there
/// (Xen's HVM value, which Linux and QEMU's Xen emulation use).
pub const XEN_HYPERCALL_MSR: u32 = 0x4000_0000;

/// `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` (leaf +2, ECX).
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;

/// `XEN_HVM_CPUID_APIC_ACCESS_VIRT`: virtualised APIC registers.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// `XEN_HVM_CPUID_X2APIC_VIRT`: virtualised x2APIC accesses.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// `XEN_HVM_CPUID_IOMMU_MAPPINGS`.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// `XEN_HVM_CPUID_VCPU_ID_PRESENT`: EBX holds the vCPU id.
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// `XEN_HVM_CPUID_DOMID_PRESENT`: ECX holds the domain id.
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// `XEN_HVM_CPUID_EXT_DEST_ID`: MSI extended destination id is supported.
pub const XEN_HVM_CPUID_EXT_DEST_ID: u32 = 1 << 5;
/// `XEN_HVM_CPUID_UPCALL_VECTOR`: `HVMOP_set_evtchn_upcall_vector` is supported.
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

/// `XEN_CPUID_TSC_EMULATED` (leaf +3, sub-leaf 0, EAX).
pub const XEN_CPUID_TSC_EMULATED: u32 = 1 << 0;
/// `XEN_CPUID_HOST_TSC_RELIABLE`.
pub const XEN_CPUID_HOST_TSC_RELIABLE: u32 = 1 << 1;
/// `XEN_CPUID_RDTSCP_INSTR_AVAIL`.
pub const XEN_CPUID_RDTSCP_INSTR_AVAIL: u32 = 1 << 2;

/// One CPUID result.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

/// What a guest is told about its Xen host through CPUID.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct XenCpuid {
    /// First leaf (0x40000000 or 0x40000100).
    pub base: u32,
    /// Xen major version reported.
    pub major: u16,
    /// Xen minor version reported.
    pub minor: u16,
    /// `XEN_HVM_CPUID_*` flags for leaf +4.
    pub hvm_flags: u32,
    /// The guest's domain id.
    pub domid: u16,
}

impl XenCpuid {
    /// The leaves for the vCPU `vcpu_id`, as `(function, index, regs)`; leaf +3 has only
    /// sub-leaf 0 (no TSC scaling information: KVM's own clock is what the guest should use).
    pub fn leaves(&self, vcpu_id: u32) -> Vec<(u32, u32, CpuidRegs)> {
        let b = self.base;
        let regs = |eax, ebx, ecx, edx| CpuidRegs { eax, ebx, ecx, edx };
        vec![
            (
                b,
                0,
                regs(
                    b + XEN_CPUID_MAX_NUM_LEAVES,
                    XEN_CPUID_SIGNATURE_EBX,
                    XEN_CPUID_SIGNATURE_ECX,
                    XEN_CPUID_SIGNATURE_EDX,
                ),
            ),
            (
                b + 1,
                0,
                regs(
                    super::version::encode_version(self.major, self.minor),
                    0,
                    0,
                    0,
                ),
            ),
            (b + 2, 0, regs(1, XEN_HYPERCALL_MSR, 0, 0)),
            (b + 3, 0, regs(0, 0, 0, 0)),
            (
                b + 4,
                0,
                regs(
                    self.hvm_flags | XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT,
                    vcpu_id,
                    u32::from(self.domid),
                    0,
                ),
            ),
            (b + 5, 0, regs(0, 0, 0, 0)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_spells_xenvmmxenvmm() {
        let mut sig = Vec::new();
        for r in [
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ] {
            sig.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"XenVMMXenVMM");
    }

    #[test]
    fn leaves_layout() {
        let c = XenCpuid {
            base: XEN_CPUID_FIRST_LEAF + XEN_CPUID_LEAF_STRIDE,
            major: 4,
            minor: 19,
            hvm_flags: XEN_HVM_CPUID_UPCALL_VECTOR,
            domid: 7,
        };
        let l = c.leaves(3);
        assert_eq!(l.len() as u32, XEN_CPUID_MAX_NUM_LEAVES + 1);
        assert_eq!(l[0].0, 0x4000_0100);
        assert_eq!(l[0].2.eax, 0x4000_0105, "highest leaf");
        assert_eq!(l[1].2.eax, 0x0004_0013);
        assert_eq!(l[2].2.ebx, XEN_HYPERCALL_MSR);
        let hvm = l[4].2;
        assert_eq!(
            hvm.eax & XEN_HVM_CPUID_UPCALL_VECTOR,
            XEN_HVM_CPUID_UPCALL_VECTOR
        );
        assert_ne!(hvm.eax & XEN_HVM_CPUID_VCPU_ID_PRESENT, 0);
        assert_eq!((hvm.ebx, hvm.ecx), (3, 7));
    }
}
