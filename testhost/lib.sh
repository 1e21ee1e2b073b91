# Shared helpers of the testhost/ scripts; sourced, never run. Everything is kept in a cache that survives between
# runs: ${OXEN_CACHE:-$HOME/.cache/oxen}/testhost.
# shellcheck shell=bash

TESTHOST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TH_CACHE="${OXEN_CACHE:-${HOME:?neither OXEN_CACHE nor HOME is set}/.cache/oxen}/testhost"
# Kernel flavour asked for by the issue: Debian's 6.12 build for bookworm, unsigned so the image is a plain file.
# shellcheck disable=SC2034 # used by the scripts that source this file
TH_PKG_REGEX='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
# Modules L1 needs: 9p and overlayfs to see the host's root, then KVM itself.
# shellcheck disable=SC2034
TH_L1_MODULES=(9p 9pnet_virtio overlay irqbypass ccp kvm kvm_amd)

# Exit status of die: testhost/run sets 125, its status for failures of the test host itself.
TH_DIE_STATUS=1
die() {
  echo "testhost: error: $*" >&2
  exit "$TH_DIE_STATUS"
}

note() {
  echo "testhost: $*" >&2
}

# th_current: prints the kernel release recorded by prepare (e.g. 6.12.117+deb12-amd64), or fails.
th_current() {
  local f="$TH_CACHE/current"
  [ -s "$f" ] || die "no kernel prepared yet in $TH_CACHE (run testhost/prepare)"
  local rel
  rel=$(cat "$f")
  [ -d "$TH_CACHE/kernels/$rel" ] || die "cache entry $TH_CACHE/kernels/$rel is missing (run testhost/prepare)"
  echo "$rel"
}

# th_kroot REL: the extracted package tree of kernel release REL (modules there are decompressed).
th_kroot() {
  echo "$TH_CACHE/kernels/$1/root"
}

# th_ensure_prepared: runs prepare unless its result is already there; quiet when cached.
th_ensure_prepared() {
  "$TESTHOST_DIR/prepare" >&2 || die "testhost/prepare failed"
}

# th_module_closure MODROOT NAME...: prints, in load order (dependencies first), the paths relative to MODROOT of the
# named modules and everything they depend on, per MODROOT/modules.dep. '-' and '_' are the same in module names.
# Built-in modules (listed in modules.builtin) are accepted and print nothing.
th_module_closure() {
  local modroot=$1
  shift
  [ -f "$modroot/modules.dep" ] || die "no modules.dep in $modroot"
  awk -v want="$*" '
    function norm(p,   b) { b = p; sub(/.*\//, "", b); sub(/\.ko(\.xz|\.zst|\.gz)?$/, "", b); gsub(/-/, "_", b); return b }
    FILENAME ~ /modules\.builtin$/ { builtin[norm($1)] = 1; next }
    {
      path = $1; sub(/:$/, "", path); n = norm(path)
      file[n] = path; deps[n] = ""
      for (i = 2; i <= NF; i++) deps[n] = deps[n] " " norm($i)
    }
    function visit(n,   d, k, i) {
      if (n in done) return
      done[n] = 1
      k = split(deps[n], d, " ")
      # modules.dep lists the deepest dependencies last, so visiting from the end loads them first.
      for (i = k; i >= 1; i--) visit(d[i])
      print file[n]
    }
    END {
      k = split(want, w, " ")
      for (i = 1; i <= k; i++) {
        n = w[i]; gsub(/-/, "_", n)
        if (n in file) visit(n)
        else if (!(n in builtin)) { print "unknown kernel module: " w[i] > "/dev/stderr"; bad = 1 }
      }
      exit bad
    }
  ' "$modroot/modules.builtin" "$modroot/modules.dep" || die "cannot resolve kernel modules: $*"
}

# th_stage_modules REL DEST NAME...: copies the named modules of kernel REL and their dependencies into
# DEST/lib/modules/REL and writes a matching modules.dep there, so `modprobe NAME` works inside the image.
th_stage_modules() {
  local rel=$1 dest=$2
  shift 2
  local src dst m
  src="$(th_kroot "$rel")/lib/modules/$rel"
  dst="$dest/lib/modules/$rel"
  mkdir -p "$dst"
  cp "$src/modules.builtin" "$src/modules.builtin.modinfo" "$src/modules.order" "$dst/"
  [ $# -gt 0 ] || { : >"$dst/modules.dep"; return 0; }
  local mods
  mods=$(th_module_closure "$src" "$@") || exit 1
  while IFS= read -r m; do
    [ -n "$m" ] || continue
    mkdir -p "$dst/$(dirname "$m")"
    cp "$src/$m" "$dst/$m"
  done <<<"$mods"
  depmod -b "$dest" "$rel" || die "depmod failed for $dst"
  # Also record the load order, for inits that insmod without a modprobe.
  printf '%s\n' "$mods" | sed '/^$/d' >"$dst/oxen-load-order"
}

# th_stage_busybox DEST: installs busybox-static as DEST/bin/busybox with a link for every applet, plus the usual
# mount points.
th_stage_busybox() {
  local dest=$1 bb applet
  bb=$(command -v busybox) || die "busybox not found (run scripts/install-deps)"
  # The image has no C library, so only the static build works there.
  ! ldd "$bb" >/dev/null 2>&1 || die "$bb is dynamically linked; install busybox-static (scripts/install-deps)"
  mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,mnt,root,etc}
  cp "$bb" "$dest/bin/busybox"
  while IFS= read -r applet; do
    applet=${applet#/}
    [ "$applet" = bin/busybox ] && continue
    [ -e "$dest/$applet" ] || ln -s /bin/busybox "$dest/$applet"
  done < <("$dest/bin/busybox" --list-full)
}

# th_pack DIR OUT: writes DIR as a gzip-compressed newc cpio archive (what the kernel's initramfs loader reads).
th_pack() {
  local dir=$1 out=$2 tmp
  tmp="$out.tmp.$$"
  (cd "$dir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --quiet -o -0 -H newc -R 0:0) | gzip -1 >"$tmp" ||
    { rm -f "$tmp"; die "cannot write $out"; }
  mv -f "$tmp" "$out"
}
