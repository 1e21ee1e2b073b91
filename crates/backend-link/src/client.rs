//! The backend's side: [`attach`] asks the VMM for one page and one port and maps the page.

use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::socket::MsgFlags;

use crate::proto::{self, Reply, Request, MAX_LINE, OP_ATTACH, PROTOCOL_VERSION, REPLY_FDS};
use crate::PAGE_SIZE;

/// How long [`attach`] waits for the VMM to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Why [`attach`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The VMM's socket could not be reached (absent: the VMM is not running).
    #[error("connecting to the VMM link {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Sending the request or receiving the reply failed.
    #[error("VMM link {path}: {what}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The VMM answered something that is not a valid reply.
    #[error("VMM link {path}: protocol error: {reason}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The VMM speaks another protocol version.
    #[error("VMM link {path}: VMM speaks protocol version {theirs}, this backend {ours}")]
    Version {
        /// The socket path.
        path: PathBuf,
        /// Our version.
        ours: u32,
        /// The version the VMM announced.
        theirs: u64,
    },
    /// The VMM refused the request.
    #[error("VMM link {path}: VMM refused gfn {gfn:#x} port {port}: {reason}")]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// The frame asked for.
        gfn: u64,
        /// The port asked for.
        port: u32,
        /// The VMM's reason.
        reason: String,
    },
    /// Mapping the page failed.
    #[error("VMM link {path}: mapping the page at offset {offset:#x}: {source}")]
    Mmap {
        /// The socket path.
        path: PathBuf,
        /// Offset in the VMM's memory file.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
}

/// An access outside the mapped page (or a misaligned word access): nothing was touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("access of {len} bytes at offset {offset:#x} is outside the {PAGE_SIZE}-byte page or misaligned")]
pub struct AccessError {
    /// Offset asked for.
    pub offset: usize,
    /// Bytes asked for.
    pub len: usize,
}

/// One guest page mapped from the VMM's memory, and one event-channel port.
pub struct RemotePage {
    ptr: NonNull<u8>,
    kick: OwnedFd,
    call: OwnedFd,
    link: UnixStream,
    path: PathBuf,
}

// SAFETY: the mapping is owned by this value and only accessed through volatile reads and
// writes of its own bounds-checked range; the descriptors are plain kernel handles. Sharing
// across threads is as safe as sharing with the guest, which writes the page concurrently.
unsafe impl Send for RemotePage {}
// SAFETY: see `Send`: every access is a volatile access the guest may race with anyway.
unsafe impl Sync for RemotePage {}

impl std::fmt::Debug for RemotePage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePage")
            .field("path", &self.path)
            .field("kick", &self.kick)
            .field("call", &self.call)
            .finish()
    }
}

