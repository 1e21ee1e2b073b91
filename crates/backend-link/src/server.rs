//! The VMM's side: a socket thread that answers backends' attach requests through a
//! [`GuestLink`].

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use vmm_sys_util::eventfd::EventFd;

use crate::proto::{self, Reply, Request, MAX_LINE, OP_ATTACH, PROTOCOL_VERSION};
use crate::PAGE_SIZE;

/// What the VMM lets backends reach: guest pages in its memfd and event-channel ports.
pub trait GuestLink: Send + Sync {
    /// The file (memfd) and byte offset backing guest frame `gfn`; `Err(reason)` if `gfn` is
    /// not a page a backend may map.
    ///
    /// The memfd must be sealed with `F_SEAL_SHRINK` or allow the server to add that seal
    /// (created with `MFD_ALLOW_SEALING`): backends refuse a file that could shrink under
    /// their mapping, since touching a page past its end would kill them with SIGBUS.
    fn page(&self, gfn: u64) -> Result<(BorrowedFd<'_>, u64), String>;
    /// Connects guest event-channel `port` to a backend. Returns `(kick, call)`: `kick`
    /// becomes readable when the guest sends on the port; the backend writes `call` to raise
    /// the port in the guest. The backend sets `O_NONBLOCK` on both (a flag shared with
    /// the VMM's copies), so the VMM must not rely on blocking reads of `call`.
    fn bind(&self, port: u32) -> Result<(EventFd, EventFd), String>;
}

/// Backends connected at once; further connections are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a backend may take to send its request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a [`GuestLink`] on a Unix socket until dropped.
pub struct LinkServer {
    path: PathBuf,
    /// Device and inode of the socket we bound, so drop never removes a successor's socket.
    id: (u64, u64),
    /// Dropping this end wakes the thread (its end then reads end-of-file).
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LinkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkServer")
            .field("path", &self.path)
            .finish()
    }
}

