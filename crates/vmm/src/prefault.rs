//! `KVM_PRE_FAULT_MEMORY` (Linux 6.10+): maps guest ranges into KVM's stage-2 page tables
//! before the guest runs, so the kernel's first touches of its own image and initrd do not each
//! exit to the host (in a nested host, every such exit is expensive). Purely an optimisation:
//! without the capability, or on any error, the guest faults the pages in itself.

use std::ops::Range;

use kvm_bindings::{kvm_pre_fault_memory, KVMIO, KVM_CAP_PRE_FAULT_MEMORY};
use kvm_ioctls::{VcpuFd, VmFd};
use vmm_sys_util::ioctl::ioctl_with_mut_ref;
use vmm_sys_util::ioctl_iowr_nr;

// include/uapi/linux/kvm.h: _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory), a vCPU ioctl.
ioctl_iowr_nr!(KVM_PRE_FAULT_MEMORY, KVMIO, 0xd5, kvm_pre_fault_memory);

/// Calls before giving up on a range that makes no progress (EINTR, EAGAIN).
const MAX_RETRIES: u32 = 64;

/// Whether `vm`'s KVM can pre-fault memory.
pub fn supported(vm: &VmFd) -> bool {
    vm.check_extension_raw(u64::from(KVM_CAP_PRE_FAULT_MEMORY)) > 0
}

/// Pre-faults each range (widened to whole pages) through `vcpu`; returns the bytes mapped.
/// Errors end that range quietly (at debug).
pub fn ranges(vcpu: &VcpuFd, ranges: &[Range<u64>]) -> u64 {
    let mut mapped = 0;
    for r in ranges {
        let start = r.start & !0xfff;
        let end = r.end.next_multiple_of(0x1000);
        let mut arg = kvm_pre_fault_memory {
            gpa: start,
            size: end.saturating_sub(start),
            ..Default::default()
        };
        let mut retries = 0;
        while arg.size > 0 && retries < MAX_RETRIES {
            let before = arg.size;
            // SAFETY: the ioctl reads and updates a `kvm_pre_fault_memory`, which `arg` is, and
            // keeps no pointer to it.
            let rc = unsafe { ioctl_with_mut_ref(vcpu, KVM_PRE_FAULT_MEMORY(), &mut arg) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
                    tracing::debug!(gpa = arg.gpa, "KVM_PRE_FAULT_MEMORY: {e}");
                    break;
                }
            }
            if arg.size == before {
                retries += 1;
            }
            mapped += before - arg.size;
        }
    }
    mapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::GuestRam;

    #[test]
    fn prefaults_registered_ram_when_supported() {
        let Ok(kvm) = kvm_ioctls::Kvm::new() else {
            return; // no KVM here: nothing to test
        };
        let vm = kvm.create_vm().unwrap();
        if !supported(&vm) {
            return;
        }
        let ram = GuestRam::new(32 << 20).unwrap();
        ram.register(&vm).unwrap();
        let vcpu = vm.create_vcpu(0).unwrap();
        // The second range is outside any memory slot: an error, quietly ignored.
        let mapped = ranges(&vcpu, &[0x10_0800..0x20_0000, 0x4000_0000..0x4000_1000]);
        assert_eq!(mapped, 0x10_0000);
    }
}
