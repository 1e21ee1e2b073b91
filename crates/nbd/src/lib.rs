//! An NBD (Network Block Device) server that exports one [`block::DiskImage`] so host tools
//! (`qemu-img`, `qemu-io`, `nbd-client`, libnbd) can read, and optionally write, a disk image.
//!
//! Protocol support: fixed newstyle negotiation with `NBD_OPT_EXPORT_NAME`, `NBD_OPT_GO`,
//! `NBD_OPT_INFO` (export size and flags, name, description, block sizes), `NBD_OPT_LIST` and
//! `NBD_OPT_ABORT`; structured replies, TLS and every other option are refused with
//! `NBD_REP_ERR_UNSUP`. Transmission uses simple replies: `READ`, `WRITE`, `FLUSH`, `TRIM`,
//! `WRITE_ZEROES` (the last three and `WRITE` only on writable exports) and `DISC`.
//!
//! Every request is checked before it reaches the image (range, overflow, payload size,
//! flags, read-only); a client breaking the framing (bad magic, unknown client flags) is
//! disconnected. A hostile client can neither panic the server nor touch data outside the
//! export.
//!
//! [`Server`] accepts clients on a Unix socket or a TCP port, one thread each;
//! [`serve_connection`] serves one already-connected stream.

#![deny(missing_docs)]

mod handshake;
mod io;
pub mod proto;
mod server;
mod transmit;

#[cfg(test)]
mod testclient;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use block::DiskImage;

pub use server::{Listener, Server, ShutdownHandle};

/// Errors of a connection or of the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket or image call failed; `context` says what the server was doing.
    #[error("{context}: {source}")]
    Io {
        /// What the server was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client broke the protocol; the connection was closed.
    #[error("client broke the NBD protocol: {0}")]
    Protocol(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The one disk image a server exports, and how.
#[derive(Debug)]
pub struct Export {
    name: String,
    description: String,
    image: Arc<dyn DiskImage>,
    writable: bool,
    /// Serialises read-modify-write cycles of unaligned writes so two of them on the same
    /// sector cannot undo each other.
    rmw: Mutex<()>,
}

impl Export {
    /// Exports `image` under `name`; writable exactly when the image was opened writable.
    /// Clients asking for the empty name (the protocol's default export) get it too.
    pub fn new(name: impl Into<String>, image: Arc<dyn DiskImage>) -> Export {
        let writable = !image.read_only();
        Export {
            name: name.into(),
            description: String::new(),
            image,
            writable,
            rmw: Mutex::new(()),
        }
    }

    /// Refuses writes even if the image could take them.
    pub fn read_only(mut self) -> Export {
        self.writable = false;
        self
    }

    /// Sets the description sent to clients asking for `NBD_INFO_DESCRIPTION`.
    pub fn with_description(mut self, d: impl Into<String>) -> Export {
        self.description = d.into();
        self
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether clients may write.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The exported image.
    pub fn image(&self) -> &Arc<dyn DiskImage> {
        &self.image
    }

    /// Whether a client asking for `name` gets this export.
    pub(crate) fn matches(&self, name: &str) -> bool {
        name.is_empty() || name == self.name
    }

    /// Transmission flags advertised for this export.
    pub fn transmission_flags(&self) -> u16 {
        use proto::*;
        let base = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
        if self.writable {
            base | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES
        } else {
            base | TFLAG_READ_ONLY
        }
    }

    /// (minimum, preferred, maximum) block sizes advertised through `NBD_INFO_BLOCK_SIZE`.
    /// Unaligned requests still work (read-modify-write), the minimum only tells clients what
    /// is efficient.
    pub fn block_sizes(&self) -> (u32, u32, u32) {
        let min = if self.image.size().is_multiple_of(block::SECTOR_SIZE) {
            block::SECTOR_SIZE as u32
        } else {
            1
        };
        (min, 4096, proto::MAX_PAYLOAD)
    }
}

/// Serves one connected client to the end: handshake, then requests until it disconnects.
/// Returns `Ok` when the client left properly (`NBD_OPT_ABORT`, `NBD_CMD_DISC` or closing the
/// socket between messages).
pub fn serve_connection<S: std::io::Read + std::io::Write>(
    export: &Export,
    stream: &mut S,
) -> Result<()> {
    match handshake::negotiate(export, stream)? {
        Some(size) => transmit::run(export, stream, size),
        None => Ok(()),
    }
}
