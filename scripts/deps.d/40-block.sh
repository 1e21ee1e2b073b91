# PV block backend end-to-end tests (crates/e2e/tests/xen_block.rs): e2fsprogs' mkfs.ext4 and e2fsck go into the
# guest's initramfs (testhost/mkguest --binary), and the scenario checks the images on the host with e2fsck and
# reads files out of them with debugfs. Debian installs e2fsprogs by default; listed so a minimal system gets it.
apt_install e2fsprogs
