//! How a backend process (oxenstored, a PV device backend) reaches one guest page and one
//! event channel of a domain whose VMM runs in another process.
//!
//! The VMM keeps guest memory (and Xen's special pages) in a memfd. It serves a Unix socket,
//! `<run_dir>/xen/dom<DOMID>.sock` ([`socket_path`]), with a [`LinkServer`] over its
//! [`GuestLink`]. A backend calls [`attach`] with a guest frame number and an event-channel
//! port and gets a [`RemotePage`]: that one page mapped shared into its own address space,
//! plus the two eventfds of the port (the guest's kicks in, the backend's notifications out).
//!
//! Protocol (version [`PROTOCOL_VERSION`]): the backend sends one JSON line
//! `{"version":1,"op":"attach","gfn":N,"port":P}`; the VMM answers one JSON line,
//! `{"version":1,"ok":true,"offset":O}` with three descriptors passed by `SCM_RIGHTS` in the
//! same message — the memfd, the kick eventfd, the call eventfd — or
//! `{"version":1,"ok":false,"error":"..."}` without descriptors. The connection then stays
//! open: end-of-file on it means the VMM is gone ([`RemotePage::vmm_gone`]).

#![warn(missing_docs)]

mod client;
mod proto;
mod server;
pub mod testing;

use std::path::{Path, PathBuf};

pub use client::{attach, AccessError, LinkError, RemotePage};
pub use proto::{MAX_LINE, PROTOCOL_VERSION};
pub use server::{GuestLink, LinkServer};

/// Size of the one page a link maps.
pub const PAGE_SIZE: usize = 4096;

/// Environment variable naming the run directory.
pub const RUN_DIR_ENV: &str = "OXEN_RUN_DIR";

/// Run directory used when `$OXEN_RUN_DIR` is not set.
pub const DEFAULT_RUN_DIR: &str = "/run/oxen";

/// The run directory: `$OXEN_RUN_DIR`, else `/run/oxen`.
pub fn run_dir() -> PathBuf {
    std::env::var_os(RUN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUN_DIR))
}

/// The link socket of domain `domid` under the default run directory ([`run_dir`]).
pub fn socket_path(domid: u32) -> PathBuf {
    socket_path_in(&run_dir(), domid)
}

/// The link socket of domain `domid` under `run_dir`: `<run_dir>/xen/dom<domid>.sock`.
pub fn socket_path_in(run_dir: &Path, domid: u32) -> PathBuf {
    run_dir.join("xen").join(format!("dom{domid}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_follow_the_convention() {
        assert_eq!(
            socket_path_in(Path::new("/tmp/r"), 7),
            PathBuf::from("/tmp/r/xen/dom7.sock")
        );
        assert!(socket_path(3).ends_with("xen/dom3.sock"));
    }
}
