#!/usr/bin/env bash
# Scenario for testhost/run: checks that L1 has a working KVM with Xen HVM support.
# Opens /dev/kvm, checks the API version, creates a VM and a vCPU, and reads the KVM_CAP_XEN_HVM flags, which must
# include every feature QEMU's Xen emulation and Oxen rely on (0x1ff: hypercall MSR .. shared_info by HVA).
# Prints "kvm-check: ok" on success.
set -euo pipefail
[ -c /dev/kvm ] || { echo "kvm-check: /dev/kvm is missing" >&2; exit 1; }
echo "kvm-check: kernel $(uname -r), modules: $(lsmod | awk 'NR > 1 && /^(kvm|kvm_amd|irqbypass|ccp) /{print $1}' | sort | tr '\n' ' ')"
python3 - <<'PY'
import fcntl, os, sys

def io(nr):  # _IO(KVMIO, nr): no argument payload, so the number is just type << 8 | nr.
    return (0xAE << 8) | nr

KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_CREATE_VCPU = io(0x00), io(0x01), io(0x03), io(0x41)
KVM_CAP_XEN_HVM = 38
FLAGS = ["HYPERCALL_MSR", "INTERCEPT_HCALL", "SHARED_INFO", "RUNSTATE", "EVTCHN_2LEVEL", "EVTCHN_SEND",
         "RUNSTATE_UPDATE_FLAG", "PVCLOCK_TSC_UNSTABLE", "SHARED_INFO_HVA"]
REQUIRED = 0x1FF

kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
api = fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0)
if api != 12:
    sys.exit(f"kvm-check: unexpected KVM API version {api}")
vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
caps = fcntl.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_XEN_HVM)
names = [n for i, n in enumerate(FLAGS) if caps & (1 << i)]
print(f"kvm-check: API {api}, VM fd {vm}, vCPU fd {vcpu}")
print(f"kvm-check: KVM_CAP_XEN_HVM = {caps:#x} ({' '.join(names) or 'none'})")
missing = REQUIRED & ~caps
if missing:
    sys.exit(f"kvm-check: KVM_CAP_XEN_HVM lacks {missing:#x}")
for fd in (vcpu, vm, kvm):
    os.close(fd)
PY
echo "kvm-check: ok"
