#!/bin/sh
# /init of the L2 test guest. Reports what the guest sees, then does what `oxen.action=` on the
# kernel command line asks: poweroff (default), reboot, panic, wait (stay up until killed), or
# diag (print the guest's timer and interrupt setup, check that sleeping works, power off), or
# dmesg (print the kernel log, e.g. with initcall_debug to see where boot time goes).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "OXEN-GUEST-UP"
echo "OXEN-CPUS-ONLINE=$(cat /sys/devices/system/cpu/online)"
echo "OXEN-NPROC=$(grep -c ^processor /proc/cpuinfo)"
echo "OXEN-MEMTOTAL-KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
# A guest whose timer interrupts are lost hangs here, not later in some obscure place.
sleep 1
echo "OXEN-SLEPT"
dmesg | grep -i 'hypervisor detected' | sed 's/^/OXEN-DMESG: /'
action=poweroff
for word in $(cat /proc/cmdline); do
  case $word in
    oxen.action=*) action=${word#oxen.action=} ;;
  esac
done
echo "OXEN-ACTION=$action"
case $action in
  diag)
    dmesg | grep -iE "clocksource|clockevent|tsc|apic|timer|calibrat|hpet|pit" | sed 's/^/OXEN-DIAG: /'
    cat /proc/interrupts | sed 's/^/OXEN-IRQ: /'
    cat /sys/devices/system/clockevents/clockevent0/current_device 2>/dev/null | sed 's/^/OXEN-CE: /'
    cat /sys/devices/system/clocksource/clocksource0/current_clocksource | sed 's/^/OXEN-CS: /'
    for i in 1 2 3; do sleep 1; echo "OXEN-TICK-$i"; done
    echo o > /proc/sysrq-trigger
    ;;
  dmesg)
    dmesg | sed 's/^/OXEN-KMSG: /'
    poweroff -f
    ;;
  reboot) reboot -f ;;
  panic)
    modprobe pvpanic-mmio || echo "OXEN-ERROR: cannot load pvpanic-mmio"
    echo 1 > /proc/sys/kernel/sysrq
    echo c > /proc/sysrq-trigger
    ;;
  wait) while :; do sleep 1; done ;;
  *) poweroff -f ;;
esac
sleep 30
echo "OXEN-ERROR: still running after $action"
