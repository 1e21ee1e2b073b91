# Build tools for the Rust workspace.
apt_install build-essential pkg-config
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
