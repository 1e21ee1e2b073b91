#!/usr/bin/env bash
# Scenario for testhost/run: boots an L2 Linux guest with QEMU inside L1, once on plain KVM and once with QEMU's Xen
# HVM emulation, and prints the time from QEMU's start to the guest's marker line. This is the peer Oxen's own boot
# times are compared with.
# Usage: qemu-boot.sh [GUEST_INITRAMFS]   (built with testhost/mkguest when not given; building it on the host
# before `testhost/run` is faster than doing it here under TCG)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
testhost=$(dirname "$here")
kernel=$("$testhost/guest-kernel")
if [ $# -ge 1 ]; then
  initrd=$1
else
  initrd="$TMPDIR/qemu-boot-guest.cpio.gz"
  "$testhost/mkguest" --init "$here/guest-init-marker.sh" --out "$initrd"
fi
[ -f "$initrd" ] || { echo "qemu-boot: guest initramfs $initrd does not exist" >&2; exit 1; }

# boot NAME ACCEL CPU: boots the guest, checks the marker appears, prints the timing line.
boot() {
  local name=$1 accel=$2 cpu=$3 start marker_at='' line log="$TMPDIR/qemu-boot-$1.log"
  start=$(date +%s%N)
  while IFS= read -r line; do
    line=${line%$'\r'}
    printf '%s\n' "$line" >>"$log"
    if [ -z "$marker_at" ] && [[ $line == *OXEN-GUEST-UP* ]]; then
      marker_at=$(date +%s%N)
    fi
  done < <(timeout 120 qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -machine q35 -accel "$accel" -cpu "$cpu" -smp 1 -m 256 \
    -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 quiet panic=-1" \
    -serial stdio </dev/null 2>&1)
  local end
  end=$(date +%s%N)
  if [ -z "$marker_at" ]; then
    echo "qemu-boot: $name: the guest never printed OXEN-GUEST-UP; its output:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  cp "$log" "$OXEN_OUT/guest-$name.log"
  printf 'qemu-boot: %s: marker after %d ms, QEMU exited after %d ms\n' "$name" \
    $(((marker_at - start) / 1000000)) $(((end - start) / 1000000))
}

# OXEN_BOOT_RUNS (default 1) boots each kind that many times, for figures less at the mercy of host load.
runs=${OXEN_BOOT_RUNS:-1}
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "qemu-boot: OXEN_BOOT_RUNS must be a positive number" >&2; exit 2; }
for _ in $(seq "$runs"); do
  rm -f "$TMPDIR"/qemu-boot-*.log
  boot kvm kvm host
  grep -q 'Hypervisor detected: KVM' "$OXEN_OUT/guest-kvm.log" ||
    { echo "qemu-boot: kvm: the guest did not detect KVM" >&2; exit 1; }

  boot xen kvm,xen-version=0x40011,kernel-irqchip=split host,+xen-vapic
  grep -q 'Hypervisor detected: Xen HVM' "$OXEN_OUT/guest-xen.log" ||
    { echo "qemu-boot: xen: the guest did not detect Xen HVM" >&2; exit 1; }
done
echo "qemu-boot: ok"
