#!/usr/bin/env bash
# Scenario (runs inside the L1 test host): runs `oxl create -c` on the test guest with a time
# limit; prints oxl's output, OXL-EXIT=N and OXL-MS=N, and any stray process.
# Usage: oxl-run.sh OXL KERNEL INITRD TIMEOUT [KEY=VALUE...]   (KEY=VALUE lines go into the config)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3 limit=$4
shift 4
write_cfg "$TMPDIR/guest.cfg" "$kernel" "$initrd" "$@"
echo "--- config"
cat "$TMPDIR/guest.cfg"
echo "--- oxl"
start=$(date +%s%N)
timeout -s TERM "$limit" "$oxl" create -c "$TMPDIR/guest.cfg" </dev/null
rc=$?
end=$(date +%s%N)
echo "OXL-EXIT=$rc"
echo "OXL-MS=$(((end - start) / 1000000))"
check_clean "$oxl"
