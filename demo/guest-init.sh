#!/bin/sh
# /init of the demo domain: says hello with what it sees, then powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
cpus=$(cat /sys/devices/system/cpu/online)
mem=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
echo
echo "  Hello from an Oxen domain!"
echo "  Linux $(uname -r), CPUs online: $cpus, memory: $mem MiB"
echo "  $(dmesg | grep -o 'Hypervisor detected: .*')"
if [ -r /sys/hypervisor/type ]; then
  echo "  $(cat /sys/hypervisor/type) $(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor), domain $(cat /sys/hypervisor/uuid)"
  echo "  $(dmesg | grep -o 'Xen HVM callback vector.*'), clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
  echo "  $(dmesg | grep -o 'Grant table initialized')"
fi
echo "  Powering off now."
echo
poweroff -f
