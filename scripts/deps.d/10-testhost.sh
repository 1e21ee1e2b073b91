# Test host (issue 2, part 4): testhost/ boots a QEMU TCG virtual machine running Debian's 6.12 kernel with KVM
# inside it, so end-to-end tests get a real KVM with Xen HVM support. busybox-static, cpio and xz-utils build the
# initramfs images; kmod reads module metadata. The kernel .deb itself is fetched by testhost/prepare with
# `apt-get download` into a cache (never installed on this machine).
apt_install busybox-static cpio xz-utils kmod python3 shellcheck

# QEMU 10 comes from bookworm-backports; its dependencies (seabios, qemu-system-data) must come from there too,
# which apt_install cannot express, hence -t.
if ! qemu-system-x86_64 --version 2>/dev/null | grep -q 'version 10\.'; then
  echo "install-deps: apt-get install -t bookworm-backports qemu-system-x86 qemu-utils"
  apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
fi
