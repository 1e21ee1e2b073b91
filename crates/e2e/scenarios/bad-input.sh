#!/usr/bin/env bash
# Scenario: wrong input must end `oxl create` with exit 1 and a message naming the problem, and
# leave nothing running. Prints, per case, "CASE NAME EXIT=N" followed by oxl's stderr.
# Usage: bad-input.sh OXL KERNEL INITRD
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3
head -c 65536 /dev/urandom >"$TMPDIR/not-a-kernel"
run_case() {
  local name=$1
  shift
  write_cfg "$TMPDIR/$name.cfg" "$kernel" "$initrd" "$@"
  timeout 60 "$oxl" create -c "$TMPDIR/$name.cfg" </dev/null >"$TMPDIR/$name.out" 2>&1
  echo "CASE $name EXIT=$?"
  sed 's/^/  /' "$TMPDIR/$name.out"
}
run_case missing-kernel "kernel = '/nonexistent/vmlinuz'"
run_case not-a-kernel "kernel = '$TMPDIR/not-a-kernel'"
run_case missing-ramdisk "ramdisk = '/nonexistent/initrd.gz'"
run_case zero-vcpus "vcpus = 0"
run_case huge-memory "memory = 1048576"
run_case misspelled-key "memroy = 128"
run_case vcpus-above-max "vcpus = 4" "maxvcpus = 2"
check_clean "$oxl"
