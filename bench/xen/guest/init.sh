#!/bin/sh
# /init of the Xen-interface benchmark guest (bench/xen). Prints the boot marker first, checks
# that the guest runs as a Xen HVM guest, runs xenbench and powers off. The kernel command line
# may carry `xenbench.hypercalls=N` and `xenbench.roundtrips=N`.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "OXEN-GUEST-UP"
# The guest's own clock at the marker: boot time minus this is what passed before the kernel's
# clock started (VMM start-up, loading, firmware-less entry).
echo "XENBENCH guest_uptime_ms=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)"
if dmesg | grep -q 'Hypervisor detected: Xen HVM'; then
  echo "XENBENCH hvm=yes"
else
  echo "XENBENCH-ERROR the guest does not see Xen HVM:"
  dmesg | grep -i 'hypervisor detected' | sed 's/^/XENBENCH-DMESG: /'
fi
hypercalls=20000 roundtrips=5000
# shellcheck disable=SC2013  # the command line is one line of words
for word in $(cat /proc/cmdline); do
  case $word in
    xenbench.hypercalls=*) hypercalls=${word#*=} ;;
    xenbench.roundtrips=*) roundtrips=${word#*=} ;;
  esac
done
# Both drivers are modules in Debian's kernel (CONFIG_XEN_DEV_EVTCHN=m, CONFIG_XEN_PRIVCMD=m).
# In a domU, privcmd blocks every hypercall unless Xenstore names a target domain (a device
# model stub domain); unrestricted=1 lets this guest make hypercalls on its own behalf.
modprobe xen-evtchn || echo "XENBENCH-ERROR cannot load xen-evtchn"
modprobe xen-privcmd unrestricted=1 || echo "XENBENCH-ERROR cannot load xen-privcmd"
/bin/xenbench "$hypercalls" "$roundtrips" || echo "XENBENCH-ERROR xenbench exited with status $?"
echo "XENBENCH-END"
poweroff -f
sleep 30
echo "XENBENCH-ERROR still running after poweroff"
