//! Why oxend could not start.

use std::path::PathBuf;

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another oxend runs on this host.
    #[error("another oxend is already running (it holds the lock {0})")]
    AlreadyRunning(PathBuf),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `--group` names no group.
    #[error("group '{0}' does not exist")]
    NoGroup(String),
    /// Looking up the group failed.
    #[error("looking up group '{name}': {source}")]
    Group {
        /// The group.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// A closure making an [`Error::Io`] for `what` on `path`.
    pub fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    }
}
