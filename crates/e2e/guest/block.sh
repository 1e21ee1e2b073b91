#!/bin/sh
# Guest side of tests/xen_block.rs: shipped as /test.sh and run by init's `oxen.action=script`
# (which has already loaded xen-blkfront and ext4). Kernel command line words pick what to do:
#   oxen.phase=N         which boot this is (1, or 2 after the host rebooted the domain)
#   oxen.fs=A,B          phase 1: mkfs.ext4, mount, write files (a big one of oxen.bigmb=N MiB,
#                        default 8, and small ones) and their SUMS, umount, e2fsck;
#                        phase 2: mount, check SUMS, umount, e2fsck
#   oxen.ro=A            a read-only disk holding an ext4 with /hello: writes must fail, a
#                        read-only mount works
#   oxen.hotplug=A       wait for A to be hot-attached, read its first MiB, wait for its detach
#   oxen.resize=A        wait for A to grow, then write and read back its last MiB
#   oxen.snapwrite=A     mkfs and keep writing fsync'ed files (and their sums) for a while, so the
#                        host can snapshot A in the middle; then check and e2fsck
#   oxen.snapcheck=A     A is a clone of such a snapshot: mount it and check the complete sums
#   oxen.tools=1         check the tools themselves, without any PV disk: the host binaries run,
#                        the modules loaded, and the fs case works on a loop device
# Every disk name is without /dev/. Results are OXEN-KEY=VALUE lines; serial output is slow in
# the nested guest, so the script prints little else.

arg() {
  for w in $(cat /proc/cmdline); do
    case $w in "oxen.$1="*) echo "${w#*=}" | tr , ' '; return ;; esac
  done
}
say() { echo "OXEN-$1=$2"; }
# run KEY CMD...: runs CMD, prints its exit status as KEY and returns it.
run() {
  key=$1
  shift
  "$@"
  rc=$?
  say "$key" $rc
  return $rc
}
phase=$(arg phase)
phase=${phase:-1}
bigmb=$(arg bigmb)
bigmb=${bigmb:-8}

# wait_dev DISK SECS: waits until the kernel has DISK (blkfront connects asynchronously).
wait_dev() {
  i=0
  while [ ! -e "/sys/block/$1" ]; do
    i=$((i + 1))
    [ $i -gt $(($2 * 10)) ] && { say "$1-MISSING" 1; return 1; }
    sleep 0.1
  done
  say "$1-SECTORS" "$(cat "/sys/block/$1/size")"
  # What blkfront negotiated: "blkfront: xvda: flush diskcache: ...; persistent grants: ...".
  dmesg | grep "blkfront: $1:" | sed "s/^/OXEN-BLKFRONT-$1: /"
  say "$1-QUEUES" "$(ls "/sys/block/$1/mq" 2>/dev/null | wc -l)"
}

