//! `oxend`, the Oxen host daemon: one per host, it owns the domain table, starts each domain's
//! VMM (`oxl create`) as its own process with its output in `RUN/logs/NAME.log`, supervises
//! every VMM through a pidfd, applies on_crash / on_reboot when one dies, and answers the
//! `toolstack` API on `RUN/oxend.sock`.
//!
//! Domains never depend on oxend staying up: VMMs run in their own process groups, register
//! themselves in `RUN/domains/`, and a restarted oxend adopts the ones still running
//! ([`Daemon::recover`]).
#![deny(missing_docs)]

pub mod daemon;
pub mod error;
pub mod ops;
pub mod registry;
pub mod server;
pub mod store;
pub mod sys;
pub mod vmm;

pub use daemon::{Config, Daemon};
pub use error::Error;
pub use server::Server;
