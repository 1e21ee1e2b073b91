# VHD engine (crates/block, crates/vhd-tool): interoperability tests and the benchmark peer.
# qemu-img/qemu-io write and read VHDs (-f vpc; QEMU 10 from backports, as 10-testhost.sh installs);
# libvhdi's vhdiinfo/vhdimount read Oxen's differencing chains; fuse3 lets vhdimount expose the disk.
apt_install qemu-utils/bookworm-backports libvhdi-utils fuse3
