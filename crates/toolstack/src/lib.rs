//! The API of `oxend`, the Oxen host daemon that owns the domain table: the types of its
//! versioned JSON-lines protocol over a Unix socket, the domain record it hands out, and a small
//! blocking [`Client`].
//!
//! One request per line, one response per line, on one connection:
//!
//! ```text
//! {"v":1,"id":7,"op":"info","args":{"domain":"web"}}
//! {"v":1,"id":7,"ok":{"domid":1,"name":"web",...}}
//! {"v":1,"id":8,"err":{"code":"no-such-domain","msg":"domain 'db' does not exist"}}
//! ```
//!
//! `docs/OXEND-API.md` is the schema's reference: every op, its arguments and result, the error
//! codes and the versioning rule.
#![deny(missing_docs)]

mod client;
mod domain;
mod ops;
mod proto;

pub use client::{Client, ClientError};
pub use domain::{Action, DomainInfo, DomainRef, State};
pub use ops::{CreateArgs, DomainArgs, DomidArgs, DomnameArgs, Op, VersionInfo};
pub use proto::{ApiError, ErrorCode, Request, Response, VERSION};

/// The socket's file name inside the runtime directory (`$OXEN_RUN_DIR`, default `/run/oxen`).
pub const SOCKET_NAME: &str = "oxend.sock";

/// The runtime directory: `$OXEN_RUN_DIR`, or `/run/oxen`.
pub fn run_dir() -> std::path::PathBuf {
    std::env::var_os("OXEN_RUN_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/run/oxen"))
}

/// Where oxend listens: `run_dir()/oxend.sock`.
pub fn socket_path() -> std::path::PathBuf {
    run_dir().join(SOCKET_NAME)
}
