#!/bin/sh
# udhcpc's event script in the test guest: applies the lease it got (busybox passes $interface,
# $ip and $mask, the prefix length).
# shellcheck disable=SC2154
case $1 in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound | renew) ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
