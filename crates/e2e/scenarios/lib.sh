# Shared by the scenarios (they run inside the L1 test host): writes the test guest's xl.cfg.
# write_cfg FILE KERNEL INITRD [KEY=VALUE...]
write_cfg() {
  local cfg=$1 kernel=$2 initrd=$3
  shift 3
  {
    echo "name = 'e2e'"
    echo "kernel = '$kernel'"
    echo "ramdisk = '$initrd'"
    echo "memory = 256"
    echo "extra = 'console=ttyS0 quiet'"
    for kv in "$@"; do echo "$kv"; done
  } >"$cfg"
}

# check_clean OXL: prints STRAY-PROCESS lines for any oxl left running and the domain list.
check_clean() {
  if pgrep -x oxl >/dev/null; then
    echo "STRAY-PROCESS: $(pgrep -a -x oxl | tr '\n' ' ')"
  fi
  echo "--- oxl list"
  "$1" list
  echo "--- end"
}
# start_oxenstored OXL: starts the oxenstored built beside OXL on $XENSTORED_PATH, serving this
# run dir's ring links; waits for its socket and sets XS_PID.
start_oxenstored() {
  "$(dirname "$1")/oxenstored" --socket "$XENSTORED_PATH" --run-dir "$OXEN_RUN_DIR" --no-persist \
    >"$TMPDIR/xenstored.log" 2>&1 &
  XS_PID=$!
  for _ in $(seq 100); do [ -S "$XENSTORED_PATH" ] && break; sleep 0.05; done
}
export OXEN_RUN_DIR=$TMPDIR/run OXEN_DUMP_DIR=$TMPDIR/dump
# snippets LABEL SNIPPET...: runs each in turn, printing its output and LABEL-n-EXIT=N. The pipe
# keeps tools from seeing a terminal (the scenario's output is L1's console), so none draws a
# progress bar over the KEY=VALUE lines.
snippets() {
  local label=$1 n=0 s
  shift
  for s in "$@"; do
    n=$((n + 1))
    bash -c "$s" </dev/null 2>&1 | cat
    echo "$label-$n-EXIT=${PIPESTATUS[0]}"
  done
}
