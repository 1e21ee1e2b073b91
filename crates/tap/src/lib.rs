//! Linux tap devices as Oxen's PV network backend uses them: multi-queue taps whose frames
//! carry a 10-byte `virtio_net_hdr` (`IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`),
//! read and written without blocking.
//!
//! [`Tap::open`] creates the interface (or attaches to an existing one of that name) and is
//! its first queue; [`Tap::attach_queue`] opens one more queue of the same interface. The
//! interface lives while any queue's descriptor is open. Interface settings
//! ([`Tap::set_offload`], [`Tap::set_mtu`], [`Tap::set_up`]) act on the whole interface, through
//! any queue.
//!
//! Everything here needs `/dev/net/tun` and `CAP_NET_ADMIN`. [`packet::PacketSocket`] is a
//! raw `AF_PACKET` socket on an interface, to see and inject a tap's traffic from the host side.
#![deny(missing_docs)]

mod ioctl;
pub mod packet;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use ioctl::{ifreq_named, name_of, Sock};

/// Size of the `virtio_net_hdr` before every frame (the legacy header, without
/// `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// Longest interface name (`IFNAMSIZ` less the NUL).
pub const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;
/// `TUN_F_CSUM`: the host may hand us frames with partial checksums.
pub const TUN_F_CSUM: u32 = libc::TUN_F_CSUM;
/// `TUN_F_TSO4`: TCPv4 segmentation offload (needs `TUN_F_CSUM`).
pub const TUN_F_TSO4: u32 = libc::TUN_F_TSO4;
/// `TUN_F_TSO6`: TCPv6 segmentation offload (needs `TUN_F_CSUM`).
pub const TUN_F_TSO6: u32 = libc::TUN_F_TSO6;

const TUN_PATH: &str = "/dev/net/tun";

/// What tap operations fail with; each names the interface.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// A name Linux would refuse.
    #[error("tap name {0:?}: must be 1 to 15 bytes, without '/', ':', NUL or whitespace")]
    BadName(String),
    /// `/dev/net/tun` could not be opened (missing, or no permission).
    #[error("opening {TUN_PATH} for tap {name}: {source}")]
    Open {
        /// The interface.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An ioctl failed.
    #[error("{ioctl} on tap {name}: {source}")]
    Ioctl {
        /// The ioctl's name (`TUNSETIFF`, `SIOCSIFMTU`, ...).
        ioctl: &'static str,
        /// The interface.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One queue of a tap interface: a descriptor of `/dev/net/tun` attached to it.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

/// Checks `name` as Linux's `dev_valid_name` does.
fn check_name(name: &str) -> Result<(), TapError> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(TapError::BadName(name.to_string()));
    }
    Ok(())
}

impl Tap {
    /// Creates tap `name` (or attaches to the existing multi-queue tap of that name) and
    /// returns its first queue, non-blocking, with 10-byte virtio-net headers.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_PATH)
            .map_err(|source| TapError::Open {
                name: name.to_string(),
                source,
            })?;
        let mut req = ifreq_named(name);
        req.ifr_ifru.ifru_flags =
            (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE)
                as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is, on a tun
        // descriptor we own; the kernel writes the interface's name back into `ifr_name`.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        let mut tap = Tap {
            file,
            name: name.to_string(),
        };
        if r < 0 {
            return Err(tap.err("TUNSETIFF", io::Error::last_os_error()));
        }
        tap.name = name_of(&req);
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points to one.
        let r = unsafe { libc::ioctl(tap.file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) };
        if r < 0 {
            return Err(tap.err("TUNSETVNETHDRSZ", io::Error::last_os_error()));
        }
        Ok(tap)
    }

    /// Opens one more queue of this interface.
    pub fn attach_queue(&self) -> Result<Tap, TapError> {
        Tap::open(&self.name)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, ioctl: &'static str, source: io::Error) -> TapError {
        TapError::Ioctl {
            ioctl,
            name: self.name.clone(),
            source,
        }
    }

    /// Sets the offloads the host may use in frames it hands to us (`TUN_F_*`); frames
    /// are then segmented and checksummed by the kernel as far as these do not allow.
    pub fn set_offload(&self, flags: u32) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if r < 0 {
            return Err(self.err("TUNSETOFFLOAD", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Sets the interface's MTU.
    pub fn set_mtu(&self, mtu: u16) -> Result<(), TapError> {
        let sock = Sock::new().map_err(|e| self.err("socket(AF_INET)", e))?;
        let mut req = ifreq_named(&self.name);
        req.ifr_ifru.ifru_mtu = libc::c_int::from(mtu);
        sock.ioctl(libc::SIOCSIFMTU, &mut req)
            .map_err(|e| self.err("SIOCSIFMTU", e))
    }

    /// Brings the link up (or down).
    pub fn set_up(&self, up: bool) -> Result<(), TapError> {
        let sock = Sock::new().map_err(|e| self.err("socket(AF_INET)", e))?;
        let mut req = ifreq_named(&self.name);
        sock.ioctl(libc::SIOCGIFFLAGS, &mut req)
            .map_err(|e| self.err("SIOCGIFFLAGS", e))?;
        // SAFETY: SIOCGIFFLAGS filled the union's `ifru_flags` member.
        let mut flags = unsafe { req.ifr_ifru.ifru_flags };
        let up_flag = libc::IFF_UP as libc::c_short;
        if up {
            flags |= up_flag;
        } else {
            flags &= !up_flag;
        }
        req.ifr_ifru.ifru_flags = flags;
        sock.ioctl(libc::SIOCSIFFLAGS, &mut req)
            .map_err(|e| self.err("SIOCSIFFLAGS", e))
    }

    /// The interface's index.
    pub fn ifindex(&self) -> Result<u32, TapError> {
        let c =
            CString::new(self.name.as_str()).map_err(|_| TapError::BadName(self.name.clone()))?;
        // SAFETY: `c` is a NUL-terminated string that outlives the call.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if i == 0 {
            return Err(self.err("if_nametoindex", io::Error::last_os_error()));
        }
        Ok(i)
    }

    /// Reads one frame (its virtio-net header first) into `buf`; `None` when none is
    /// waiting. A frame longer than `buf` is truncated by the kernel.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call.
            let n =
                unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Writes one frame preceded by its virtio-net header, in one `writev`.
    pub fn write_frame(&self, hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        loop {
            // SAFETY: two iovecs over live buffers, which the kernel only reads.
            let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), 2) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_linux_does() {
        for ok in ["vif1.0", "a", "tap-0123456789a"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "tap-0123456789ab", "a/b", "a b", "a:b", ".", ".."] {
            let e = check_name(bad).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }
}
