# Xenstore (issue 4): Xen's own client tools, used by crates/xenstored's integration tests to check
# that oxenstored talks the real protocol. xen-utils-4.17 ships test-xenstore; xenstore-utils the CLI tools.
# --no-install-recommends keeps out the hypervisor image; no Xen service can start without /proc/xen.
apt_install xenstore-utils xen-utils-4.17
