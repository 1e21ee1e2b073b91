#!/usr/bin/env bash
# Scenario for testhost/run: checks the environment the test host promises a scenario, then exits with STATUS.
# Usage: env-check.sh HOSTFILE EXPECTED_CONTENT EXPECTED_CWD STATUS [ARG...]
# With OXEN_EXPECT_CPUS / OXEN_EXPECT_MEM_MIB in the caller's environment (passed on like every OXEN_* variable), also
# checks L1 got that many vCPUs and about that much memory.
# Writes "$OXEN_OUT/env-check.args" (one argument a line) so the caller can check the arguments arrived intact.
set -euo pipefail
[ $# -ge 4 ] || { echo "env-check: usage: env-check.sh HOSTFILE CONTENT CWD STATUS [ARG...]" >&2; exit 2; }
hostfile=$1 content=$2 cwd=$3 status=$4
shift 4
check() { # DESCRIPTION COMMAND...
  if "${@:2}"; then echo "env-check: ok: $1"; else echo "env-check: FAILED: $1" >&2; exit 1; fi
}
check "running as root" test "$(id -u)" = 0
check "the L1 kernel is Debian's 6.12" grep -q '^6\.12\.' /proc/sys/kernel/osrelease
check "/dev/kvm exists" test -c /dev/kvm
check "host file $hostfile is visible" test "$(cat "$hostfile")" = "$content"
check "working directory is the caller's ($cwd)" test "$PWD" = "$cwd"
check "OXEN_OUT is set" test -n "${OXEN_OUT:-}"
check "OXEN_OUT is writable" sh -c 'echo from-l1 >"$OXEN_OUT/env-check.written"'
check "TMPDIR is a tmpfs" test "$(stat -f -c %T "$TMPDIR")" = tmpfs
check "the root filesystem is writable" sh -c 'echo x >/etc/oxen-env-check && rm /etc/oxen-env-check'
check "modprobe works for the 6.12 modules" modprobe -n -q tun
check "qemu-system-x86_64 is available" qemu-system-x86_64 --version
check "loopback is up" test $(($(cat /sys/class/net/lo/flags) & 1)) = 1
if [ -n "${OXEN_EXPECT_CPUS:-}" ]; then
  check "L1 has $OXEN_EXPECT_CPUS vCPUs" test "$(nproc)" = "$OXEN_EXPECT_CPUS"
fi
if [ -n "${OXEN_EXPECT_MEM_MIB:-}" ]; then
  # The kernel keeps some memory for itself, so MemTotal is a little under what QEMU gave.
  mem_mib=$(($(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024))
  check "L1 has about $OXEN_EXPECT_MEM_MIB MiB (MemTotal $mem_mib MiB)" \
    test "$mem_mib" -le "$OXEN_EXPECT_MEM_MIB" -a "$mem_mib" -ge $((OXEN_EXPECT_MEM_MIB * 9 / 10))
fi
printf '%s\n' "$@" >"$OXEN_OUT/env-check.args"
echo "env-check: exiting with $status"
exit "$status"
