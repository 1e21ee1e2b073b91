# Build tools for the Rust workspace.
apt_install build-essential pkg-config
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# zstd extracts the ELF vmlinux from the guest bzImage for the ELF-boot test.
apt_install zstd
