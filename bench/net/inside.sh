#!/usr/bin/env bash
# Runs inside the L1 test host for bench/net.
# Usage: inside.sh OXL OXENSTORED KERNEL INITRD NETBENCH RUNS SIDES
#   NETBENCH: the static netbench binary (L1's own end); SIDES: "oxen qemu" or a subset.
# Bridge xenbr0 (169.254.99.1/24, link-local: nothing leaves L1) with L1's netbench server on
# 169.254.99.1:5201. RUNS times, for each side: one guest (1 vCPU) runs send (guest to host),
# recv (host to guest) and rr against L1; two guests on the bridge run send and rr between them;
# a 2-vCPU guest runs send and recv with 2 streams (Oxen with 1 and with 2 queues; QEMU's
# xen-net-device has one). Prints per-run figures and medians with Oxen/QEMU ratios.
set -euo pipefail
oxl=$1 oxenstored=$2 kernel=$3 initrd=$4 netbench=$5 runs=$6 sides=$7
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "net-inside: RUNS must be a positive number, not '$runs'" >&2; exit 2; }
secs=${OXEN_NETBENCH_SECS:-5}
export OXEN_RUN_DIR=$TMPDIR/run
mkdir -p "$OXEN_RUN_DIR" /var/run/xenstored

modprobe tun
modprobe bridge
ip link add xenbr0 type bridge
ip addr add 169.254.99.1/24 dev xenbr0
ip link set xenbr0 up
# QEMU's taps exist beforehand, already on the bridge (Oxen's vif hotplug does this itself).
for t in qtap0 qtap1; do
  ip tuntap add dev "$t" mode tap
  ip link set "$t" master xenbr0
  ip link set "$t" up
done
export XENSTORED_PATH=/var/run/xenstored/socket
"$oxenstored" --no-persist --socket "$XENSTORED_PATH" --run-dir "$OXEN_RUN_DIR" >"$TMPDIR/oxenstored.log" 2>&1 &
pids=($!)
"$netbench" server 5201 >"$TMPDIR/netbench-l1.log" 2>&1 &
pids+=($!)
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do [ -S "$XENSTORED_PATH" ] && break; sleep 0.1; done

# boot SIDE NAME N VCPUS QUEUES LOG WORDS...: starts guest NAME (MAC and tap number N) on SIDE in
# the background, its console in LOG; sets BOOT_PID.
boot() {
  local side=$1 name=$2 n=$3 vcpus=$4 queues=$5 log=$6
  shift 6
  local mac=00:16:3e:00:00:1$n
  local append="console=ttyS0 quiet panic=-1 netbench.secs=$secs $*"
  if [ "$side" = oxen ]; then
    cat >"$TMPDIR/$name.cfg" <<CFG
name = '$name'
kernel = '$kernel'
ramdisk = '$initrd'
memory = 256
vcpus = $vcpus
extra = '$append'
xen_interface = 1
vif = [ 'mac=$mac,bridge=xenbr0,queues=$queues' ]
on_reboot = 'destroy'
on_crash = 'destroy'
CFG
    timeout 300 "$oxl" create -q -c "$TMPDIR/$name.cfg" </dev/null >"$log" 2>&1 &
  else
    timeout 300 qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
      -machine q35 -accel 'kvm,xen-version=0x40011,kernel-irqchip=split' -cpu 'host,+xen-vapic' \
      -smp "$vcpus" -m 256 -kernel "$kernel" -initrd "$initrd" -append "$append" -serial stdio \
      -netdev "tap,id=n0,ifname=qtap$n,script=no,downscript=no" \
      -device "xen-net-device,netdev=n0,mac=$mac" </dev/null >"$log" 2>&1 &
  fi
  BOOT_PID=$!
}
# stop SIDE NAME PID: ends a server guest.
stop() {
  if [ "$1" = oxen ]; then "$oxl" destroy "$2" >/dev/null 2>&1 || true; else kill "$3" 2>/dev/null || true; fi
  wait "$3" 2>/dev/null || true
}
# figure LOG JOB STREAMS: the job's Mbit/s (send, recv) or round trips per second (rr).
figure() {
  tr -d '\r' <"$1" | awk -v job="$2" -v streams="$3" '
    $1 == "NETBENCH" && $2 == "job=" job && $3 == "streams=" streams && $NF == "failed=0" {
      for (i = 4; i <= NF; i++) if ($i ~ /^(mbps|tps)=/) { sub(/^[a-z]+=/, "", $i); print $i; exit }
    }'
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b != "" && b > 0) printf "%.2f", a/b; else print "n/a"}'; }
# check LOG: fails (printing the log's tail) unless the client finished cleanly.
check() {
  if ! tr -d '\r' <"$1" | grep -q '^NETBENCH done' || grep -q 'NETBENCH-ERROR\|Kernel panic' "$1"; then
    echo "# FAILED: $1"
    tail -n 15 "$1" | sed 's/^/#   /'
    return 1
  fi
}

