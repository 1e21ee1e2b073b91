//! The console thread: services the rings and serves console clients on a Unix socket.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::ratelimit::warn_ratelimited;

/// Output replayed to a client when it connects.
pub const SCROLLBACK: usize = 64 << 10;
/// Unsent output after which a client that does not read is disconnected, so it never holds up
/// the guest or the host's memory.
const CLIENT_BACKLOG: usize = 1 << 20;
/// Typed input held back while the guest is not reading; clients are not read beyond this.
const PENDING_INPUT: usize = 64 << 10;
/// Clients served at once (more are refused).
const MAX_CLIENTS: usize = 32;
/// The safety-net poll of the backend, for a wakeup that got lost.
const POLL_MS: i32 = 50;
/// The poll period while typed input waits for the guest to make room.
const INPUT_RETRY_MS: i32 = 10;

/// Where a console's output comes from and its input goes: the PV ring, or (in `oxl`) an
/// emulated serial port.
pub trait Backend: Send + 'static {
    /// A descriptor that becomes readable when there may be new output (the guest's kick).
    fn wake_fd(&self) -> RawFd;
    /// Called when [`Backend::wake_fd`] was readable, to reset it.
    fn woken(&mut self);
    /// Appends available output to `out`; returns whether more may be waiting right away. Does
    /// a bounded amount of work.
    fn read_output(&mut self, out: &mut Vec<u8>) -> bool;
    /// Takes as much of `data` as the guest can accept now; returns how much.
    fn write_input(&mut self, data: &[u8]) -> usize;
}

/// A console served on a Unix socket by its own thread. Dropping it stops the thread and
/// removes the socket.
pub struct ConsoleServer {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

impl std::fmt::Debug for ConsoleServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleServer")
            .field("socket", &self.socket)
            .finish()
    }
}

impl ConsoleServer {
    /// Serves `backend` on a Unix socket created at `socket` (a stale socket file is replaced).
    ///
    /// Output goes to `log` (if any) and to every client, after a replay of the last
    /// [`SCROLLBACK`] bytes; what clients send becomes input, queued while the guest is not
    /// reading. The backend is also polled every 50 ms, as a safety net for lost wakeups.
    pub fn start(
        backend: impl Backend,
        socket: &Path,
        log: Option<Box<dyn Write + Send>>,
    ) -> io::Result<ConsoleServer> {
        let listener = bind(socket)?;
        listener.set_nonblocking(true)?;
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let mut hub = Hub {
            backend,
            listener,
            stop: stop.try_clone()?,
            clients: Vec::new(),
            scrollback: VecDeque::new(),
            input: VecDeque::new(),
            log,
        };
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || hub.run())?;
        Ok(ConsoleServer {
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

impl Drop for ConsoleServer {
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

struct Hub<B> {
    backend: B,
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

impl<B: Backend> Hub<B> {
    fn run(&mut self) {
        let mut busy = false;
        loop {
            let mut fds = vec![
                pollfd(self.stop.as_raw_fd(), libc::POLLIN),
                pollfd(self.backend.wake_fd(), libc::POLLIN),
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
            let timeout = if busy {
                0
            } else if !self.input.is_empty() {
                INPUT_RETRY_MS
            } else {
                POLL_MS
            };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds for the whole call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if rc < 0 && io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                tracing::error!("console: poll: {}", io::Error::last_os_error());
                return;
            }
            if fds[0].revents != 0 {
                return;
            }
            if fds[1].revents != 0 {
                // The backend is serviced below on every wakeup anyway.
                self.backend.woken();
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
                        warn_ratelimited!(5, "console: too many clients; refusing one");
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

    /// Gives pending input to the guest.
    fn feed_input(&mut self) {
        if self.input.is_empty() {
            return;
        }
        let n = self.backend.write_input(self.input.make_contiguous());
        self.input.drain(..n.min(self.input.len()));
    }

    /// Takes the guest's output; returns whether it may have more right away.
    fn drain_output(&mut self) -> bool {
        let mut data = Vec::new();
        let more = self.backend.read_output(&mut data);
        if data.is_empty() {
            return false;
        }
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write_all(&data).and_then(|_| log.flush()) {
                tracing::warn!("console log failed, no longer logging: {e}");
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
