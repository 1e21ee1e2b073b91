#!/usr/bin/env bash
# Runs inside the L1 test host for bench/blk.
# Usage: inside.sh OXL OXENSTORED KERNEL INITRD JOBS RUNS SIDES
#   JOBS: the fio job file (bench/blk/jobs.fio); SIDES: which to measure, space-separated, in
#   order: "local oxen qemu" (default of bench/blk/run), or any subset.
# Makes a 1 GiB raw image on L1's tmpfs and, RUNS times, runs fio's four jobs on it: in L1 on the
# file itself (local), and in the same L2 guest with the image as its PV disk xvda served by Oxen's
# blkback (oxl) and by QEMU 10's xen-block (Xen emulation). Prints per-run figures and, at the
# end, medians with Oxen/QEMU and Oxen/local ratios. A side that fails is reported and left out;
# the script then exits 1 after printing what it has.
set -euo pipefail
oxl=$1 oxenstored=$2 kernel=$3 initrd=$4 jobs=$5 runs=$6 sides=$7
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "blk-inside: RUNS must be a positive number, not '$runs'" >&2; exit 2; }
runtime=${OXEN_BLKBENCH_RUNTIME:-8} ramp=${OXEN_BLKBENCH_RAMP:-2}
append="console=ttyS0 quiet panic=-1 blkbench.runtime=$runtime blkbench.ramp=$ramp"
export OXEN_RUN_DIR=$TMPDIR/run
img=$TMPDIR/blk/disk.img
mkdir -p "$TMPDIR/blk"
# Fully allocated (not sparse), so every side reads real tmpfs pages.
dd if=/dev/zero of="$img" bs=1M count=1024 status=none

# Host-side caching is the page cache (tmpfs) for all three: Oxen's raw backend does buffered
# pread/pwrite, QEMU gets cache=writeback (aio=threads, its default: aio=native needs O_DIRECT,
# which tmpfs refuses), and the local jobs run with direct=0. The guests use direct=1 on xvda.
qemu_drive=${OXEN_BLKBENCH_QEMU_DRIVE:-cache=writeback,aio=threads}
cat >"$TMPDIR/blkbench.cfg" <<CFG
name = 'blkbench'
kernel = '$kernel'
ramdisk = '$initrd'
memory = 512
vcpus = 1
extra = '$append'
xen_interface = 1
disk = [ 'format=raw,vdev=xvda,access=rw,target=$img' ]
on_reboot = 'destroy'
on_crash = 'destroy'
CFG
qemu_cmd=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -machine q35
  -accel 'kvm,xen-version=0x40011,kernel-irqchip=split' -cpu 'host,+xen-vapic' -smp 1 -m 512
  -kernel "$kernel" -initrd "$initrd" -append "$append" -serial stdio
  -drive "file=$img,if=none,id=d0,format=raw,$qemu_drive" -device 'xen-disk,vdev=xvda,drive=d0')
oxen_cmd=("$oxl" create -q -c "$TMPDIR/blkbench.cfg")

oxenstored_pid=''
start_oxenstored() {
  [ -n "$oxenstored_pid" ] && return 0
  mkdir -p /var/run/xenstored "$OXEN_RUN_DIR"
  export XENSTORED_PATH=/var/run/xenstored/socket
  "$oxenstored" --no-persist --socket "$XENSTORED_PATH" --run-dir "$OXEN_RUN_DIR" \
    >"$TMPDIR/oxenstored.log" 2>&1 &
  oxenstored_pid=$!
  for _ in $(seq 1 100); do [ -S "$XENSTORED_PATH" ] && return 0; sleep 0.1; done
  echo "blk-inside: oxenstored did not create $XENSTORED_PATH; its log:" >&2
  cat "$TMPDIR/oxenstored.log" >&2
  return 1
}
# shellcheck disable=SC2317  # called by the EXIT trap
stop_oxenstored() { [ -z "$oxenstored_pid" ] || kill "$oxenstored_pid" 2>/dev/null || true; }
trap stop_oxenstored EXIT

