#!/usr/bin/env bash
# Scenario (runs inside the L1 test host): Xen HVM domains with PV disks. Makes the images a test
# asks for, boots the domain once or twice (a second phase sees what the first left on its disks),
# runs host-side actions while each boot runs and host-side checks at the end.
# Usage: xen-block.sh OXL KERNEL INITRD TIMEOUT PART...
# Each PART is KIND:TEXT; TEXT of snippets is bash, run with $OXL, $NAME, $IMG_DIR, $VHD (oxen-vhd),
# $XENSTORED_PATH, $SERIAL (the current boot's serial log) and the helpers below:
#   phases:N          boot N times (default 1; at most 2)
#   setup:SNIPPET     before the first boot (make images in $IMG_DIR)
#   cfg:LINE          config line of every boot; cfg1:/cfg2: of one boot ('$IMG_DIR' is replaced)
#   guest:WORDS       kernel command line words of every boot (block.sh's oxen.fs=... etc.);
#                     guest1:/guest2: of one boot
#   action1:SNIPPET   run in order while boot 1 runs; action2: during boot 2
#   between:SNIPPET   after boot 1, before boot 2
#   check:SNIPPET     after the last boot
# Output: sections `--- setup`, `--- phase N` (action output with ACTION-n-EXIT=N, oxl's output,
# the guest's serial output, OXL-EXIT=N), `--- between`, `--- check` (each snippet followed by
# SNIPPET-EXIT=N), then the clean-up check. Snippet output is not prefixed, so KEY=VALUE lines
# stay parseable.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
oxl=$1 kernel=$2 initrd=$3 limit=$4
shift 4
phases=1 setup=() cfg=() cfg1=() cfg2=() guest='' guest1='' guest2='' action1=() action2=() between=() check=()
for part in "$@"; do
  text=${part#*:}
  case $part in
    phases:*) phases=$text ;;
    setup:*) setup+=("$text") ;;
    cfg:*) cfg+=("$text") ;;
    cfg1:*) cfg1+=("$text") ;;
    cfg2:*) cfg2+=("$text") ;;
    guest:*) guest+=" $text" ;;
    guest1:*) guest1+=" $text" ;;
    guest2:*) guest2+=" $text" ;;
    action1:*) action1+=("$text") ;;
    action2:*) action2+=("$text") ;;
    between:*) between+=("$text") ;;
    check:*) check+=("$text") ;;
    *) echo "xen-block.sh: unknown part '$part'"; exit 2 ;;
  esac
done