declare -A results
failed=0
# record KEY SIDE VALUE
record() {
  results[$2,$1]+=" $3"
  line+=" $1=${3:-?}"
}
for i in $(seq 1 "$runs"); do
  for side in $sides; do
    line="BENCH run $i $side:"
    # Guest and L1.
    log=$OXEN_OUT/netbench-$side-host-$i.log
    boot "$side" "nb-c" 0 1 1 "$log" netbench.ip=169.254.99.10/24 netbench.role=client \
      netbench.peer=169.254.99.1 netbench.jobs=send,recv,rr
    wait "$BOOT_PID" || true
    if check "$log"; then
      record g2h "$side" "$(figure "$log" send 1)"
      record h2g "$side" "$(figure "$log" recv 1)"
      record rr "$side" "$(figure "$log" rr 1)"
      [ "$i" = 1 ] && tr -d '\r' <"$log" | sed -n "s/^NETBENCH-INFO /# $side guest: /p"
    else failed=1; fi
    # Guest and guest.
    slog=$OXEN_OUT/netbench-$side-server-$i.log log=$OXEN_OUT/netbench-$side-g2g-$i.log
    boot "$side" "nb-s" 1 1 1 "$slog" netbench.ip=169.254.99.11/24 netbench.role=server
    spid=$BOOT_PID
    boot "$side" "nb-c" 0 1 1 "$log" netbench.ip=169.254.99.10/24 netbench.role=client \
      netbench.peer=169.254.99.11 netbench.jobs=send,rr
    wait "$BOOT_PID" || true
    stop "$side" nb-s "$spid"
    if check "$log"; then
      record g2g "$side" "$(figure "$log" send 1)"
      record g2g_rr "$side" "$(figure "$log" rr 1)"
    else failed=1; fi
    # Two streams from a 2-vCPU guest: one queue, then (Oxen) two.
    for q in 1 2; do
      [ "$side" = qemu ] && [ $q = 2 ] && continue
      log=$OXEN_OUT/netbench-$side-mq$q-$i.log
      boot "$side" "nb-c" 0 2 "$q" "$log" netbench.ip=169.254.99.10/24 netbench.role=client \
        netbench.peer=169.254.99.1 netbench.jobs=send:2,recv:2
      wait "$BOOT_PID" || true
      if check "$log"; then
        record "g2h_2s_q$q" "$side" "$(figure "$log" send 2)"
        record "h2g_2s_q$q" "$side" "$(figure "$log" recv 2)"
        [ "$i" = 1 ] && tr -d '\r' <"$log" | sed -n "s/^NETBENCH-INFO cpus/# $side guest with $q queue(s): cpus/p"
      else failed=1; fi
    done
    echo "$line"
  done
done

echo "# medians of $runs run(s), ${secs}s per job; g2h/h2g/g2g: TCP Mbit/s (10^6 bit/s), one stream"
echo "#   unless _2s (two streams, 2-vCPU guest, _qN: N queues offered); rr/g2g_rr: 1-byte round trips/s"
for k in g2h h2g rr g2g g2g_rr g2h_2s_q1 h2g_2s_q1 g2h_2s_q2 h2g_2s_q2; do
  o=$(tr ' ' '\n' <<<"${results[oxen,$k]:-}" | grep . | median || true)
  q=$(tr ' ' '\n' <<<"${results[qemu,$k]:-}" | grep . | median || true)
  qq=$q
  # QEMU has one queue: its two-stream figure stands against both of Oxen's.
  [[ $k == *_q2 ]] && qq=$(tr ' ' '\n' <<<"${results[qemu,${k%_q2}_q1]:-}" | grep . | median || true)
  echo "RESULT $k oxen=${o:-n/a} qemu=${qq:-n/a} oxen/qemu=$(ratio "$o" "$qq")"
done
exit "$failed"