# measure SIDE LOG: runs the jobs once on SIDE, fio's terse lines (and a guest's console) in LOG.
measure() {
  local side=$1 log=$2
  case $side in
    local)
      BLK_FILE=$img BLK_DIRECT=0 BLK_RUNTIME=$runtime BLK_RAMP=$ramp \
        fio --output-format=terse --terse-version=3 --eta=never "$jobs" 2>&1 |
        sed 's/^/BLKBENCH-FIO /' >"$log" && echo "BLKBENCH done" >>"$log"
      ;;
    oxen) start_oxenstored && timeout 300 "${perf[@]}" "${oxen_cmd[@]}" </dev/null >"$log" 2>&1 ;;
    qemu) timeout 300 "${perf[@]}" "${qemu_cmd[@]}" </dev/null >"$log" 2>&1 ;;
  esac
}
# OXEN_BLKBENCH_PERF=1: profile each VMM process (all its threads) and keep a report beside the log.
perf=()
profile() {
  perf=()
  [ -n "${OXEN_BLKBENCH_PERF:-}" ] && [ "$1" != local ] || return 0
  perf=(perf record -q -F 200 -g -o "$TMPDIR/perf-$1-$2.data" --)
}
report() {
  [ ${#perf[@]} -gt 0 ] || return 0
  {
    perf report -i "$TMPDIR/perf-$1-$2.data" --no-children --stdio --sort comm -g none
    perf report -i "$TMPDIR/perf-$1-$2.data" --no-children --stdio --sort comm,dso,sym -g none \
      --percent-limit 0.3
  } >"$OXEN_OUT/perf-$1-$2.txt" 2>&1 || true
}
# figure LOG JOB: the job's figure from fio's terse v3 line: MB/s (10^6 B/s) for the 1 MiB jobs,
# IOPS for the 4 KiB ones (fields 7/8: read KiB/s and IOPS; 48/49: write).
figure() {
  tr -d '\r' <"$1" | awk -F';' -v job="$2" '
    $1 ~ /BLKBENCH-FIO 3$/ && $3 == job && v == "" {
      if (job == "seqread") v = sprintf("%.1f", $7 * 1024 / 1e6)
      else if (job == "seqwrite") v = sprintf("%.1f", $48 * 1024 / 1e6)
      else if (job == "randread") v = sprintf("%.0f", $8)
      else v = sprintf("%.0f", $49)
    }
    END { if (v != "") print v }'
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b != "" && b > 0) printf "%.2f", a/b; else print "n/a"}'; }

keys=(seqread seqwrite randread randwrite)
declare -A results # results[side,key] = space-separated per-run values
declare -A this    # this[side,key] = this run's value
failed=0
for i in $(seq 1 "$runs"); do
  this=()
  for side in $sides; do
    log="$OXEN_OUT/blkbench-$side-$i.log"
    start=$(date +%s)
    rc=0
    profile "$side" "$i"
    measure "$side" "$log" || rc=$?
    report "$side" "$i"
    secs=$(($(date +%s) - start))
    line="BENCH run $i $side (${secs}s):"
    ok=1
    for k in "${keys[@]}"; do
      v=$(figure "$log" "$k")
      [ -n "$v" ] || ok=0
      this[$side,$k]=$v
      line+=" $k=${v:-?}"
    done
    if [ $rc != 0 ] || [ $ok = 0 ] || ! grep -q '^BLKBENCH done' <(tr -d '\r' <"$log") ||
      grep -q 'BLKBENCH-ERROR\|Kernel panic' "$log"; then
      echo "BENCH run $i $side: FAILED (status $rc); last lines of $log:"
      tail -n 15 "$log" | sed 's/^/#   /'
      failed=1
      for k in "${keys[@]}"; do this[$side,$k]=''; done
      continue
    fi
    for k in "${keys[@]}"; do results[$side,$k]+=" ${this[$side,$k]}"; done
    echo "$line"
    # How the guest's blkfront connected, once per side.
    if [ "$i" = 1 ] && [ "$side" != local ]; then
      tr -d '\r' <"$log" | sed -n 's/^BLKBENCH-INFO /# '"$side"' guest: /p'
    fi
  done
  for peer in qemu local; do
    if [ -z "${this[oxen,seqread]:-}" ] || [ -z "${this[$peer,seqread]:-}" ]; then continue; fi
    line="BENCH run $i ratio oxen/$peer:"
    for k in "${keys[@]}"; do line+=" $k=$(ratio "${this[oxen,$k]}" "${this[$peer,$k]}")"; done
    echo "$line"
  done
done

echo "# medians of $runs run(s); fio $(fio --version) jobs $(basename "$jobs"): ${runtime}s each after ${ramp}s ramp;"
echo "#   seq*: 1 MiB, iodepth 16, MB/s; rand*: 4 KiB, iodepth 32, IOPS; libaio; guests: direct=1 on xvda"
echo "# image: 1 GiB raw on L1's tmpfs (page cache on every side); guest: 1 vCPU, 512 MiB"
echo "# QEMU: xen-disk on -drive format=raw,$qemu_drive; Oxen: xl.cfg disk format=raw; local: direct=0"
for k in "${keys[@]}"; do
  declare -A med=()
  for side in local oxen qemu; do
    med[$side]=$(tr ' ' '\n' <<<"${results[$side,$k]:-}" | grep . | median || true)
  done
  unit=IOPS
  [[ $k == seq* ]] && unit=MB/s
  echo "RESULT $k ($unit) oxen=${med[oxen]:-n/a} qemu=${med[qemu]:-n/a} local=${med[local]:-n/a}" \
    "oxen/qemu=$(ratio "${med[oxen]}" "${med[qemu]}") oxen/local=$(ratio "${med[oxen]}" "${med[local]}")" \
    "qemu/local=$(ratio "${med[qemu]}" "${med[local]}")"
done
exit "$failed"
