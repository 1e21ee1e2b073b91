#!/bin/sh
# /init of the L2 test guest. Reports what the guest sees, then does what `oxen.action=` on the
# kernel command line asks: poweroff (default), reboot, panic, wait (stay up until killed), or
# diag (print the guest's timer and interrupt setup, check that sleeping works, power off),
# dmesg (print the kernel log, e.g. with initcall_debug to see where boot time goes), xen (report
# the Xen interface, run a shell on hvc0, wait for Xenstore's shutdown request) or xenpanic (the
# same, then panic without pvpanic), or script (load the modules listed in oxen.modprobe=A,B, run
# the test's own /test.sh shipped in the initramfs, print OXEN-SCRIPT-EXIT=N and power off).
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
modules=
for word in $(cat /proc/cmdline); do
  case $word in
    oxen.action=*) action=${word#oxen.action=} ;;
    oxen.modprobe=*) modules=$(echo "${word#oxen.modprobe=}" | tr , ' ') ;;
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
  xen | xenpanic)
    # The Xen interface as the guest sees it. /sys/hypervisor/uuid is read through xenbus from
    # Xenstore, so it shows xenbus working end to end.
    dmesg | grep -E "Xen version|callback vector|installing Xen timer|xenbus|hvc0|Grant table|xen-platform-pci" | sed 's/^/OXEN-XEN: /'
    echo "OXEN-CS=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    for ce in /sys/devices/system/clockevents/clockevent*/current_device; do
      echo "OXEN-CE-$(basename "$(dirname "$ce")")=$(cat "$ce")"
    done
    echo "OXEN-HV-TYPE=$(cat /sys/hypervisor/type)"
    echo "OXEN-HV-VERSION=$(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)"
    echo "OXEN-HV-UUID=$(cat /sys/hypervisor/uuid)"
    if [ "$action" = xenpanic ]; then
      # No pvpanic driver: the kernel's Xen panic notifier reports the crash (SCHEDOP_shutdown).
      echo 1 > /proc/sys/kernel/sysrq
      echo c > /proc/sysrq-trigger
    fi
    # Xenstore's control/shutdown makes the kernel run /sbin/poweroff or /sbin/reboot, which
    # signal init: USR2 for poweroff, TERM for reboot.
    trap 'echo OXEN-GOT-POWEROFF; poweroff -f' USR2
    trap 'echo OXEN-GOT-REBOOT; reboot -f' TERM
    # A login shell on the PV console.
    setsid sh -c 'exec sh -l </dev/hvc0 >/dev/hvc0 2>&1' &
    echo "OXEN-XEN-READY"
    while :; do sleep 1; done
    ;;
  script)
    # busybox modprobe adds MODULE.PARAM=VALUE words of the kernel command line itself.
    for m in $modules; do
      modprobe "$m" || echo "OXEN-ERROR: cannot load $m"
    done
    if [ -f /test.sh ]; then
      sh /test.sh
      echo "OXEN-SCRIPT-EXIT=$?"
    else
      echo "OXEN-ERROR: no /test.sh in the initramfs"
    fi
    sync
    poweroff -f
    ;;
  *) poweroff -f ;;
esac
sleep 30
echo "OXEN-ERROR: still running after $action"
