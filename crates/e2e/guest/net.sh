#!/bin/sh
# Guest side of tests/xen_net.rs: shipped as /test.sh and run by init's `oxen.action=script`
# (which has already loaded xen-netfront). Kernel command line words pick what to do, in this
# order:
#   oxen.dhcp=IF          ask for an address on IF with udhcpc (the host's udhcpd answers)
#   oxen.ip=IF/ADDR/LEN   or give IF a static address
#   oxen.ping=A,B         ping each address (A, B are IPs; each may take a minute to answer)
#   oxen.recv=PORT        listen on PORT, keep what arrives, report its size and sum
#   oxen.send=IP/PORT/KB  send KB KiB of random bytes to IP:PORT (retrying the connection until
#                         the peer listens), report their sum
#   oxen.hotplug=IF/ADDR/LEN/PEER  wait for a hot-attached IF, give it ADDR, ping PEER through it,
#                         then wait for the host to detach it
#   oxen.linger=SECS      stay up that long at the end (so other guests can reach this one)
# Results are OXEN-KEY=VALUE lines.

arg() {
  for w in $(cat /proc/cmdline); do
    case $w in "oxen.$1="*) echo "${w#*=}" | tr , ' '; return ;; esac
  done
}
say() { echo "OXEN-$1=$2"; }

# wait_if IF SECS: waits until the kernel has network interface IF.
wait_if() {
  i=0
  while [ ! -e "/sys/class/net/$1" ]; do
    i=$((i + 1))
    [ $i -gt $(($2 * 10)) ] && { say "$1-MISSING" 1; return 1; }
    sleep 0.1
  done
  say "$1-MAC" "$(cat "/sys/class/net/$1/address")"
  say "$1-QUEUES" "$(ls -d "/sys/class/net/$1/queues/tx-"* 2>/dev/null | wc -l)"
  ip link set "$1" up
}

# addr_of IF: IF's IPv4 address.
addr_of() { ip -4 -o addr show dev "$1" | awk '{print $4}' | cut -d/ -f1; }

sum_of() { md5sum "$1" | cut -d' ' -f1; }

ip link set lo up

for ifc in $(arg dhcp); do
  wait_if "$ifc" 30 || continue
  udhcpc -i "$ifc" -n -q -t 20 -T 1 -s /udhcpc.sh >/tmp/udhcpc.out 2>&1
  say "DHCP-$ifc" $?
  say "IP-$ifc" "$(addr_of "$ifc")"
done
for spec in $(arg ip); do
  ifc=${spec%%/*}
  wait_if "$ifc" 30 || continue
  ip addr add "${spec#*/}" dev "$ifc"
  say "IP-$ifc" "$(addr_of "$ifc")"
done
for peer in $(arg ping); do
  # The peer may still be booting: wait up to a minute for a first answer.
  i=0
  until ping -c 1 -W 2 "$peer" >/dev/null 2>&1 || [ $i -ge 30 ]; do i=$((i + 1)); done
  ping -c 3 -W 5 "$peer" >/tmp/ping.out 2>&1
  say "PING-$peer" $?
  grep -E "transmitted|round-trip" /tmp/ping.out | sed "s/^/OXEN-PINGOUT-$peer: /"
done
for port in $(arg recv); do
  # nc's input never ends (a FIFO this shell holds open): at the end of its input busybox nc
  # would half-close, and a busybox nc sending to it stops at that FIN.
  mkfifo /tmp/hold-"$port"
  exec 3<>/tmp/hold-"$port"
  say "LISTENING" "$port"
  nc -l -p "$port" >/tmp/recv-"$port" </tmp/hold-"$port"
  say "RECV-EXIT-$port" $?
  exec 3>&-
  say "RECV-BYTES-$port" "$(wc -c </tmp/recv-"$port")"
  say "RECV-SUM-$port" "$(sum_of /tmp/recv-"$port")"
done
for spec in $(arg send); do
  peer=${spec%%/*} rest=${spec#*/}
  port=${rest%%/*} kb=${rest#*/}
  dd if=/dev/urandom of=/tmp/send bs=1024 count="$kb" 2>/dev/null
  say "SEND-SUM-$port" "$(sum_of /tmp/send)"
  # The peer may not listen yet: a refused connection is retried for a minute.
  i=0
  until nc "$peer" "$port" </tmp/send; do
    i=$((i + 1))
    [ $i -gt 60 ] && break
    sleep 1
  done
  say "SEND-EXIT-$port" $((i > 60))
done
for spec in $(arg hotplug); do
  ifc=${spec%%/*} rest=${spec#*/}
  addr=${rest%/*} peer=${rest##*/}
  say "HOTPLUG-WAITING" "$ifc"
  wait_if "$ifc" 120 || continue
  ip addr add "$addr" dev "$ifc"
  ping -c 3 -W 5 -I "$ifc" "$peer" >/tmp/ping.out 2>&1
  say "HOTPLUG-PING" $?
  i=0
  while [ -e "/sys/class/net/$ifc" ] && [ $i -lt 1200 ]; do
    i=$((i + 1))
    sleep 0.1
  done
  say "HOTPLUG-GONE" "$([ -e "/sys/class/net/$ifc" ] && echo 0 || echo 1)"
done
linger=$(arg linger)
[ -n "$linger" ] && sleep "$linger"
grep eth /proc/net/dev | sed 's/^ */OXEN-NETDEV: /'
say NET-DONE 1