# wait_gone DISK SECS: waits until DISK has gone.
wait_gone() {
  i=0
  while [ -e "/sys/block/$1" ]; do
    i=$((i + 1))
    [ $i -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
}

sum_of() { sha256sum "$1" | cut -d' ' -f1; }

fsck_dev() {
  e2fsck -fn "/dev/$1" >/tmp/fsck.out 2>&1
  rc=$?
  say "$1-FSCK" $rc
  [ $rc = 0 ] || sed "s/^/OXEN-FSCK-$1: /" /tmp/fsck.out | tail -20
}

fs_case() {
  d=$1 m=/mnt/$1
  wait_dev "$d" 30 || return
  mkdir -p "$m"
  if [ "$phase" = 1 ]; then
    mkfs.ext4 -q -F "/dev/$d" >/tmp/mkfs.out 2>&1
    say "$d-MKFS" $?
    sed "s/^/OXEN-MKFS-$d: /" /tmp/mkfs.out | tail -5
    run "$d-MOUNT" mount -t ext4 "/dev/$d" "$m" || return
    (
      cd "$m" || exit 1
      dd if=/dev/urandom of=big bs=1M count="$bigmb" iflag=fullblock 2>/dev/null &&
        echo "small file on $d" >small1 &&
        seq 1 5000 >small2 &&
        mkdir dir && head -c 12345 /dev/urandom >dir/small3 &&
        sha256sum big small1 small2 dir/small3 >SUMS
    )
    say "$d-WRITE" $?
    while read -r s f; do say "SUM-$d-$f" "$s"; done <"$m/SUMS"
    sync
    umount "$m"
    say "$d-UMOUNT" $?
  else
    run "$d-MOUNT" mount -t ext4 "/dev/$d" "$m" || return
    (cd "$m" && sha256sum -c SUMS >/tmp/verify.out 2>&1)
    say "$d-VERIFY" $?
    grep -v ': OK$' /tmp/verify.out | sed "s/^/OXEN-VERIFY-$d: /"
    umount "$m"
    say "$d-UMOUNT" $?
  fi
  fsck_dev "$d"
}

ro_case() {
  d=$1 m=/mnt/$1
  wait_dev "$d" 30 || return
  say "$d-GETRO" "$(blockdev --getro "/dev/$d")"
  dd if=/dev/zero of="/dev/$d" bs=4k count=1 conv=fsync 2>/dev/null
  say "$d-DD-WRITE" $?
  mkdir -p "$m"
  run "$d-MOUNT-RO" mount -t ext4 -o ro "/dev/$d" "$m" || return
  say "SUM-$d-hello" "$(sum_of "$m/hello")"
  touch "$m/new" 2>/dev/null
  say "$d-TOUCH" $?
  umount "$m"
}

hotplug_case() {
  d=$1
  say HOTPLUG-READY 1
  wait_dev "$d" 90 || return
  dd if="/dev/$d" of=/tmp/head bs=1M count=1 2>/dev/null
  say "SUM-$d-head" "$(sum_of /tmp/head)"
  say HOTPLUG-READ-DONE 1
  wait_gone "$d" 90
  say "$d-GONE" $((1 - $?))
}

resize_case() {
  d=$1
  wait_dev "$d" 30 || return
  before=$(cat "/sys/block/$d/size")
  say RESIZE-READY 1
  i=0
  while [ "$(cat "/sys/block/$d/size")" = "$before" ] && [ $i -lt 900 ]; do
    i=$((i + 1))
    sleep 0.1
  done
  after=$(cat "/sys/block/$d/size")
  say "$d-RESIZED-SECTORS" "$after"
  # The new space must work: write the last MiB, drop the cache, read it back.
  last=$((after / 2048 - 1))
  head -c 1048576 /dev/urandom >/tmp/tail
  dd if=/tmp/tail of="/dev/$d" bs=1M seek=$last conv=fsync 2>/dev/null
  say "$d-TAIL-WRITE" $?
  echo 3 >/proc/sys/vm/drop_caches
  dd if="/dev/$d" of=/tmp/tail.back bs=1M skip=$last count=1 iflag=direct 2>/dev/null
  [ "$(sum_of /tmp/tail)" = "$(sum_of /tmp/tail.back)" ]
  say "$d-TAIL-MATCH" $((1 - $?))
}

snapwrite_case() {
  d=$1 m=/mnt/$1
  wait_dev "$d" 30 || return
  mkfs.ext4 -q -F "/dev/$d" >/dev/null 2>&1
  say "$d-MKFS" $?
  mkdir -p "$m"
  run "$d-MOUNT" mount -t ext4 "/dev/$d" "$m" || return
  # Each file is on disk before its sum is, so any complete SUMS line in a crash-consistent
  # copy of the disk names a complete file.
  i=0 end=0
  while [ $i -lt 60 ]; do
    i=$((i + 1))
    dd if=/dev/urandom of="$m/f$i" bs=64k count=8 conv=fsync 2>/dev/null || break
    (cd "$m" && sha256sum "f$i" >>SUMS && sync -f SUMS)
    if [ $i = 3 ]; then
      say SNAP-WRITING 1
      end=$(($(date +%s) + 20))
    fi
    [ $i -gt 3 ] && [ "$(date +%s)" -ge $end ] && break
  done
  say SNAP-FILES $i
  (cd "$m" && sha256sum -c SUMS >/dev/null 2>&1)
  say "$d-VERIFY" $?
  umount "$m"
  say "$d-UMOUNT" $?
  fsck_dev "$d"
}

snapcheck_case() {
  d=$1 m=/mnt/$1
  wait_dev "$d" 30 || return
  mkdir -p "$m"
  # Mounting replays the journal the snapshot caught mid-flight.
  run "$d-MOUNT" mount -t ext4 "/dev/$d" "$m" || return
  grep -E '^[0-9a-f]{64}  f[0-9]+$' "$m/SUMS" >/tmp/complete
  say CLONE-FILES "$(wc -l </tmp/complete)"
  (cd "$m" && sha256sum -c /tmp/complete >/tmp/verify.out 2>&1)
  say "$d-VERIFY" $?
  grep -v ': OK$' /tmp/verify.out | sed "s/^/OXEN-VERIFY-$d: /"
  umount "$m"
  say "$d-UMOUNT" $?
  fsck_dev "$d"
}

tools_case() {
  mkfs.ext4 -V >/tmp/v 2>&1
  say MKFS-RUNS $?
  head -1 /tmp/v | sed 's/^/OXEN-MKFS-VERSION: /'
  e2fsck -V >/dev/null 2>&1
  say E2FSCK-RUNS $?
  for mod in xen_blkfront ext4 jbd2; do
    [ -d "/sys/module/$mod" ]
    say "MODULE-$mod" $((1 - $?))
  done
  say BLKFRONT-MAX-RING-PAGE-ORDER "$(cat /sys/module/xen_blkfront/parameters/max_ring_page_order)"
  modprobe loop
  dd if=/dev/zero of=/tmp/loop.img bs=1M seek=47 count=1 2>/dev/null
  run LOSETUP losetup /dev/loop0 /tmp/loop.img && fs_case loop0
}

say PHASE "$phase"
for c in tools ro fs hotplug resize snapwrite snapcheck; do
  for d in $(arg $c); do "${c}_case" "$d"; done
done
say BLOCK-DONE 1
