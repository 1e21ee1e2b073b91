//! An in-process stand-in for a VMM's guest, for tests of backends: a few pages in a real
//! memfd and a pair of real eventfds per bound port, with the guest's side of both.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{GuestLink, PAGE_SIZE};

/// Highest event-channel port the fake accepts (2-level event channels have 4096).
const MAX_PORT: u32 = 4095;

/// A fake guest: frames `first_gfn..first_gfn + pages` live in a memfd, ports `1..=4095`
/// can be bound. Its methods act as the guest (write memory, send on a port, wait to be
/// raised).
#[derive(Debug)]
pub struct FakeGuest {
    mem: File,
    first_gfn: u64,
    pages: u64,
    /// Per port: (kick, call), the guest's copies of the descriptors handed to backends.
    ports: Mutex<HashMap<u32, (EventFd, EventFd)>>,
}

impl FakeGuest {
    /// A guest whose frames `first_gfn..first_gfn + pages` backends may map.
    pub fn new(first_gfn: u64, pages: u64) -> io::Result<FakeGuest> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        // Sealable, as a VMM's memory file must be (the link server seals it).
        let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
        let fd = memfd_create(c"fake-guest", flags)?;
        let mem = File::from(fd);
        // Leave one page before the backend-visible ones so offsets are not trivially 0.
        mem.set_len((pages + 1) * PAGE_SIZE as u64)?;
        Ok(FakeGuest {
            mem,
            first_gfn,
            pages,
            ports: Mutex::new(HashMap::new()),
        })
    }

    /// Byte offset of `gfn` in the memory file, if backends may map it.
    pub fn offset(&self, gfn: u64) -> Option<u64> {
        let i = gfn.checked_sub(self.first_gfn)?;
        (i < self.pages).then(|| (i + 1) * PAGE_SIZE as u64)
    }

    /// The guest's memory file (read and write it with `FileExt::read_at`/`write_at`).
    pub fn memory(&self) -> &File {
        &self.mem
    }

    /// Reads guest bytes of frame `gfn` at `off` (as the guest).
    pub fn read(&self, gfn: u64, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.mem.read_exact_at(buf, self.addr(gfn, off, buf.len())?)
    }

    /// Writes guest bytes of frame `gfn` at `off` (as the guest).
    pub fn write(&self, gfn: u64, off: u64, data: &[u8]) -> io::Result<()> {
        self.mem
            .write_all_at(data, self.addr(gfn, off, data.len())?)
    }

    fn addr(&self, gfn: u64, off: u64, len: usize) -> io::Result<u64> {
        let base = self
            .offset(gfn)
            .ok_or_else(|| io::Error::other("no such frame"))?;
        if off
            .checked_add(len as u64)
            .is_none_or(|end| end > PAGE_SIZE as u64)
        {
            return Err(io::Error::other("access beyond the page"));
        }
        Ok(base + off)
    }

    fn with_port<T>(
        &self,
        port: u32,
        f: impl FnOnce(&(EventFd, EventFd)) -> io::Result<T>,
    ) -> io::Result<T> {
        let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let p = ports
            .get(&port)
            .ok_or_else(|| io::Error::other(format!("port {port} is not bound")))?;
        f(p)
    }

    /// Whether a backend has bound `port`.
    pub fn is_bound(&self, port: u32) -> bool {
        self.with_port(port, |_| Ok(())).is_ok()
    }

    /// Sends on `port` (as the guest): the backend's kick descriptor becomes readable.
    pub fn kick(&self, port: u32) -> io::Result<()> {
        self.with_port(port, |(kick, _)| kick.write(1))
    }

    /// Waits up to `timeout` for the backend to raise `port`; returns how many times it did
    /// (0: not within the timeout).
    pub fn wait_call(&self, port: u32, timeout: Duration) -> io::Result<u64> {
        self.with_port(port, |(_, call)| {
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: `call` owns this descriptor and outlives the borrow (this closure).
            let fd = unsafe { BorrowedFd::borrow_raw(call.as_raw_fd()) };
            let mut pfd = [PollFd::new(fd, PollFlags::POLLIN)];
            let t = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
            if nix::poll::poll(&mut pfd, t)? == 0 {
                return Ok(0);
            }
            match call.read() {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        })
    }
}

impl GuestLink for FakeGuest {
    fn page(&self, gfn: u64) -> Result<(BorrowedFd<'_>, u64), String> {
        let off = self
            .offset(gfn)
            .ok_or_else(|| "not a page backends may map".to_string())?;
        Ok((self.mem.as_fd(), off))
    }

    fn bind(&self, port: u32) -> Result<(EventFd, EventFd), String> {
        if port == 0 || port > MAX_PORT {
            return Err(format!("no event channel port {port}"));
        }
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let (kick, call) = match ports.entry(port) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let pair = EventFd::new(EFD_NONBLOCK)
                    .and_then(|k| Ok((k, EventFd::new(EFD_NONBLOCK)?)))
                    .map_err(|e| format!("eventfd: {e}"))?;
                v.insert(pair)
            }
        };
        let clone = |e: &EventFd| e.try_clone().map_err(|e| format!("eventfd: {e}"));
        Ok((clone(kick)?, clone(call)?))
    }
}
