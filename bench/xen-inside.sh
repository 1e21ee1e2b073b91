#!/usr/bin/env bash
# Runs inside the L1 test host for bench/xen.
# Usage: xen-inside.sh OXL OXENSTORED KERNEL INITRD RUNS SIDES
#   SIDES: which VMMs to boot, space-separated, in order: "oxen qemu" (default of bench/xen),
#   "qemu" or "oxen".
# Boots the xenbench guest RUNS times with each VMM as a Xen HVM guest and prints, per run and
# as medians, the time from VMM start to the guest's OXEN-GUEST-UP line and the guest's
# XENBENCH figures, with Oxen/QEMU ratios. A VMM whose guest fails is reported and left out of
# the ratios; the script then exits 1 after printing what it has.
set -euo pipefail
oxl=$1 oxenstored=$2 kernel=$3 initrd=$4 runs=$5 sides=$6
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "xen-inside: RUNS must be a positive number, not '$runs'" >&2; exit 2; }
append="console=ttyS0 quiet panic=-1 ${OXEN_XENBENCH_APPEND:-}"
export OXEN_RUN_DIR=$TMPDIR/run

# The Oxen side: the Xen interface is switched on by an xl.cfg key, and guests reach Xenstore
# through oxenstored, which must be running before the domain starts.
cat >"$TMPDIR/xenbench.cfg" <<CFG
name = 'xenbench'
kernel = '$kernel'
ramdisk = '$initrd'
memory = 256
vcpus = 1
extra = '$append'
xen_interface = 1
# Like QEMU's -no-reboot: a guest that crashes or reboots ends the run, it is not timed twice.
on_reboot = 'destroy'
on_crash = 'destroy'
CFG
oxenstored_pid=''
start_oxenstored() {
  [ -n "$oxenstored_pid" ] && return 0
  mkdir -p /var/run/xenstored
  export XENSTORED_PATH=/var/run/xenstored/socket
  mkdir -p "$OXEN_RUN_DIR"
  # The run directory is where oxenstored finds the link to each domain's store ring.
  "$oxenstored" --no-persist --socket "$XENSTORED_PATH" --run-dir "$OXEN_RUN_DIR" \
    >"$TMPDIR/oxenstored.log" 2>&1 &
  oxenstored_pid=$!
  for _ in $(seq 1 100); do [ -S "$XENSTORED_PATH" ] && return 0; sleep 0.1; done
  echo "xen-inside: oxenstored did not create $XENSTORED_PATH; its log:" >&2
  cat "$TMPDIR/oxenstored.log" >&2
  return 1
}
# shellcheck disable=SC2317  # called by the EXIT trap
stop_oxenstored() { [ -z "$oxenstored_pid" ] || kill "$oxenstored_pid" 2>/dev/null || true; }
trap stop_oxenstored EXIT

# The peer: QEMU 10's Xen HVM emulation on KVM, same kernel, initramfs and command line.
qemu_cmd=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -machine q35
  -accel 'kvm,xen-version=0x40011,kernel-irqchip=split' -cpu 'host,+xen-vapic' -smp 1 -m 256
  -kernel "$kernel" -initrd "$initrd" -append "$append" -serial stdio)
oxen_cmd=("$oxl" create -q -c "$TMPDIR/xenbench.cfg")

# boot SIDE LOG: boots the guest once, saves its output in LOG, prints the milliseconds from
# start to OXEN-GUEST-UP (empty when the marker never came).
boot() {
  local side=$1 log=$2 start marker_ms='' line
  local cmd
  if [ "$side" = oxen ]; then cmd=("${oxen_cmd[@]}"); else cmd=("${qemu_cmd[@]}"); fi
  : >"$log"
  start=$(date +%s%N)
  while IFS= read -r line; do
    line=${line%$'\r'}
    if [ -z "$marker_ms" ] && [[ $line == *OXEN-GUEST-UP* ]]; then
      marker_ms=$((($(date +%s%N) - start) / 1000000))
    fi
    printf '%s\n' "$line" >>"$log"
  done < <(timeout 300 "${cmd[@]}" </dev/null 2>&1)
  echo "$marker_ms"
}

# field LOG KEY: the value of KEY=... on the guest's XENBENCH lines.
field() { sed -n "s/.*XENBENCH .*\\b$2=\\([0-9.]*\\).*/\\1/p" "$1" | head -n 1; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b != "" && b > 0) printf "%.2f", a/b; else print "n/a"}'; }

keys=(boot_ms guest_uptime_ms hypercall_ns hypercall_vmm_ns syscall_ns ioctl_ns evtchn_rtt_us_median p99)
declare -A results # results[side,key] = space-separated per-run values
declare -A this    # this[side,key] = this run's value
failed=0
for i in $(seq 1 "$runs"); do
  this=()
  for side in $sides; do
    log="$OXEN_OUT/xenbench-$side-$i.log"
    if [ "$side" = oxen ] && ! start_oxenstored; then
      failed=1
      continue
    fi
    ms=$(boot "$side" "$log")
    # A guest that panicked and came up again (a VMM that restarts it) is a failed run too.
    if [ -z "$ms" ] || ! grep -q '^XENBENCH done' "$log" || grep -q 'XENBENCH-ERROR' "$log" ||
      grep -q 'Kernel panic' "$log" || [ "$(grep -c OXEN-GUEST-UP "$log")" -ne 1 ]; then
      echo "BENCH run $i $side: FAILED (marker: ${ms:-never}); last lines of $log:"
      tail -n 15 "$log" | sed 's/^/#   /'
      failed=1
      continue
    fi
    line="BENCH run $i $side: boot_ms=$ms"
    results[$side,boot_ms]+=" $ms"
    this[$side,boot_ms]=$ms
    for k in "${keys[@]:1}"; do
      v=$(field "$log" "$k")
      results[$side,$k]+=" $v"
      this[$side,$k]=$v
      line+=" $k=$v"
    done
    echo "$line"
  done
  if [ -n "${this[oxen,boot_ms]:-}" ] && [ -n "${this[qemu,boot_ms]:-}" ]; then
    line="BENCH run $i ratio oxen/qemu:"
    for k in boot_ms hypercall_ns hypercall_vmm_ns evtchn_rtt_us_median p99; do
      line+=" $k=$(ratio "${this[oxen,$k]}" "${this[qemu,$k]}")"
    done
    echo "$line"
  fi
done

echo "# medians of $runs run(s); 1 vCPU, 256 MiB, same kernel and initramfs; QEMU: ${qemu_cmd[*]:0:12}"
echo "# guest_uptime_ms: the guest kernel's uptime at the marker (boot_ms minus it: before its clock started)"
echo "# *_ns: median of 20 batches' ns per call"
echo "# hypercall_ns: xen_version(XENVER_version) via privcmd (KVM answers it in-kernel when the VMM set the"
echo "#   version); hypercall_vmm_ns: xen_version(XENVER_get_features), always handled by the VMM;"
echo "#   syscall_ns / ioctl_ns: the guest's getppid() and a refused privcmd ioctl, for reading the above"
echo "# evtchn: loopback interdomain channel, notify A -> event on B -> notify B -> event on A, in µs"
for k in "${keys[@]}"; do
  o=$(tr ' ' '\n' <<<"${results[oxen,$k]:-}" | grep . | median || true)
  q=$(tr ' ' '\n' <<<"${results[qemu,$k]:-}" | grep . | median || true)
  name=$k
  [ "$k" = p99 ] && name=evtchn_rtt_us_p99
  echo "RESULT $name oxen=${o:-n/a} qemu=${q:-n/a} ratio=$(ratio "$o" "$q")"
done
exit "$failed"