impl LinkServer {
    /// Binds the socket (creating parent dirs, replacing a stale socket file) and serves
    /// requests on a thread until dropped (drop removes the socket file and closes every
    /// backend's connection).
    pub fn start(path: &Path, link: Arc<dyn GuestLink>) -> io::Result<LinkServer> {
        if let Some(dir) = path.parent() {
            // Only the owner may reach guest memory through the sockets below.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::metadata(path)?;
        let (stop, stop_rx) = UnixStream::pair()?;
        let name = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("backend-link".into())
            .spawn(move || serve(&name, listener, stop_rx, link))?;
        Ok(LinkServer {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LinkServer {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Removes a socket file nobody listens on; refuses to replace a live one or a non-socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process serves {}", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

/// One backend's connection.
struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
    since: Instant,
    /// The reply was sent; from now on only end-of-file is expected.
    attached: bool,
}

fn serve(name: &str, listener: UnixListener, stop: UnixStream, link: Arc<dyn GuestLink>) {
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let deadline = conns
            .iter()
            .filter(|c| !c.attached)
            .map(|c| c.since + REQUEST_TIMEOUT)
            .min();
        let timeout = match deadline {
            Some(d) => {
                let ms = d.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let ready: Vec<bool> = {
            let mut fds = vec![
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            ];
            fds.extend(
                conns
                    .iter()
                    .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
            );
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!(socket = name, "link server poll: {e}");
                    return;
                }
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        if ready[0] {
            return;
        }
        let mut keep: Vec<bool> = ready[2..]
            .iter()
            .zip(conns.iter_mut())
            .map(|(&r, c)| !r || service(name, c, link.as_ref()))
            .collect();
        for (k, c) in keep.iter_mut().zip(&conns) {
            if !c.attached && c.since.elapsed() >= REQUEST_TIMEOUT {
                tracing::warn!(socket = name, "backend sent no request in time: closed");
                *k = false;
            }
        }
        let mut it = keep.into_iter();
        conns.retain(|_| it.next().unwrap_or(false));
        if ready[1] {
            accept(name, &listener, &mut conns);
        }
    }
}

fn accept(name: &str, listener: &UnixListener, conns: &mut Vec<Conn>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if conns.len() >= MAX_CONNECTIONS {
                    tracing::warn!(socket = name, "too many backend connections: refused");
                    continue;
                }
                if let Err(e) = stream.set_nonblocking(true) {
                    tracing::warn!(socket = name, "backend connection: {e}");
                    continue;
                }
                conns.push(Conn {
                    stream,
                    buf: Vec::new(),
                    since: Instant::now(),
                    attached: false,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!(socket = name, "accept: {e}");
                return;
            }
        }
    }
}

/// Reads what a backend sent and answers a complete request; `false` closes the connection.
fn service(name: &str, c: &mut Conn, link: &dyn GuestLink) -> bool {
    let mut chunk = [0u8; MAX_LINE];
    loop {
        let n = match c.stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        if c.attached {
            tracing::warn!(socket = name, "backend sent data after its attach: closed");
            return false;
        }
        c.buf.extend_from_slice(&chunk[..n]);
        let Some(end) = c.buf.iter().position(|&b| b == b'\n') else {
            if c.buf.len() >= MAX_LINE {
                let why = format!("request line longer than {MAX_LINE} bytes");
                refuse(name, c, &why);
                return false;
            }
            continue;
        };
        if end + 1 != c.buf.len() {
            refuse(name, c, "data after the request line");
            return false;
        }
        let line = std::mem::take(&mut c.buf);
        // A bug in the VMM's GuestLink must not take the link service down with it.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(name, c, link, &line[..end])
        }));
        return r.unwrap_or_else(|_| {
            refuse(name, c, "internal error in the VMM");
            false
        });
    }
}

fn refuse(name: &str, c: &Conn, why: &str) {
    tracing::warn!(socket = name, "backend request refused: {why}");
    let _ = proto::send_with_fds(&c.stream, &proto::line(&Reply::refused(why)), &[]);
}

/// Checks a request line and, if it is acceptable, sends the page and port descriptors.
fn answer(name: &str, c: &mut Conn, link: &dyn GuestLink, line: &[u8]) -> bool {
    let req = match parse(line) {
        Ok(r) => r,
        Err(why) => {
            refuse(name, c, &why);
            return false;
        }
    };
    let (fd, offset) = match link.page(req.gfn) {
        Ok(p) => p,
        Err(why) => {
            refuse(name, c, &format!("gfn {:#x}: {why}", req.gfn));
            return false;
        }
    };
    if !offset.is_multiple_of(PAGE_SIZE as u64) {
        let why = format!("gfn {:#x}: offset {offset:#x} is not page aligned", req.gfn);
        refuse(name, c, &why);
        return false;
    }
    if let Err(why) = seal(fd) {
        refuse(name, c, &format!("gfn {:#x}: {why}", req.gfn));
        return false;
    }
    let (kick, call) = match link.bind(req.port) {
        Ok(p) => p,
        Err(why) => {
            refuse(name, c, &format!("port {}: {why}", req.port));
            return false;
        }
    };
    let reply = proto::line(&Reply::granted(offset));
    let fds = [fd.as_raw_fd(), kick.as_raw_fd(), call.as_raw_fd()];
    match proto::send_with_fds(&c.stream, &reply, &fds) {
        Ok(n) if n == reply.len() => {
            tracing::info!(
                socket = name,
                gfn = req.gfn,
                port = req.port,
                "backend attached"
            );
            c.attached = true;
            true
        }
        Ok(_) | Err(_) => {
            tracing::warn!(socket = name, "could not send the attach reply: closed");
            false
        }
    }
}

/// Seals the memory file against shrinking (backends insist on it; it never needs to shrink).
fn seal(fd: BorrowedFd<'_>) -> Result<(), String> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    if proto::sealed_against_shrinking(fd).unwrap_or(false) {
        return Ok(());
    }
    fcntl(fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK))
        .map(drop)
        .map_err(|e| {
            format!(
                "memory file cannot be sealed against shrinking \
                 (create the memfd with MFD_ALLOW_SEALING): {e}"
            )
        })
}

fn parse(line: &[u8]) -> Result<Request, String> {
    let bad = |e: serde_json::Error| format!("bad request: {e}");
    let v: serde_json::Value = serde_json::from_slice(line).map_err(bad)?;
    let Some(obj) = v.as_object() else {
        return Err("bad request: not a JSON object".into());
    };
    match obj.get("version").map(serde_json::Value::as_u64) {
        Some(Some(v)) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(Some(v)) => {
            return Err(format!(
                "protocol version {v} not supported (this VMM speaks version {PROTOCOL_VERSION})"
            ))
        }
        Some(None) => return Err("bad request: version is not a number".into()),
        None => {
            return Err(format!(
                "request has no version (this VMM speaks version {PROTOCOL_VERSION})"
            ))
        }
    }
    let req: Request = serde_json::from_value(v).map_err(bad)?;
    if req.op != OP_ATTACH {
        return Err(format!("unknown op {:?}", req.op));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_is_looked_up() {
        assert!(parse(br#"{"version":1,"op":"attach","gfn":5,"port":3}"#).is_ok());
        let e = parse(br#"{"version":2,"op":"attach","gfn":5,"port":3}"#).unwrap_err();
        assert!(e.contains("version 2 not supported"), "{e}");
        let e = parse(br#"{"op":"attach","gfn":5,"port":3}"#).unwrap_err();
        assert!(e.contains("no version"), "{e}");
        let e = parse(br#"{"version":1,"op":"detach","gfn":5,"port":3}"#).unwrap_err();
        assert!(e.contains("unknown op \"detach\""), "{e}");
        let e = parse(br#"{"version":1,"op":"attach","gfn":-1,"port":3}"#).unwrap_err();
        assert!(e.starts_with("bad request"), "{e}");
        let e = parse(b"\xff\x00 garbage").unwrap_err();
        assert!(e.starts_with("bad request"), "{e}");
    }
}
