//! The wire format: one JSON line each way, descriptors by `SCM_RIGHTS` on the reply.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// Version of the link protocol; both sides refuse any other.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request or reply line accepted, newline included.
pub const MAX_LINE: usize = 1024;

/// Descriptors passed with a successful reply: memfd, kick, call.
pub(crate) const REPLY_FDS: usize = 3;

/// The only operation: map `gfn`, connect event-channel `port`.
pub(crate) const OP_ATTACH: &str = "attach";

/// A backend's request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub version: u32,
    pub op: String,
    pub gfn: u64,
    pub port: u32,
}

/// The VMM's reply.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn refused(error: impl Into<String>) -> Reply {
        Reply {
            version: PROTOCOL_VERSION,
            ok: false,
            offset: None,
            error: Some(error.into()),
        }
    }

    pub fn granted(offset: u64) -> Reply {
        Reply {
            version: PROTOCOL_VERSION,
            ok: true,
            offset: Some(offset),
            error: None,
        }
    }
}

/// Whether `fd` is sealed against shrinking: a file that can shrink under a mapping would
/// let its owner crash the process mapping it (SIGBUS on access past the new end).
pub(crate) fn sealed_against_shrinking(fd: std::os::fd::BorrowedFd<'_>) -> nix::Result<bool> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    let seals = SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS)?);
    Ok(seals.contains(SealFlag::F_SEAL_SHRINK))
}

/// Encodes a message as its JSON line.
pub(crate) fn line<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail; an empty line would be refused anyway.
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Returns the version a line announces, if it is a JSON object with a numeric `version`.
pub(crate) fn version_of(line: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Versioned {
        version: Option<u64>,
    }
    serde_json::from_slice::<Versioned>(line).ok()?.version
}

/// Sends `data` with `fds` attached (no descriptors if `fds` is empty).
pub(crate) fn send_with_fds(
    sock: &UnixStream,
    data: &[u8],
    fds: &[RawFd],
) -> std::io::Result<usize> {
    let iov = [IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let n = socket::sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(n)
}

/// Receives bytes into `buf` and any descriptors sent with them (close-on-exec, owned).
pub(crate) fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; REPLY_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for fd in raw {
                // SAFETY: the kernel just installed `fd` in this process for this message;
                // nothing else refers to it, so it is ours to own and close.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        // Descriptors beyond our buffer were closed by the kernel; the ones we got are
        // dropped (closed) here too.
        return Err(std::io::Error::other(
            "more descriptors than expected (control data truncated)",
        ));
    }
    Ok((msg.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_carry_the_version() {
        let r = line(&Reply::granted(8192));
        assert_eq!(r.last(), Some(&b'\n'));
        let back: Reply = serde_json::from_slice(&r).unwrap();
        assert_eq!((back.ok, back.offset, back.error), (true, Some(8192), None));
        assert_eq!(version_of(&r), Some(u64::from(PROTOCOL_VERSION)));
        assert_eq!(version_of(b"{\"op\":\"attach\"}"), None);
        assert_eq!(version_of(b"garbage"), None);
    }

    #[test]
    fn descriptors_travel_with_the_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        send_with_fds(&a, b"hello\n", &[f.as_raw_fd(), f.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        assert_eq!(fds.len(), 2);
        send_with_fds(&a, b"x", &[]).unwrap();
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((n, fds.len()), (1, 0));
    }
}