export OXL=$oxl NAME=e2e XENSTORED_PATH=$TMPDIR/xenstored.sock IMG_DIR=$TMPDIR/images
export VHD=${OXL%/*}/oxen-vhd OXL_PID=''
mkdir -p "$IMG_DIR"

# wait_for TEXT [SECS]: waits until the guest's serial output shows TEXT; gives up early when the
# domain has ended.
wait_for() {
  local i
  for ((i = 0; i < ${2:-120} * 10; i++)); do
    grep -q "$1" "$SERIAL" 2>/dev/null && return 0
    [ -n "$OXL_PID" ] && ! kill -0 "$OXL_PID" 2>/dev/null && { echo "GAVE-UP waiting for $1: the domain ended"; return 1; }
    sleep 0.1
  done
  echo "TIMEOUT waiting for $1"
  return 1
}
# raw_of IMG [KEY]: prints the path of a raw copy of IMG (a VHD chain is converted with oxen-vhd;
# a raw image is copied sparsely), so checks never touch the image itself.
raw_of() {
  local out
  out=$(mktemp -u "$IMG_DIR/.raw.XXXXXX")
  case $1:$(head -c 8 "$1" 2>/dev/null | tr -d '\0') in
    *.vhd:* | *:conectix) "$VHD" convert "$1" "$out" -O raw ${2:+--src-key "$2"} >&2 || return 1 ;;
    *) cp --sparse=always "$1" "$out" || return 1 ;;
  esac
  echo "$out"
}
# fsck_img LABEL IMG [KEY]: prints FSCK-LABEL=N, e2fsck -fn's status on IMG (0: clean).
fsck_img() {
  local raw rc
  raw=$(raw_of "$2" "${3:-}") || { echo "FSCK-$1=convert-failed"; return 1; }
  e2fsck -fn "$raw" >"$raw.fsck" 2>&1
  rc=$?
  echo "FSCK-$1=$rc"
  [ $rc = 0 ] || sed "s/^/  e2fsck $1: /" "$raw.fsck" | tail -30
  rm -f "$raw" "$raw.fsck"
}
# replay_fsck_img LABEL IMG [KEY]: like fsck_img for a crash-consistent copy (a live snapshot):
# replays the journal first (e2fsck -E journal_only), prints REPLAY-LABEL=N and FSCK-LABEL=N.
replay_fsck_img() {
  local raw rc
  raw=$(raw_of "$2" "${3:-}") || { echo "FSCK-$1=convert-failed"; return 1; }
  e2fsck -E journal_only -y "$raw" >"$raw.fsck" 2>&1
  echo "REPLAY-$1=$?"
  e2fsck -fn "$raw" >"$raw.fsck" 2>&1
  rc=$?
  echo "FSCK-$1=$rc"
  [ $rc = 0 ] || sed "s/^/  e2fsck $1: /" "$raw.fsck" | tail -30
  rm -f "$raw" "$raw.fsck"
}
# verify_img LABEL IMG [KEY]: reads /SUMS and every file it names out of the ext4 in IMG with
# debugfs; prints HOST-SUM-LABEL-FILE=SHA256 per file and HOST-VERIFY-LABEL=ok (or bad N).
verify_img() {
  local raw sum f got bad=0 n=0
  raw=$(raw_of "$2" "${3:-}") || { echo "HOST-VERIFY-$1=convert-failed"; return 1; }
  while read -r sum f; do
    [ -n "$f" ] || continue
    got=$(debugfs -R "cat /$f" "$raw" 2>/dev/null | sha256sum | cut -d' ' -f1)
    echo "HOST-SUM-$1-$f=$got"
    n=$((n + 1))
    [ "$got" = "$sum" ] || bad=$((bad + 1))
  done < <(debugfs -R "cat /SUMS" "$raw" 2>/dev/null)
  if [ $n -gt 0 ] && [ $bad = 0 ]; then echo "HOST-VERIFY-$1=ok"; else echo "HOST-VERIFY-$1=bad $bad of $n"; fi
  rm -f "$raw"
}
# ext4_img IMG SIZE DIR: a raw image of SIZE holding an ext4 made from DIR's files.
ext4_img() {
  truncate -s "$2" "$1" && mkfs.ext4 -q -F -d "$3" "$1"
}
# xs_dump: the whole of /local/domain, one `path = "value"` per line.
xs_dump() {
  /usr/bin/xenstore-ls -f /local/domain 2>&1
}
export -f wait_for raw_of fsck_img replay_fsck_img verify_img ext4_img xs_dump

start_oxenstored "$oxl"
echo "--- setup"
snippets SETUP "${setup[@]}"

# boot N: writes the config of boot N, runs the domain with that boot's actions.
boot() {
  local n=$1 line lines=() cfgfile=$TMPDIR/guest-$1.cfg start end rc
  local -n extra_cfg=cfg$n actions=action$n words=guest$n
  export SERIAL=$TMPDIR/serial-$n.log
  # shellcheck disable=SC2016 # the literal text $IMG_DIR is what gets replaced
  for line in "${cfg[@]}" "${extra_cfg[@]}"; do lines+=("${line//'$IMG_DIR'/$IMG_DIR}"); done
  write_cfg "$cfgfile" "$kernel" "$initrd" "xen_interface = 1" "serial = 'file:$SERIAL'" \
    "extra = 'console=ttyS0 quiet oxen.action=script oxen.modprobe=xen-blkfront,crc32c_generic,ext4 oxen.phase=$n$guest$words'" \
    "${lines[@]}"
  echo "--- config $n"
  cat "$cfgfile"
  echo "--- phase $n"
  start=$(date +%s%N)
  timeout -s TERM "$limit" "$oxl" create "$cfgfile" >"$TMPDIR/oxl-$n.out" 2>&1 &
  OXL_PID=$!
  export OXL_PID
  snippets ACTION "${actions[@]}"
  wait "$OXL_PID"
  rc=$?
  end=$(date +%s%N)
  OXL_PID=''
  cat "$TMPDIR/oxl-$n.out"
  cat "$SERIAL" 2>/dev/null
  echo "OXL-EXIT=$rc"
  echo "OXL-MS=$(((end - start) / 1000000))"
  return $rc
}

boot 1
rc=$?
if [ "$phases" -ge 2 ]; then
  echo "--- between"
  snippets BETWEEN "${between[@]}"
  # A first boot that never ran (oxl refused the config) or hung says all there is to say.
  if [ $rc = 1 ] || [ $rc = 124 ]; then
    echo "--- phase 2"
    echo "PHASE-2-SKIPPED=first boot ended with $rc"
  else
    boot 2
  fi
fi
echo "--- check"
snippets CHECK "${check[@]}"
echo "--- xenstored"
kill "$XS_PID" 2>/dev/null
wait "$XS_PID" 2>/dev/null
tail -40 "$TMPDIR/xenstored.log" | sed 's/^/XENSTORED: /'
check_clean "$oxl"
