//! `struct ifreq` helpers and the socket that interface ioctls go through.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A zeroed `ifreq` naming `name` (which the caller has checked fits).
pub(crate) fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of integers, sockaddrs and a
    // pointer); all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    req
}

/// The name in `req` (as the kernel wrote it back).
pub(crate) fn name_of(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `AF_INET` datagram socket: the handle interface ioctls (`SIOC*IF*`) need.
pub(crate) struct Sock(OwnedFd);

impl Sock {
    pub(crate) fn new() -> io::Result<Sock> {
        // SAFETY: plain socket(2) call with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Sock(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// An interface ioctl that reads or writes `req`.
    pub(crate) fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every `SIOC*IF*` request used here reads/writes one `struct ifreq`, which
        // `req` points to for the duration of the call.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, req as *mut libc::ifreq) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
