# Benchmarks (bench/): fio drives the PV block benchmark (bench/blk) inside the L2 guests and on the raw image in
# L1; the binary and its shared libraries are copied into the guest's initramfs, so it is never installed in a guest.
apt_install fio
