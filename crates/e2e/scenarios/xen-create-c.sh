#!/usr/bin/env bash
# Scenario (runs inside the L1 test host): `oxl create -c` of a Xen HVM domain without a serial
# port, so -c attaches the PV console; oxenstored runs. Prints what the console showed,
# OXL-EXIT=N and any stray process.
# Usage: xen-create-c.sh OXL KERNEL INITRD TIMEOUT [KEY=VALUE...]
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3 limit=$4
shift 4
write_cfg "$TMPDIR/guest.cfg" "$kernel" "$initrd" "xen_interface = 1" "serial = 'none'" "$@"
export XENSTORED_PATH=$TMPDIR/xenstored.sock
start_oxenstored "$oxl"
echo "--- oxl"
# stdin stays open (and silent) so the console relay keeps running until the domain ends.
timeout -s TERM "$limit" "$oxl" create -c "$TMPDIR/guest.cfg" < <(sleep "$limit")
echo "OXL-EXIT=$?"
pkill -f "^sleep $limit\$" 2>/dev/null
kill "$XS_PID" 2>/dev/null
check_clean "$oxl"
