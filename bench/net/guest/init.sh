#!/bin/sh
# /init of the PV network benchmark guest (bench/net). Loads xen-netfront, gives eth0 the address
# of `netbench.ip=ADDR/LEN`, then by `netbench.role=`:
#   server  runs `netbench server 5201` until the host ends the domain
#   client  runs each of `netbench.jobs=JOB[:STREAMS],...` (send, recv, rr) against
#           `netbench.peer=IP` for `netbench.secs=N` seconds each, printing netbench's lines,
#           then powers off
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "OXEN-GUEST-UP"
ip='' role=client peer='' jobs='' secs=5
# shellcheck disable=SC2013  # the command line is one line of words
for word in $(cat /proc/cmdline); do
  case $word in
    netbench.ip=*) ip=${word#*=} ;;
    netbench.role=*) role=${word#*=} ;;
    netbench.peer=*) peer=${word#*=} ;;
    netbench.jobs=*) jobs=$(echo "${word#*=}" | tr , ' ') ;;
    netbench.secs=*) secs=${word#*=} ;;
  esac
done
modprobe xen-netfront || echo "NETBENCH-ERROR cannot load xen-netfront"
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do
  sleep 0.1
  i=$((i + 1))
done
ip link set lo up
ip link set eth0 up
ip addr add "$ip" dev eth0 || echo "NETBENCH-ERROR no eth0 after 30 s"
echo "NETBENCH-INFO cpus=$(grep -c ^processor /proc/cpuinfo)" \
  "queues=$(find /sys/class/net/eth0/queues -name 'tx-*' | wc -l)"
if [ "$role" = server ]; then
  netbench server 5201
  echo "NETBENCH-ERROR the server stopped"
else
  for job in $jobs; do
    streams=1
    case $job in *:*) streams=${job#*:} job=${job%:*} ;; esac
    netbench client "$peer" 5201 "$job" "$secs" "$streams" || echo "NETBENCH-ERROR $job failed"
  done
  echo "NETBENCH done"
fi
grep eth0 /proc/net/dev | sed 's/^ */NETBENCH-INFO dev: /'
poweroff -f
sleep 30
echo "NETBENCH-ERROR still running after poweroff"
