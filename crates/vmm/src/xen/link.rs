//! Backends in other processes (Xenstore) reach the domain through a [`backend_link`]
//! socket: the VMM offers exactly the pages and ports the toolstack published for them.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use backend_link::GuestLink;
use vmm_sys_util::eventfd::EventFd;

use super::XenDomain;

/// What a remote backend may have: `(guest frame, guest port)` pairs.
pub(super) struct DomainLink {
    domain: Arc<XenDomain>,
    allowed: Vec<(u64, u32)>,
    /// Ports already bridged, with their `(kick, call)` eventfds: a backend that restarts
    /// (oxenstored's live restart) gets the same channel again.
    bound: Mutex<HashMap<u32, (EventFd, EventFd)>>,
}

impl DomainLink {
    pub(super) fn new(domain: Arc<XenDomain>, allowed: Vec<(u64, u32)>) -> Self {
        DomainLink {
            domain,
            allowed,
            bound: Mutex::new(HashMap::new()),
        }
    }
}

fn dup_pair(p: &(EventFd, EventFd)) -> Result<(EventFd, EventFd), String> {
    Ok((
        p.0.try_clone()
            .map_err(|e| format!("dup of kick eventfd: {e}"))?,
        p.1.try_clone()
            .map_err(|e| format!("dup of call eventfd: {e}"))?,
    ))
}

impl GuestLink for DomainLink {
    fn page(&self, gfn: u64) -> Result<(BorrowedFd<'_>, u64), String> {
        if !self.allowed.iter().any(|(g, _)| *g == gfn) {
            return Err("not a page published to backends".into());
        }
        let off = self
            .domain
            .ram
            .file_offset(gfn << 12)
            .ok_or("not guest memory")?;
        Ok((self.domain.ram.file.as_fd(), off))
    }

    fn bind(&self, port: u32) -> Result<(EventFd, EventFd), String> {
        if !self.allowed.iter().any(|(_, p)| *p == port) {
            return Err("not a port published to backends".into());
        }
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = bound.get(&port) {
            return dup_pair(p);
        }
        let pair = self
            .domain
            .backend_eventfds(port)
            .map_err(|e| format!("binding the guest port: {e}"))?;
        let out = dup_pair(&pair)?;
        bound.insert(port, pair);
        Ok(out)
    }
}

/// Raises the guest port each time the backend writes `call`, until the domain closes.
pub(super) fn forward_calls(
    call: EventFd,
    notify: Arc<dyn Fn() + Send + Sync>,
    closing: Arc<AtomicBool>,
) {
    let spawned = std::thread::Builder::new()
        .name("evtchn-call".into())
        .spawn(move || {
            let mut pfd = libc::pollfd {
                fd: call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            while !closing.load(Ordering::Acquire) {
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, 100) };
                if n > 0 && call.read().is_ok() {
                    notify();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the event-channel forwarder: {e}");
    }
}
