#!/usr/bin/env bash
# Scenario: `oxl create -p` leaves the domain paused (listed as such, guest not running) until
# `oxl unpause`; then a guest that reboots under on_reboot='restart' must come back, and after its
# second boot `oxl destroy` ends it. Prints PAUSED-BOOTS=N, BOOTS=N, OXL-EXIT=N, stray processes.
# Usage: reboot-restart.sh OXL KERNEL INITRD
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3
write_cfg "$TMPDIR/guest.cfg" "$kernel" "$initrd" "extra = 'console=ttyS0 quiet oxen.action=reboot'" "on_reboot = 'restart'"
log=$TMPDIR/oxl.log
"$oxl" create -p -c "$TMPDIR/guest.cfg" </dev/null >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "created paused" "$log" && break; sleep 0.1; done
sleep 3
echo "PAUSED-BOOTS=$(grep -c OXEN-GUEST-UP "$log")"
echo "--- oxl list while paused"
"$oxl" list
"$oxl" unpause e2e
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