/// Asks the VMM serving `path` for guest frame `gfn` and event-channel `port`, and maps that
/// one page shared and writable. Waits at most a few seconds for the VMM's answer.
pub fn attach(path: &Path, gfn: u64, port: u32) -> Result<RemotePage, LinkError> {
    let io_err = |what, source| LinkError::Io {
        path: path.to_path_buf(),
        what,
        source,
    };
    let protocol = |reason: String| LinkError::Protocol {
        path: path.to_path_buf(),
        reason,
    };
    let link = UnixStream::connect(path).map_err(|source| LinkError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    link.set_read_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| link.set_write_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| io_err("setting timeouts", e))?;
    let req = Request {
        version: PROTOCOL_VERSION,
        op: OP_ATTACH.into(),
        gfn,
        port,
    };
    (&link)
        .write_all(&proto::line(&req))
        .map_err(|e| io_err("sending the request", e))?;

    let (line, fds) = read_reply(&link).map_err(|e| match e {
        ReplyError::Io(e) => io_err("receiving the reply", e),
        ReplyError::Protocol(r) => protocol(r),
    })?;
    match proto::version_of(&line) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(theirs) => {
            return Err(LinkError::Version {
                path: path.to_path_buf(),
                ours: PROTOCOL_VERSION,
                theirs,
            })
        }
        None => {
            let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
            return Err(protocol(format!("reply without a version: {shown:?}")));
        }
    }
    let reply: Reply =
        serde_json::from_slice(&line).map_err(|e| protocol(format!("bad reply: {e}")))?;
    if !reply.ok {
        return Err(LinkError::Refused {
            path: path.to_path_buf(),
            gfn,
            port,
            reason: reply.error.unwrap_or_else(|| "no reason given".into()),
        });
    }
    let Some(offset) = reply.offset else {
        return Err(protocol("granted reply without an offset".into()));
    };
    let Ok::<[OwnedFd; REPLY_FDS], _>([mem, kick, call]) = fds.try_into() else {
        return Err(protocol(format!(
            "granted reply must carry {REPLY_FDS} descriptors"
        )));
    };
    // Never block on a descriptor the VMM controls (a full counter, a pipe nobody reads).
    // O_NONBLOCK is shared with the VMM's copies; GuestLink::bind documents it.
    for fd in [&kick, &call] {
        set_nonblocking(fd).map_err(|e| io_err("making the event channel non-blocking", e))?;
    }
    let ptr = map_page(&mem, offset).map_err(|source| LinkError::Mmap {
        path: path.to_path_buf(),
        offset,
        source,
    })?;
    link.set_read_timeout(None)
        .and_then(|()| link.set_write_timeout(None))
        .map_err(|e| io_err("clearing timeouts", e))?;
    Ok(RemotePage {
        ptr,
        kick,
        call,
        link,
        path: path.to_path_buf(),
    })
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

enum ReplyError {
    Io(io::Error),
    Protocol(String),
}

/// Reads the reply line and the descriptors that came with its first bytes.
fn read_reply(link: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), ReplyError> {
    let mut buf = vec![0u8; MAX_LINE];
    let (mut got, fds) = proto::recv_with_fds(link, &mut buf).map_err(ReplyError::Io)?;
    loop {
        if got == 0 {
            return Err(ReplyError::Protocol(
                "VMM closed the link without a reply".into(),
            ));
        }
        if let Some(end) = buf[..got].iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return Ok((buf, fds));
        }
        if got == MAX_LINE {
            return Err(ReplyError::Protocol(format!(
                "reply line longer than {MAX_LINE} bytes"
            )));
        }
        let n = match (&*link).read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ReplyError::Protocol(
                    "VMM closed the link in the middle of its reply".into(),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(ReplyError::Io(e)),
        };
        got += n;
    }
}

/// Maps the page at `offset` of `mem` after checking the file holds it and cannot shrink
/// (touching a mapping past the end of a file raises SIGBUS: a VMM could kill us).
fn map_page(mem: &OwnedFd, offset: u64) -> io::Result<NonNull<u8>> {
    if !offset.is_multiple_of(PAGE_SIZE as u64) {
        return Err(io::Error::other("offset is not page aligned"));
    }
    let sealed = proto::sealed_against_shrinking(mem.as_fd()).unwrap_or(false);
    if !sealed {
        return Err(io::Error::other(
            "the VMM's memory file is not sealed against shrinking",
        ));
    }
    let size = nix::sys::stat::fstat(mem.as_fd())?.st_size;
    let end = offset.checked_add(PAGE_SIZE as u64);
    if end.is_none_or(|end| u64::try_from(size).map_or(true, |s| s < end)) {
        return Err(io::Error::other(format!(
            "the VMM's memory file ({size} bytes) does not hold the page"
        )));
    }
    let off = i64::try_from(offset).map_err(|_| io::Error::other("offset out of range"))?;
    let len = NonZeroUsize::new(PAGE_SIZE).ok_or_else(|| io::Error::other("page size"))?;
    // SAFETY: a fresh shared mapping at an address of the kernel's choice, so no existing
    // memory is replaced; the file holds the whole page (checked above). The mapping is
    // owned by the returned pointer's RemotePage and unmapped once, on drop.
    let ptr = unsafe {
        mman::mmap(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            mem,
            off,
        )
    }?;
    Ok(ptr.cast())
}

