#!/bin/sh
# /init of the L2 guest used by qemu-boot.sh: says it is up, shows which hypervisor the kernel found, powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo OXEN-GUEST-UP
dmesg | grep -i 'hypervisor detected'
poweroff -f
