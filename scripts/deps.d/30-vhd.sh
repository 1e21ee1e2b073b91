# VHD engine (crates/block, crates/vhd-tool): interoperability tests and the benchmark peer.
# qemu-img/qemu-io write and read VHDs (-f vpc); libvhdi's vhdiinfo/vhdimount read Oxen's
# differencing chains; fuse3 lets vhdimount expose the disk as a file.
apt_install qemu-utils libvhdi-utils fuse3
