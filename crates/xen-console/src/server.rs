//! The console thread: services the rings and serves console clients on a Unix socket.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::ratelimit::warn_ratelimited;
use crate::ring::{self, RingError};
use crate::ConsolePage;

/// Output replayed to a client when it connects.
pub const SCROLLBACK: usize = 64 << 10;
/// Unsent output after which a client that does not read is disconnected, so it never holds up
/// the guest or the host's memory.
const CLIENT_BACKLOG: usize = 1 << 20;
/// Typed input held back while the guest is not reading; clients are not read beyond this.
const PENDING_INPUT: usize = 64 << 10;
/// Clients served at once (more are refused).
const MAX_CLIENTS: usize = 32;
/// The safety-net poll of the rings, for a kick that got lost.
const POLL_MS: i32 = 50;
/// `out` ring passes per wakeup, so a guest producing without pause cannot starve the clients.
const PASSES: usize = 8;

/// A running PV console backend. Dropping it stops the thread and removes the socket.
pub struct PvConsole {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl std::fmt::Debug for PvConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PvConsole")
            .field("socket", &self.socket)
            .finish()
    }
}

impl PvConsole {
    /// Starts the backend for the console ring in `page`.
    ///
    /// `kick` becomes readable when the guest notifies the console's event channel; `notify`
    /// raises that channel in the guest. Guest output goes to `log` (if any) and to every
    /// client of the Unix socket created at `socket` (a stale socket file is replaced); what
    /// clients send becomes the guest's keyboard input.
    pub fn start(
        page: Arc<dyn ConsolePage>,
        kick: EventFd,
        notify: Box<dyn Fn() + Send + Sync>,
        socket: &Path,
        log: Option<Box<dyn Write + Send>>,
    ) -> io::Result<PvConsole> {
        let listener = bind(socket)?;
        listener.set_nonblocking(true)?;
        let stop = EventFd::new(EFD_NONBLOCK)?;
        ring::mark_connected(&*page);
        let mut hub = Hub {
            page,
            kick,
            notify,
            listener,
            stop: stop.try_clone()?,
            clients: Vec::new(),
            scrollback: VecDeque::new(),
            input: VecDeque::new(),
            log,
        };
        let thread = std::thread::Builder::new()
            .name("pv-console".into())
            .spawn(move || hub.run())?;
        Ok(PvConsole {
            stop,
            thread: Some(thread),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket clients connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for PvConsole {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds `path`, replacing a socket file nobody listens on any more.
fn bind(path: &Path) -> io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                ErrorKind::AddrInUse,
                format!("{} is in use by another console", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("binding {}: {e}", path.display())))?;
    // The console is a keyboard on the guest: only the owner may use it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

struct Client {
    stream: UnixStream,
    /// Output not yet sent.
    out: VecDeque<u8>,
    /// The client closed its sending side; it still gets output.
    input_done: bool,
    dead: bool,
}

impl Client {
    /// Queues output; a client that has fallen too far behind is dropped.
    fn queue(&mut self, data: &[u8]) {
        if self.out.len() + data.len() > CLIENT_BACKLOG {
            warn_ratelimited!(5, "console client is not reading; disconnecting it");
            self.dead = true;
            return;
        }
        self.out.extend(data);
    }

    /// Sends queued output until the socket would block.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.dead {
            let (a, _) = self.out.as_slices();
            // SAFETY: `a` is valid for `a.len()` bytes; MSG_NOSIGNAL turns a closed peer into
            // EPIPE instead of SIGPIPE.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    a.as_ptr().cast(),
                    a.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    ErrorKind::WouldBlock => return,
                    ErrorKind::Interrupted => continue,
                    _ => self.dead = true,
                }
            } else {
                self.out.drain(..n as usize);
            }
        }
    }

    /// Reads typed input into `input` up to its limit.
    fn read_input(&mut self, input: &mut VecDeque<u8>) {
        let mut buf = [0u8; 4096];
        while !self.input_done && input.len() < PENDING_INPUT {
            let room = (PENDING_INPUT - input.len()).min(buf.len());
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => self.input_done = true,
                Ok(n) => input.extend(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => self.dead = true,
            }
        }
    }
}

struct Hub {
    page: Arc<dyn ConsolePage>,
    kick: EventFd,
    notify: Box<dyn Fn() + Send + Sync>,
    listener: UnixListener,
    stop: EventFd,
    clients: Vec<Client>,
    scrollback: VecDeque<u8>,
    /// Typed input the guest has not taken yet.
    input: VecDeque<u8>,
    log: Option<Box<dyn Write + Send>>,
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Hub {
    fn run(&mut self) {
        let mut busy = false;
        loop {
            let mut fds = vec![
                pollfd(self.stop.as_raw_fd(), libc::POLLIN),
                pollfd(self.kick.as_raw_fd(), libc::POLLIN),
                pollfd(self.listener.as_raw_fd(), libc::POLLIN),
            ];
            for c in &self.clients {
                let mut ev = 0;
                if !c.input_done && self.input.len() < PENDING_INPUT {
                    ev |= libc::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                fds.push(pollfd(c.stream.as_raw_fd(), ev));
            }
            let timeout = if busy { 0 } else { POLL_MS };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the whole call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if rc < 0 && io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                tracing::error!("pv console: poll: {}", io::Error::last_os_error());
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            if fds[1].revents != 0 {
                // Reset the counter; the rings are serviced below on every wakeup anyway.
                let _ = self.kick.read();
            }
            for (c, p) in self.clients.iter_mut().zip(&fds[3..]) {
                if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    c.read_input(&mut self.input);
                }
                if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    c.dead = true;
                }
            }
            if fds[2].revents != 0 {
                self.accept();
            }
            self.feed_input();
            busy = self.drain_output();
            for c in &mut self.clients {
                c.flush();
            }
            self.clients.retain(|c| !c.dead);
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        warn_ratelimited!(5, "pv console: too many clients; refusing one");
                        continue;
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client {
                        stream,
                        out: self.scrollback.clone(),
                        input_done: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Moves pending input into the `in` ring.
    fn feed_input(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let data = self.input.make_contiguous();
        match ring::write_input(&*self.page, data) {
            Ok(0) => {}
            Ok(n) => {
                self.input.drain(..n);
                (self.notify)();
            }
            Err(e) => warn_ratelimited!(5, "pv console: {e}"),
        }
    }

    /// Drains the `out` ring; returns whether the guest may have more right away.
    fn drain_output(&mut self) -> bool {
        let mut data = Vec::new();
        let mut more = false;
        for pass in 0..PASSES {
            match ring::read_output(&*self.page, &mut data) {
                Ok(0) => break,
                Ok(_) => more = pass + 1 == PASSES,
                Err(e @ RingError::Output { .. }) | Err(e @ RingError::Input { .. }) => {
                    warn_ratelimited!(5, "pv console: {e}");
                    break;
                }
            }
        }
        if data.is_empty() {
            return false;
        }
        // Space was freed: the guest may be waiting to write more.
        (self.notify)();
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write_all(&data).and_then(|_| log.flush()) {
                tracing::warn!("pv console: console log failed, no longer logging: {e}");
                self.log = None;
            }
        }
        let keep = data.len().min(SCROLLBACK);
        let excess = (self.scrollback.len() + keep).saturating_sub(SCROLLBACK);
        self.scrollback.drain(..excess);
        self.scrollback.extend(&data[data.len() - keep..]);
        for c in &mut self.clients {
            c.queue(&data);
        }
        more
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
