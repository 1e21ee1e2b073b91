//! Xenstore for Oxen: the hierarchical key-value store through which Xen PV devices are
//! negotiated. The engine ([`server::Xenstore`]) implements Xen's protocol
//! (docs/misc/xenstore.txt): permissions, transactions with conflict detection, watches,
//! domain management and quotas. Transports ([`transport`]) carry its messages over the
//! Unix socket libxenstore uses and over a domain's shared ring page; [`daemon`] runs both in
//! one event loop and [`persist`] keeps the state across restarts.

#![warn(missing_docs)]

pub mod client;
pub mod daemon;
pub mod domain;
pub mod fuzzing;
pub mod ops;
pub mod path;
pub mod perms;
pub mod persist;
pub mod quota;
pub mod server;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transaction;
pub mod transport;
pub mod watch;
pub mod wire;

pub use server::{ConnId, ConnKind, Xenstore};
pub use wire::{Message, MsgType, XsError};
