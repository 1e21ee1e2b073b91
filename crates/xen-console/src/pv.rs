//! [`PvConsole`]: the PV console ring as a [`Backend`] of a [`ConsoleServer`].

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::ratelimit::warn_ratelimited;
use crate::ring;
use crate::server::{Backend, ConsoleServer};
use crate::ConsolePage;

/// `out` ring passes per wakeup, so a guest producing without pause cannot starve the clients.
const PASSES: usize = 8;

/// A running PV console backend. Dropping it stops the thread and removes the socket.
#[derive(Debug)]
pub struct PvConsole(ConsoleServer);

impl PvConsole {
    /// Starts the backend for the console ring in `page`.
    ///
    /// `kick` becomes readable when the guest notifies the console's event channel; `notify`
    /// raises that channel in the guest. Guest output goes to `log` (if any) and to every
    /// client of the Unix socket created at `socket` (a stale socket file is replaced); what
    /// clients send becomes the guest's keyboard input. See [`ConsoleServer::start`].
    pub fn start(
        page: Arc<dyn ConsolePage>,
        kick: EventFd,
        notify: Box<dyn Fn() + Send + Sync>,
        socket: &Path,
        log: Option<Box<dyn Write + Send>>,
    ) -> io::Result<PvConsole> {
        ring::mark_connected(&*page);
        let backend = RingBackend { page, kick, notify };
        ConsoleServer::start(backend, socket, log).map(PvConsole)
    }

    /// The socket clients connect to.
    pub fn socket(&self) -> &Path {
        self.0.socket()
    }
}

struct RingBackend {
    page: Arc<dyn ConsolePage>,
    kick: EventFd,
    notify: Box<dyn Fn() + Send + Sync>,
}

impl Backend for RingBackend {
    fn wake_fd(&self) -> RawFd {
        self.kick.as_raw_fd()
    }

    fn woken(&mut self) {
        let _ = self.kick.read();
    }

    fn read_output(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let mut more = false;
        for pass in 0..PASSES {
            match ring::read_output(&*self.page, out) {
                Ok(0) => break,
                Ok(_) => more = pass + 1 == PASSES,
                Err(e) => {
                    warn_ratelimited!(5, "pv console: {e}");
                    break;
                }
            }
        }
        if out.len() > start {
            // Space was freed: the guest may be waiting to write more.
            (self.notify)();
        }
        more
    }

    fn write_input(&mut self, data: &[u8]) -> usize {
        match ring::write_input(&*self.page, data) {
            Ok(0) => 0,
            Ok(n) => {
                (self.notify)();
                n
            }
            Err(e) => {
                warn_ratelimited!(5, "pv console: {e}");
                0
            }
        }
    }
}

#[cfg(test)]
#[path = "pv_tests.rs"]
mod tests;
