#!/usr/bin/env bash
# VHD engine benchmark (issue 3): Oxen's engine against qemu on the same file system, one run.
#   - sequential write and read (1 MiB requests) and 4 KiB random writes on a fresh dynamic VHD:
#     `oxen-vhd bench` against `qemu-io -f vpc` fed the same requests (same random offsets);
#   - converting a 4 GiB mostly-sparse raw image to a dynamic VHD: `oxen-vhd convert` against
#     `qemu-img convert -O vpc`.
# Every figure includes process start-up and the final flush to disk, for both sides.
# Usage: bench.sh [DIR]   (DIR defaults to a fresh directory under /var/tmp)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
dir=${1:-$(mktemp -d /var/tmp/oxen-vhd-bench.XXXXXX)}
mkdir -p "$dir"
SIZE_MB=${SIZE_MB:-1024}
RAND=${RAND:-20000}
cargo build --release -q -p vhd-tool --manifest-path "$root/Cargo.toml"
oxen=${OXEN_VHD:-$root/target/release/oxen-vhd}

now() { date +%s.%N; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "file system: $(df -T "$dir" | awk 'NR==2 {print $2}') at $dir"
echo "oxen-vhd: $oxen; $(qemu-io --version | head -1)"

timed() { # seconds taken by "$@"
  local t0 t1; t0=$(now); "$@" > /dev/null; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}
mb=$((SIZE_MB * 1048576 / 1000000))
o="$dir/oxen.vhd"; q="$dir/qemu.vhd"; cmds="$dir/cmds"

# Sequential write and read, 1 MiB requests.
ow=$(awk -v n=$mb -v t="$(timed "$oxen" bench "$o" --phase seq-write --size "${SIZE_MB}M")" 'BEGIN { printf "%.1f", n / t }')
or=$(awk -v n=$mb -v t="$(timed "$oxen" bench "$o" --phase seq-read --size "${SIZE_MB}M")" 'BEGIN { printf "%.1f", n / t }')
rm -f "$q"; qemu-img create -q -f vpc -o subformat=dynamic "$q" "${SIZE_MB}M"
{ for ((i = 0; i < SIZE_MB; i++)); do echo "write -P 0x5b $((i << 20)) 1M"; done; echo flush; } > "$cmds"
qw=$(awk -v n=$mb -v t="$(timed sh -c "qemu-io -f vpc '$q' < '$cmds'")" 'BEGIN { printf "%.1f", n / t }')
for ((i = 0; i < SIZE_MB; i++)); do echo "read $((i << 20)) 1M"; done > "$cmds"
qr=$(awk -v n=$mb -v t="$(timed sh -c "qemu-io -f vpc -r '$q' < '$cmds'")" 'BEGIN { printf "%.1f", n / t }')

# 4 KiB random writes on a fresh image, same offsets for both.
"$oxen" bench "$o" --phase print-offsets --size "${SIZE_MB}M" --random-writes "$RAND" |
  awk '{print "write -P 0x5a " $1 " 4k"} END {print "flush"}' > "$cmds"
oi=$(awk -v n="$RAND" -v t="$(timed "$oxen" bench "$o" --phase rand-write --size "${SIZE_MB}M" --random-writes "$RAND")" 'BEGIN { printf "%.0f", n / t }')
rm -f "$q"; qemu-img create -q -f vpc -o subformat=dynamic "$q" "${SIZE_MB}M"
qi=$(awk -v n="$RAND" -v t="$(timed sh -c "qemu-io -f vpc '$q' < '$cmds'")" 'BEGIN { printf "%.0f", n / t }')
rm -f "$o" "$q" "$cmds"

# --- convert: 4 GiB raw, 1 MiB of data every 64 MiB plus a 32 MiB run (~3% data) ---
raw="$dir/sparse.raw"
rm -f "$raw"; truncate -s 4G "$raw"
for ((i = 0; i < 64; i++)); do
  dd if=/dev/urandom of="$raw" bs=1M count=1 seek=$((i * 64 + 7)) conv=notrunc status=none
done
dd if=/dev/urandom of="$raw" bs=1M count=32 seek=2000 conv=notrunc status=none
sync
best() { # best of 5 runs of "$@", in seconds
  local b=999999 t0 t1 d
  for _ in 1 2 3 4 5; do
    rm -f "$dir/out.vhd"; t0=$(now); "$@"; t1=$(now)
    d=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    b=$(awk -v a="$b" -v d="$d" 'BEGIN { print (d < a) ? d : a }')
  done
  rm -f "$dir/out.vhd"; echo "$b"
}
qc=$(best qemu-img convert -f raw -O vpc -o subformat=dynamic "$raw" "$dir/out.vhd")
oc=$(best "$oxen" convert "$raw" "$dir/out.vhd")
# Same, but both wait for the output to reach the disk.
qs=$(best qemu-img convert -t writeback -f raw -O vpc -o subformat=dynamic "$raw" "$dir/out.vhd")
os=$(best "$oxen" convert --sync "$raw" "$dir/out.vhd")
rm -f "$raw"

printf '%-34s %12s %12s %8s\n' "workload" "oxen" "qemu" "ratio"
printf '%-34s %12s %12s %8s\n' "seq write 1 MiB (MB/s)" "$ow" "$qw" "$(ratio "$ow" "$qw")"
printf '%-34s %12s %12s %8s\n' "seq read 1 MiB (MB/s)" "$or" "$qr" "$(ratio "$or" "$qr")"
printf '%-34s %12s %12s %8s\n' "random write 4 KiB (IOPS)" "$oi" "$qi" "$(ratio "$oi" "$qi")"
printf '%-34s %12s %12s %8s\n' "convert 4 GiB sparse raw (s)" "$oc" "$qc" "$(ratio "$qc" "$oc")"
printf '%-34s %12s %12s %8s\n' "  same, synced to disk (s)" "$os" "$qs" "$(ratio "$qs" "$os")"
echo "(ratio = how many times faster Oxen is)"
