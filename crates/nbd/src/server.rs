//! Listening sockets and the accept loop: one thread per client, a bounded number of clients,
//! and a clean stop (no new clients, open connections shut, image flushed).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{handshake, transmit, Error, Export, Result};

/// Where clients connect.
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket; the file is removed when the server stops.
    Unix {
        /// The listening socket.
        listener: UnixListener,
        /// Its path.
        path: PathBuf,
    },
    /// A TCP port.
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on a Unix socket at `path`. A stale socket file (nobody listening) is replaced;
    /// a live one or any other kind of file is an error.
    pub fn bind_unix(path: &Path) -> Result<Listener> {
        // Absolute, so the URL works from any directory.
        let path = &std::path::absolute(path)
            .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(Error::io(
                    format!("{} exists and is not a socket", path.display()),
                    io::ErrorKind::AlreadyExists.into(),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(Error::io(
                    format!("a server is already listening on {}", path.display()),
                    io::ErrorKind::AddrInUse.into(),
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("removing stale {}", path.display()), e))?;
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::io(format!("listening on {}", path.display()), e))?;
        Ok(Listener::Unix {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Listens on a TCP address (port 0 picks a free port; see [`Listener::local_addr`]).
    pub fn bind_tcp(addr: SocketAddr) -> Result<Listener> {
        TcpListener::bind(addr)
            .map(Listener::Tcp)
            .map_err(|e| Error::io(format!("listening on {addr}"), e))
    }

    /// The bound TCP address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }

    /// The NBD URL of `export_name` on this listener, as qemu and libnbd take it.
    pub fn url(&self, export_name: &str) -> String {
        let name = url_escape(export_name);
        match self {
            Listener::Unix { path, .. } => format!(
                "nbd+unix:///{name}?socket={}",
                url_escape(&path.to_string_lossy())
            )
            .replace("%2F", "/"),
            Listener::Tcp(_) => match self.local_addr() {
                Some(SocketAddr::V6(a)) => format!("nbd://[{}]:{}/{name}", a.ip(), a.port()),
                Some(a) => format!("nbd://{a}/{name}"),
                None => format!("nbd://?/{name}"),
            },
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix { listener, .. } => listener.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Listener::Unix { listener, .. } => listener.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        let s = match self {
            Listener::Unix { listener, .. } => Stream::Unix(listener.accept()?.0),
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                // Replies are written whole; don't let Nagle hold them back.
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
        };
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

fn url_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A connected client socket.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(on),
            Stream::Tcp(s) => s.set_nonblocking(on),
        }
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        // Errors only mean the peer is already gone.
        let _ = match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Shared stop state: a flag and a pipe that wakes the accept loop.
#[derive(Debug)]
struct Stop {
    flag: AtomicBool,
    rd: OwnedFd,
    wr: OwnedFd,
}

/// Stops a running [`Server`] from another thread (a signal handler thread, a test).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<Stop>);

impl ShutdownHandle {
    /// Asks the server to stop; [`Server::run`] returns once every client thread ended.
    pub fn shutdown(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        // SAFETY: writes one byte from a valid buffer to a pipe we own. A full pipe (EAGAIN)
        // already holds a wake-up, so the result does not matter.
        unsafe {
            libc::write(self.0.wr.as_raw_fd(), [1u8].as_ptr().cast(), 1);
        }
    }
}

/// Serves one [`Export`] to every client of a [`Listener`].
#[derive(Debug)]
pub struct Server {
    export: Arc<Export>,
    listener: Listener,
    stop: Arc<Stop>,
    max_clients: usize,
    handshake_timeout: Duration,
}

type Clients = Arc<Mutex<HashMap<u64, Stream>>>;

impl Server {
    /// A server for `export` on `listener` (64 clients at most, 30 s to finish a handshake).
    pub fn new(export: Export, listener: Listener) -> Result<Server> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-element array we pass.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if r != 0 {
            return Err(Error::io(
                "creating the wake-up pipe",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Server {
            export: Arc::new(export),
            listener,
            stop: Arc::new(Stop {
                flag: AtomicBool::new(false),
                rd,
                wr,
            }),
            max_clients: 64,
            handshake_timeout: Duration::from_secs(30),
        })
    }

    /// Sets how many clients may be connected at once; more are disconnected at once.
    pub fn max_clients(mut self, n: usize) -> Server {
        self.max_clients = n.max(1);
        self
    }

    /// Sets how long a client may take to finish the handshake.
    pub fn handshake_timeout(mut self, t: Duration) -> Server {
        self.handshake_timeout = t;
        self
    }

    /// The listener (for its address or URL).
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// The export served.
    pub fn export(&self) -> &Arc<Export> {
        &self.export
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Accepts clients until stopped, then disconnects them, waits for their threads, flushes
    /// a writable image and removes the Unix socket file.
    pub fn run(self) -> Result<()> {
        self.listener
            .set_nonblocking()
            .map_err(|e| Error::io("making the listener non-blocking", e))?;
        let clients: Clients = Arc::default();
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut next_id = 0u64;
        let res = self.accept_loop(&clients, &mut threads, &mut next_id);
        for s in clients.lock().unwrap_or_else(|e| e.into_inner()).values() {
            s.shutdown();
        }
        for t in threads {
            let _ = t.join();
        }
        if let Listener::Unix { path, .. } = &self.listener {
            let _ = std::fs::remove_file(path);
        }
        if self.export.writable {
            self.export
                .image
                .flush()
                .map_err(|e| Error::io("flushing the image", io::Error::other(e)))?;
        }
        res
    }

    fn accept_loop(
        &self,
        clients: &Clients,
        threads: &mut Vec<JoinHandle<()>>,
        next_id: &mut u64,
    ) -> Result<()> {
        let mut fds = [
            libc::pollfd {
                fd: self.listener.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.rd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        while !self.stop.flag.load(Ordering::SeqCst) {
            // SAFETY: `fds` is a valid array of two pollfd structures for the whole call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("waiting for clients", e));
            }
            if fds[0].revents == 0 {
                continue;
            }
            let stream = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "nbd accept failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            threads.retain(|t| !t.is_finished());
            if clients.lock().unwrap_or_else(|e| e.into_inner()).len() >= self.max_clients {
                tracing::debug!("nbd: too many clients, connection refused");
                continue;
            }
            let id = *next_id;
            *next_id += 1;
            match self.spawn_client(id, stream, clients) {
                Ok(t) => threads.push(t),
                Err(e) => tracing::warn!(error = %e, "nbd: could not start a client thread"),
            }
        }
        Ok(())
    }

    fn spawn_client(
        &self,
        id: u64,
        stream: Stream,
        clients: &Clients,
    ) -> io::Result<JoinHandle<()>> {
        let reg = stream.try_clone()?;
        clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, reg);
        let export = self.export.clone();
        let registry = clients.clone();
        let timeout = self.handshake_timeout;
        let spawned = std::thread::Builder::new()
            .name(format!("nbd-client-{id}"))
            .spawn(move || {
                if let Err(e) = client(&export, stream, timeout) {
                    tracing::debug!(client = id, error = %e, "nbd client ended");
                }
                registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        if spawned.is_err() {
            clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        spawned
    }
}

/// One client's life: the handshake under a timeout, then requests without one.
fn client(export: &Export, mut s: Stream, timeout: Duration) -> Result<()> {
    s.set_read_timeout(Some(timeout))
        .map_err(|e| Error::io("setting the handshake timeout", e))?;
    let Some(size) = handshake::negotiate(export, &mut s)? else {
        return Ok(());
    };
    s.set_read_timeout(None)
        .map_err(|e| Error::io("clearing the handshake timeout", e))?;
    transmit::run(export, &mut s, size)
}
