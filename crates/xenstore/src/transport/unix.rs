//! The Unix socket libxenstore connects to (`/var/run/xenstored/socket` by default, or
//! `$XENSTORED_PATH`). Every socket client is the control domain. This module holds the
//! per-client buffering: non-blocking reads into a [`Decoder`], and an output queue with a
//! cap so that a client that stops reading is disconnected instead of growing memory.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use mio::net::{UnixListener, UnixStream};

use crate::server::ConnId;
use crate::wire::Decoder;

/// Where libxenstore looks for the daemon when `XENSTORED_PATH` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/xenstored/socket";

/// Output backlog past which a client's requests are no longer read (it must read its
/// replies first).
pub const READ_PAUSE_BACKLOG: usize = 256 * 1024;

/// Binds the listening socket, replacing a stale socket file and creating its directory.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let l = UnixListener::bind(path)?;
    // Every socket client is all-powerful dom0: only root may connect, as with Xen's daemons.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Outcome of servicing a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum IoStatus {
    /// Still open.
    Open,
    /// The peer closed or the socket failed.
    Closed,
}

/// Outcome of reading from a socket.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Everything available was read.
    Drained,
    /// The read budget ran out with data possibly left: read again after processing (the
    /// poller is edge-triggered and will not report it again).
    More,
    /// The peer closed or the socket failed.
    Closed,
}

/// One connected socket client.
#[derive(Debug)]
pub struct SocketConn {
    /// The stream.
    pub stream: UnixStream,
    /// The engine's id for this client.
    pub conn: ConnId,
    /// Bytes received, split into messages.
    pub decoder: Decoder,
    out: Vec<u8>,
    out_pos: usize,
    /// Whether write interest is registered with the poller.
    pub want_write: bool,
}

impl SocketConn {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream, conn: ConnId) -> Self {
        SocketConn {
            stream,
            conn,
            decoder: Decoder::new(),
            out: Vec::new(),
            out_pos: 0,
            want_write: false,
        }
    }

    /// Bytes queued but not yet sent.
    pub fn backlog(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Reads what is available, up to a budget (for fairness between clients).
    pub fn read_available(&mut self, scratch: &mut [u8]) -> ReadStatus {
        let mut budget = 16usize;
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadStatus::Closed,
                Ok(n) => {
                    self.decoder.feed(&scratch[..n]);
                    if n < scratch.len() {
                        return ReadStatus::Drained;
                    }
                    budget -= 1;
                    if budget == 0 {
                        return ReadStatus::More;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadStatus::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadStatus::Closed,
            }
        }
    }

    /// Queues bytes to send.
    pub fn queue(&mut self, bytes: &[u8]) {
        if self.out.is_empty() {
            self.out.extend_from_slice(bytes);
            self.out_pos = 0;
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    /// Sends as much of the queue as the socket takes.
    pub fn flush(&mut self) -> IoStatus {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return IoStatus::Closed,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return IoStatus::Closed,
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 64 * 1024 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        IoStatus::Open
    }
}

/// The socket path to serve: an explicit choice, else `$XENSTORED_PATH`, else the default.
pub fn socket_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os("XENSTORED_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}