impl RemotePage {
    fn at(&self, offset: usize, len: usize, align: usize) -> Result<*mut u8, AccessError> {
        let err = AccessError { offset, len };
        let end = offset.checked_add(len).ok_or(err)?;
        if end > PAGE_SIZE || !offset.is_multiple_of(align) {
            return Err(err);
        }
        // SAFETY: offset < PAGE_SIZE (checked), so the pointer stays inside the mapping.
        Ok(unsafe { self.ptr.as_ptr().add(offset) })
    }

    /// Reads the little-endian 32-bit word at `offset` (4-byte aligned) in one access.
    pub fn read_u32(&self, offset: usize) -> Result<u32, AccessError> {
        let p = self.at(offset, 4, 4)?.cast::<u32>();
        // SAFETY: `p` is aligned and inside the mapped page (checked by `at`); volatile
        // because the guest changes the page behind our back.
        Ok(u32::from_le(unsafe { p.read_volatile() }))
    }

    /// Writes the little-endian 32-bit word at `offset` (4-byte aligned) in one access.
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<(), AccessError> {
        let p = self.at(offset, 4, 4)?.cast::<u32>();
        // SAFETY: `p` is aligned and inside the mapped, writable page (checked by `at`).
        unsafe { p.write_volatile(value.to_le()) };
        Ok(())
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the page.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<(), AccessError> {
        let p = self.at(offset, buf.len(), 1)?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: offset + buf.len() <= PAGE_SIZE (checked by `at`), so p + i is in the page.
            *b = unsafe { p.add(i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `data` into the page starting at `offset`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), AccessError> {
        let p = self.at(offset, data.len(), 1)?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: offset + data.len() <= PAGE_SIZE (checked by `at`), so p + i is in the
            // writable page.
            unsafe { p.add(i).write_volatile(*b) };
        }
        Ok(())
    }

    /// Raises the event-channel port in the guest (writes the `call` eventfd). Never blocks:
    /// if the counter is full, the guest has notifications pending anyway.
    pub fn notify(&self) -> io::Result<()> {
        match nix::unistd::write(&self.call, &1u64.to_ne_bytes()) {
            Ok(8) | Err(nix::errno::Errno::EAGAIN) => Ok(()),
            Ok(_) => Err(io::Error::other("short write to the call eventfd")),
            Err(e) => Err(e.into()),
        }
    }

    /// The `kick` eventfd: readable when the guest has sent on the port.
    pub fn kick_fd(&self) -> RawFd {
        self.kick.as_raw_fd()
    }

    /// Consumes pending guest kicks without blocking; returns how many there were.
    pub fn ack(&self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        match nix::unistd::read(&self.kick, &mut b) {
            Ok(8) => Ok(u64::from_ne_bytes(b)),
            Err(nix::errno::Errno::EAGAIN) => Ok(0),
            Ok(_) => Err(io::Error::other("short read from the kick eventfd")),
            Err(e) => Err(e.into()),
        }
    }

    /// The connection to the VMM; it reads end-of-file when the VMM is gone (poll it).
    pub fn link_fd(&self) -> RawFd {
        self.link.as_raw_fd()
    }

    /// Whether the VMM has closed the link (exited or stopped serving), or broken the
    /// protocol by writing to it after its reply (which would otherwise keep the link
    /// readable forever): either way, stop using the page.
    pub fn vmm_gone(&self) -> bool {
        let mut b = [0u8; 1];
        match nix::sys::socket::recv(
            self.link.as_raw_fd(),
            &mut b,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(_) => true,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
            Err(_) => true,
        }
    }

    /// The socket this page came through.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RemotePage {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the start of the PAGE_SIZE mapping `attach` made; it is unmapped
        // exactly once, here, and no reference into it outlives `self`.
        if let Err(e) = unsafe { mman::munmap(self.ptr.cast(), PAGE_SIZE) } {
            tracing::error!(path = %self.path.display(), "munmap of the guest page: {e}");
        }
    }
}
