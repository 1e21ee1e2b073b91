#!/usr/bin/env bash
# Runs inside the L1 test host for bench/boot. Usage: boot-inside.sh OXL KERNEL INITRD RUNS
set -euo pipefail
oxl=$1 kernel=$2 initrd=$3 runs=$4
export OXEN_RUN_DIR=$TMPDIR/run
append='console=ttyS0 quiet'
cat >"$TMPDIR/boot.cfg" <<CFG
name = 'bench'
kernel = '$kernel'
ramdisk = '$initrd'
memory = 256
vcpus = 1
extra = '$append'
CFG
qemu_cmd() {
  # Guest RAM in a memfd, like Oxen's, so both footprints exclude it the same way.
  echo qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -machine q35 -accel kvm -cpu host \
    -smp 1 -m 256 -object memory-backend-memfd,id=ram,size=256M -machine memory-backend=ram \
    -kernel "$kernel" -initrd "$initrd" -append "'$append $1'" -serial stdio
}

# ms_to_marker CMD...: milliseconds from start until the guest prints its init marker; the
# command is killed if it is still running afterwards.
ms_to_marker() {
  local start line pid
  start=$(date +%s%N)
  exec 3< <(exec "$@" </dev/null 2>&1)
  pid=$!
  while IFS= read -r -t 120 line <&3; do
    if [[ $line == *OXEN-GUEST-UP* ]]; then
      echo $((($(date +%s%N) - start) / 1000000))
      break
    fi
  done
  # Let it finish powering off, then make sure it is gone.
  cat <&3 >/dev/null &
  sleep 0.2
  wait "$pid" 2>/dev/null || true
  exec 3<&-
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

oxen_times=() qemu_times=()
for i in $(seq 1 "$runs"); do
  oxen_times+=("$(ms_to_marker "$oxl" create -q -c "$TMPDIR/boot.cfg")")
  qemu_times+=("$(ms_to_marker bash -c "$(qemu_cmd '')")")
  echo "BENCH run $i: oxen ${oxen_times[-1]} ms, qemu ${qemu_times[-1]} ms"
done
oxen_ms=$(printf '%s\n' "${oxen_times[@]}" | median)
qemu_ms=$(printf '%s\n' "${qemu_times[@]}" | median)

# footprint PID: resident KiB that is not guest RAM (guest RAM is the memfd, counted in RssShmem).
footprint() {
  awk '/^VmRSS:/ {rss=$2} /^RssShmem:/ {shm=$2} END {print rss - shm}' "/proc/$1/status"
}
# measure CMD...: starts the guest with oxen.action=wait, waits for the marker, prints footprint KiB.
measure() {
  local log=$TMPDIR/measure.log pid kib
  : >"$log"
  "$@" </dev/null >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do grep -q OXEN-SLEPT "$log" && break; sleep 0.2; done
  sleep 2
  kib=$(footprint "$pid")
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  echo "$kib"
}
sed -i "s/^extra = .*/extra = '$append oxen.action=wait'/" "$TMPDIR/boot.cfg"
oxen_kib=$(measure "$oxl" create -q -c "$TMPDIR/boot.cfg")
qemu_kib=$(measure bash -c "exec $(qemu_cmd 'oxen.action=wait')")

echo "# boot to init marker (median of $runs), 1 vCPU, 256 MiB, same kernel and initramfs"
echo "RESULT boot_ms oxen=$oxen_ms qemu=$qemu_ms ratio=$(awk -v a="$oxen_ms" -v b="$qemu_ms" 'BEGIN {printf "%.2f", a/b}')"
echo "# VMM resident memory besides guest RAM (VmRSS - RssShmem), guest idle after boot"
echo "RESULT vmm_overhead_kib oxen=$oxen_kib qemu=$qemu_kib ratio=$(awk -v a="$oxen_kib" -v b="$qemu_kib" 'BEGIN {printf "%.2f", a/b}')"
