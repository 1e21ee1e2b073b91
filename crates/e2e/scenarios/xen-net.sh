#!/usr/bin/env bash
# Scenario (runs inside the L1 test host): Xen HVM domains with PV network interfaces on host
# bridges. Sets up bridge xenbr0 (169.254.99.1/24, with busybox udhcpd handing out
# 169.254.99.100-199 and a fixed address per MAC given) and xenbr1 (169.254.98.1/24, no DHCP);
# all traffic stays inside L1 (link-local addresses). Starts every domain at once, runs the
# host-side actions in order while they run, waits for them all, then runs the checks.
# Usage: xen-net.sh OXL KERNEL INITRD TIMEOUT PART...
# Each PART is KIND:TEXT:
#   dom:NAME            a domain (started in the order given)
#   cfg:NAME:LINE       an xl.cfg line of domain NAME (e.g. its vif list)
#   guest:NAME:WORDS    kernel command line words of NAME (net.sh's oxen.dhcp=... etc.)
#   lease:MAC/IP        udhcpd gives MAC the address IP
#   action:SNIPPET      host-side bash, run in order while the domains run
#   check:SNIPPET       after every domain ended
# Snippets run with $OXL, $XENSTORED_PATH, $NETCHECK (netcheck.py: host ends of TCP transfers)
# and `wait_for NAME TEXT [SECS]` (waits for TEXT in domain NAME's serial output).
# Output: `--- setup`, `--- actions` (each followed by ACTION-n-EXIT=N), `--- dom NAME` (oxl's
# output, the guest's serial output, OXL-EXIT=N) per domain, `--- check`, the clean-up check.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3 limit=$4
shift 4
doms=() actions=() checks=() leases=()
declare -A cfgs words
for part in "$@"; do
  kind=${part%%:*} text=${part#*:}
  case $kind in
    dom) doms+=("$text") ;;
    cfg) cfgs[${text%%:*}]+="${text#*:}"$'\n' ;;
    guest) words[${text%%:*}]+=" ${text#*:}" ;;
    lease) leases+=("$text") ;;
    action) actions+=("$text") ;;
    check) checks+=("$text") ;;
    *) echo "xen-net.sh: unknown part '$part'"; exit 2 ;;
  esac
done

NETCHECK=$(dirname "$0")/netcheck.py
export OXL=$oxl XENSTORED_PATH=$TMPDIR/xenstored.sock NETCHECK
# wait_for NAME TEXT [SECS]: waits until domain NAME's serial output shows TEXT; gives up early
# when the domain has ended.
wait_for() {
  local i serial=$TMPDIR/serial-$1.log pid
  pid=$(cat "$TMPDIR/pid-$1" 2>/dev/null)
  for ((i = 0; i < ${3:-120} * 10; i++)); do
    grep -q "$2" "$serial" 2>/dev/null && return 0
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && { echo "GAVE-UP waiting for $2: $1 ended"; return 1; }
    sleep 0.1
  done
  echo "TIMEOUT waiting for $2 in $1"
  return 1
}
export -f wait_for

echo "--- setup"
modprobe tun && modprobe bridge || echo "SETUP-ERROR: modprobe tun bridge"
for br in xenbr0:169.254.99.1 xenbr1:169.254.98.1; do
  ip link add "${br%%:*}" type bridge &&
    ip addr add "${br#*:}/24" dev "${br%%:*}" &&
    ip link set "${br%%:*}" up || echo "SETUP-ERROR: bridge $br"
done
{
  echo "interface xenbr0"
  echo "start 169.254.99.100"
  echo "end 169.254.99.199"
  echo "lease_file $TMPDIR/udhcpd.leases"
  echo "option subnet 255.255.255.0"
  echo "option lease 3600"
  for l in "${leases[@]}"; do echo "static_lease ${l%/*} ${l#*/}"; done
} >"$TMPDIR/udhcpd.conf"
touch "$TMPDIR/udhcpd.leases"
busybox udhcpd -f "$TMPDIR/udhcpd.conf" >"$TMPDIR/udhcpd.log" 2>&1 &
dhcp_pid=$!
start_oxenstored "$oxl"

for d in "${doms[@]}"; do
  cfgfile=$TMPDIR/$d.cfg
  {
    echo "name = '$d'"
    echo "kernel = '$kernel'"
    echo "ramdisk = '$initrd'"
    echo "memory = 256"
    echo "xen_interface = 1"
    echo "serial = 'file:$TMPDIR/serial-$d.log'"
    echo "extra = 'console=ttyS0 quiet oxen.action=script oxen.modprobe=xen-netfront${words[$d]:-}'"
    printf '%s' "${cfgs[$d]:-}"
  } >"$cfgfile"
  echo "--- config $d"
  cat "$cfgfile"
  timeout -s TERM "$limit" "$oxl" create "$cfgfile" >"$TMPDIR/oxl-$d.out" 2>&1 &
  echo $! >"$TMPDIR/pid-$d"
done
echo "--- actions"
snippets ACTION "${actions[@]}"
for d in "${doms[@]}"; do
  wait "$(cat "$TMPDIR/pid-$d")"
  echo "EXIT-$d=$?" >>"$TMPDIR/exits"
done
for d in "${doms[@]}"; do
  echo "--- dom $d"
  cat "$TMPDIR/oxl-$d.out"
  cat "$TMPDIR/serial-$d.log" 2>/dev/null
  echo "OXL-EXIT=$(grep "^EXIT-$d=" "$TMPDIR/exits" | cut -d= -f2)"
done
echo "--- check"
snippets CHECK "${checks[@]}"
echo "--- daemons"
kill "$XS_PID" "$dhcp_pid" 2>/dev/null
wait "$XS_PID" 2>/dev/null
tail -20 "$TMPDIR/xenstored.log" | sed 's/^/XENSTORED: /'
sed 's/^/UDHCPD: /' "$TMPDIR/udhcpd.log" | tail -20
check_clean "$oxl"
