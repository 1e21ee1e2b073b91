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
export OXEN_RUN_DIR=$TMPDIR/run OXEN_DUMP_DIR=$TMPDIR/dump
