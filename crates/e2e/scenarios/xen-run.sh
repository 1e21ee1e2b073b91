#!/usr/bin/env bash
# Scenario (runs inside the L1 test host): a Xen HVM domain with oxenstored. Starts oxenstored,
# runs `oxl create` in the background, then runs the ACTIONS (bash snippets, one argument each,
# with $OXL, $NAME and $XENSTORED_PATH set) while the domain runs, then waits for oxl.
# Prints the guest's serial output, OXL-EXIT=N, ACTION-n lines, and any stray process.
# Usage: xen-run.sh OXL KERNEL INITRD TIMEOUT NCFG KEY=VALUE... [ACTION...]
#   (NCFG: how many of the following arguments are config lines)
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3 limit=$4 ncfg=$5
shift 5
cfg_lines=("${@:1:$ncfg}")
shift "$ncfg"
write_cfg "$TMPDIR/guest.cfg" "$kernel" "$initrd" "xen_interface = 1" \
  "serial = 'file:$TMPDIR/serial.log'" "${cfg_lines[@]}"
export XENSTORED_PATH=$TMPDIR/xenstored.sock OXL=$oxl NAME=e2e SERIAL=$TMPDIR/serial.log
# wait_for TEXT [SECS]: for actions, waits until the guest's serial output shows TEXT.
wait_for() {
  local i
  for ((i = 0; i < ${2:-120} * 10; i++)); do
    grep -q "$1" "$SERIAL" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "TIMEOUT waiting for $1"
  return 1
}
export -f wait_for
start_oxenstored "$oxl"
echo "--- config"
cat "$TMPDIR/guest.cfg"
echo "--- oxl"
start=$(date +%s%N)
timeout -s TERM "$limit" "$oxl" create "$TMPDIR/guest.cfg" >"$TMPDIR/oxl.out" 2>&1 &
oxl_pid=$!
n=0
for action in "$@"; do
  n=$((n + 1))
  out=$(bash -c "$action" 2>&1)
  echo "ACTION-$n-EXIT=$?"
  printf '%s\n' "$out" | sed "s/^/ACTION-$n: /"
done
wait "$oxl_pid"
rc=$?
end=$(date +%s%N)
cat "$TMPDIR/oxl.out"
echo "--- serial"
cat "$TMPDIR/serial.log" 2>/dev/null
echo "OXL-EXIT=$rc"
echo "OXL-MS=$(((end - start) / 1000000))"
echo "--- xenstore after"
XENSTORED_PATH=$XENSTORED_PATH /usr/bin/xenstore-ls /local/domain 2>&1 | head -20 | sed 's/^/XS-AFTER: /'
kill "$XS_PID" 2>/dev/null
wait "$XS_PID" 2>/dev/null
sed 's/^/XENSTORED: /' "$TMPDIR/xenstored.log"
check_clean "$oxl"
