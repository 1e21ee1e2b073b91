//! Error type shared by every image format.

use std::io;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while opening, reading or changing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed; `context` says what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing when the call failed.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The image's metadata is malformed; the message names the structure and the problem.
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// The image uses a feature this engine does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The caller asked for something impossible (bad size, bad path, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A request was not aligned to the 512-byte sector size the format requires.
    #[error("request at offset {offset} length {len} is not aligned to 512-byte sectors")]
    Unaligned {
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: u64,
    },
    /// A request reached past the end of the virtual disk.
    #[error("request at offset {offset} length {len} is beyond the disk size {size}")]
    OutOfRange {
        /// Byte offset of the request.
        offset: u64,
        /// Length of the request in bytes.
        len: u64,
        /// Virtual size of the disk.
        size: u64,
    },
    /// A write was attempted on an image opened read-only.
    #[error("image is open read-only")]
    ReadOnly,
    /// The parent of a differencing disk could not be found or does not match.
    #[error("parent of {child}: {reason}")]
    Parent {
        /// The child image whose parent is at fault.
        child: String,
        /// What went wrong.
        reason: String,
    },
    /// The image is encrypted and no key was given.
    #[error("image {0} is encrypted: a key file is required")]
    KeyRequired(String),
    /// The key does not match the key check value stored in the image.
    #[error("wrong key for encrypted image {0}")]
    WrongKey(String),
}

impl Error {
    /// Wraps an I/O error with a description of the operation that failed.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds a [`Error::Corrupt`] from anything printable.
    pub fn corrupt(msg: impl Into<String>) -> Self {
        Error::Corrupt(msg.into())
    }
}
