#!/usr/bin/env bash
# Scenario: a guest that reboots under on_reboot='restart' must come back; after its second boot
# `oxl destroy` ends it. Prints BOOTS=N, OXL-EXIT=N and any stray process.
# Usage: reboot-restart.sh OXL KERNEL INITRD
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3
write_cfg "$TMPDIR/guest.cfg" "$kernel" "$initrd" "extra = 'console=ttyS0 quiet oxen.action=reboot'" "on_reboot = 'restart'"
log=$TMPDIR/oxl.log
"$oxl" create -c "$TMPDIR/guest.cfg" </dev/null >"$log" 2>&1 &
pid=$!
boots=0
for _ in $(seq 1 240); do
  boots=$(grep -c OXEN-GUEST-UP "$log")
  [ "$boots" -ge 2 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.5
done
echo "--- oxl list while running"
"$oxl" list
"$oxl" destroy e2e
wait $pid
echo "OXL-EXIT=$?"
echo "BOOTS=$boots"
echo "--- oxl output"
cat "$log"
check_clean "$oxl"
