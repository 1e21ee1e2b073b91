//! CPUID as the guest sees it: the host's KVM-supported leaves, with the topology and APIC IDs
//! rewritten so each vCPU is one core of a single package.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC: u32 = 0x8000_001e;

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: TSC-deadline mode of the local APIC timer. KVM emulates it but leaves the
/// bit to the VMM (KVM_CAP_TSC_DEADLINE_TIMER); with it Linux needs no APIC timer calibration,
/// which is unreliable on a loaded or nested host.
const ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Leaf 1 EDX bit 28: the logical-processor count in EBX[23:16] is valid.
const EDX_HTT: u32 = 1 << 28;

/// Topology-level types in leaf 0xB ECX[15:8].
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// Number of APIC-ID bits needed to number `n` cores.
fn id_bits(n: u32) -> u32 {
    32 - n.max(1).saturating_sub(1).leading_zeros()
}

/// Rewrites `cpuid` (as returned by `KVM_GET_SUPPORTED_CPUID`) for the vCPU with `apic_id` in a
/// domain of `max_cpus` vCPUs.
/// `tsc_deadline` says whether KVM can emulate the TSC-deadline timer.
pub fn patch(cpuid: &mut CpuId, apic_id: u32, max_cpus: u32, tsc_deadline: bool) {
    let core_bits = id_bits(max_cpus);
    for e in cpuid.as_mut_slice().iter_mut() {
        patch_entry(e, apic_id, max_cpus, core_bits);
        if e.function == LEAF_FEATURES && tsc_deadline {
            e.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, apic_id: u32, max_cpus: u32, core_bits: u32) {
    match e.function {
        LEAF_FEATURES => {
            e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((max_cpus.min(255)) << 16);
            e.ecx |= ECX_HYPERVISOR;
            if max_cpus > 1 {
                e.edx |= EDX_HTT;
            }
        }
        // EAX[31:26] = cores per package - 1; one thread per cache sharer group. Subleaves with
        // cache type 0 mark the end of the list and stay as they are.
        LEAF_CACHE_PARAMS if e.eax & 0x1f != 0 => {
            e.eax = (e.eax & 0x03ff_ffff) | ((max_cpus.min(64) - 1) << 26);
            e.eax &= !(0xfff << 14);
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            e.edx = apic_id;
            match e.index {
                0 => {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = LEVEL_SMT << 8;
                }
                1 => {
                    e.eax = core_bits;
                    e.ebx = max_cpus;
                    e.ecx = (LEVEL_CORE << 8) | 1;
                }
                n => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = n;
                }
            }
        }
        LEAF_AMD_SIZES => {
            // ECX[15:12] = APIC-ID bits for cores, ECX[7:0] = cores - 1.
            e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | (max_cpus.min(256) - 1);
        }
        LEAF_AMD_EXT_APIC => {
            e.eax = apic_id;
            e.ebx = apic_id & 0xff;
            e.ecx = 0;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0x1,
            ebx: 0xabcd,
            ecx: 0,
            edx: 0,
            ..Default::default()
        }
    }

    fn table() -> CpuId {
        CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0),
            entry(LEAF_TOPOLOGY, 0),
            entry(LEAF_TOPOLOGY, 1),
            entry(LEAF_TOPOLOGY, 2),
            entry(LEAF_AMD_SIZES, 0),
        ])
        .unwrap()
    }

    #[test]
    fn apic_id_and_counts_in_leaf_1() {
        let mut c = table();
        patch(&mut c, 3, 4, true);
        let l1 = c.as_slice()[0];
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(l1.ebx & 0xffff, 0xabcd, "brand/clflush bits kept");
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);
        assert_ne!(l1.ecx & ECX_TSC_DEADLINE, 0);
    }

    #[test]
    fn topology_leaf_describes_cores() {
        let mut c = table();
        patch(&mut c, 5, 6, false);
        let s = c.as_slice();
        assert_eq!(
            (s[1].eax, s[1].ebx, s[1].ecx >> 8, s[1].edx),
            (0, 1, LEVEL_SMT, 5)
        );
        assert_eq!(
            (s[2].eax, s[2].ebx, s[2].ecx >> 8, s[2].edx),
            (3, 6, LEVEL_CORE, 5)
        );
        assert_eq!((s[3].ebx, s[3].ecx >> 8), (0, 0), "level 2 is invalid");
        assert_eq!(s[4].ecx & 0xff, 5);
        assert_eq!((s[4].ecx >> 12) & 0xf, 3);
    }

    #[test]
    fn one_cpu_has_no_htt() {
        let mut c = table();
        patch(&mut c, 0, 1, false);
        assert_eq!(c.as_slice()[0].edx & EDX_HTT, 0);
        assert_eq!(
            c.as_slice()[0].ecx & ECX_TSC_DEADLINE,
            0,
            "not offered unless KVM can emulate it"
        );
        assert_eq!(c.as_slice()[2].eax, 0);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!(
            [1, 2, 3, 4, 5, 128, 129].map(id_bits),
            [0, 1, 2, 2, 3, 7, 8]
        );
    }
}
