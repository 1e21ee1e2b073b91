//! Domain rings served through the VMM's backend link: on INTRODUCE (and when re-attaching
//! after a restart) oxenstored connects to `<run_dir>/xen/dom<domid>.sock` and maps the ring
//! page and event channel the domain's VMM hands over.

use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use backend_link::{AccessError, RemotePage};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use xenstore::daemon::{RingAttacher, RingPort};
use xenstore::transport::ring::{Notify, RingMemory};

/// Attaches rings through the VMM link sockets under a run directory.
#[derive(Debug)]
pub struct LinkAttacher {
    run_dir: PathBuf,
}

impl LinkAttacher {
    /// Looks for VMM sockets under `run_dir` (`<run_dir>/xen/dom<domid>.sock`).
    pub fn new(run_dir: PathBuf) -> Self {
        LinkAttacher { run_dir }
    }
}

impl RingAttacher for LinkAttacher {
    fn attach(&mut self, domid: u32, gfn: i64, evtchn: u32) -> Option<Arc<dyn RingPort>> {
        let Ok(gfn) = u64::try_from(gfn) else {
            tracing::warn!(domid, gfn, "Xenstore ring not served: negative ring frame");
            return None;
        };
        let path = backend_link::socket_path_in(&self.run_dir, domid);
        match backend_link::attach(&path, gfn, evtchn) {
            Ok(page) => match LinkedRing::new(domid, page) {
                Ok(ring) => {
                    tracing::info!(domid, gfn, evtchn, link = %path.display(), "ring attached");
                    Some(Arc::new(ring))
                }
                Err(e) => {
                    tracing::warn!(domid, "Xenstore ring not served: epoll: {e}");
                    None
                }
            },
            Err(e) => {
                // The domain stays introduced but unserved (the daemon logs that too).
                tracing::warn!(domid, "Xenstore ring not served: {e}");
                None
            }
        }
    }
}

/// A ring page and event channel reached through the VMM link. The ring code only uses
/// offsets inside `struct xenstore_domain_interface`, so access errors mean a bug here:
/// they are logged and read as zero rather than touching memory outside the page.
///
/// When the VMM goes away without a RELEASE (it crashed), the page is unmapped at once:
/// the mapping would otherwise keep the whole guest memory file alive. The domain stays
/// introduced, its ring unserved, until the toolstack releases it.
#[derive(Debug)]
struct LinkedRing {
    domid: u32,
    page: Mutex<Option<RemotePage>>,
    /// Readable when the guest kicks or the VMM closes the link: the daemon polls one fd.
    wake: Epoll,
}

impl LinkedRing {
    fn new(domid: u32, page: RemotePage) -> std::io::Result<LinkedRing> {
        let wake = Epoll::new()?;
        for fd in [page.kick_fd(), page.link_fd()] {
            wake.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, fd as u64),
            )?;
        }
        Ok(LinkedRing {
            domid,
            page: Mutex::new(Some(page)),
            wake,
        })
    }

    /// Runs `f` on the page, if it is still mapped.
    fn with<T>(&self, f: impl FnOnce(&RemotePage) -> Result<T, AccessError>) -> Option<T> {
        let page = self.page.lock().unwrap_or_else(|e| e.into_inner());
        let p = page.as_ref()?;
        f(p).map_err(
            |e| tracing::error!(domid = self.domid, link = %p.path().display(), "ring access: {e}"),
        )
        .ok()
    }
}

impl RingMemory for LinkedRing {
    fn read_u32(&self, off: usize) -> u32 {
        self.with(|p| p.read_u32(off)).unwrap_or(0)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.with(|p| p.write_u32(off, v));
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        if self.with(|p| p.read_bytes(off, buf)).is_none() {
            buf.fill(0);
        }
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.with(|p| p.write_bytes(off, data));
    }
}

impl Notify for LinkedRing {
    fn notify(&self) {
        self.with(|p| {
            if let Err(e) = p.notify() {
                tracing::warn!(domid = self.domid, "ring notify: {e}");
            }
            Ok(())
        });
    }
}

impl RingPort for LinkedRing {
    fn event_fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    fn ack_event(&self) {
        let mut page = self.page.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = page.as_ref() else {
            return;
        };
        if let Err(e) = p.ack() {
            tracing::warn!(domid = self.domid, "ring event: {e}");
        }
        if p.vmm_gone() {
            tracing::warn!(
                domid = self.domid,
                link = %p.path().display(),
                "VMM is gone: ring unmapped (the domain stays introduced until RELEASE)"
            );
            // The kick eventfd may outlive us in other processes: stop watching it first.
            for fd in [p.kick_fd(), p.link_fd()] {
                let _ = self
                    .wake
                    .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
            *page = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend_link::testing::FakeGuest;
    use backend_link::LinkServer;
    use std::time::Duration;
    use xenstore::transport::ring::{REQ_PROD, RSP_OFF};

    #[test]
    fn attacher_maps_the_ring_and_reports_missing_vmms() {
        let dir = tempfile::tempdir().unwrap();
        let guest = Arc::new(FakeGuest::new(0x100, 1).unwrap());
        let path = backend_link::socket_path_in(dir.path(), 4);
        let _server = LinkServer::start(&path, guest.clone()).unwrap();
        let mut att = LinkAttacher::new(dir.path().to_path_buf());
        assert!(att.attach(5, 0x100, 2).is_none(), "no VMM for domain 5");
        assert!(att.attach(4, -1, 2).is_none(), "negative frame");
        assert!(att.attach(4, 0x101, 2).is_none(), "frame the VMM refuses");
        let ring = att.attach(4, 0x100, 2).expect("attached");
        guest
            .write(0x100, REQ_PROD as u64, &9u32.to_le_bytes())
            .unwrap();
        assert_eq!(ring.read_u32(REQ_PROD), 9);
        ring.write_bytes(RSP_OFF, b"rsp");
        let mut b = [0u8; 3];
        guest.read(0x100, RSP_OFF as u64, &mut b).unwrap();
        assert_eq!(&b, b"rsp");
        // Out-of-page accesses read zero and write nothing.
        assert_eq!(ring.read_u32(4096), 0);
        ring.write_u32(4096, 1);
        ring.notify();
        assert_eq!(guest.wait_call(2, Duration::from_secs(5)).unwrap(), 1);
        guest.kick(2).unwrap();
        assert!(readable(ring.event_fd(), 5000), "a kick wakes the daemon");
        ring.ack_event();
        assert!(!readable(ring.event_fd(), 0), "ack consumed the kick");
        assert_eq!(guest.wait_call(2, Duration::ZERO).unwrap(), 0);
    }

    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    #[test]
    fn a_vanished_vmm_wakes_the_daemon_and_the_page_is_unmapped() {
        let dir = tempfile::tempdir().unwrap();
        let guest = Arc::new(FakeGuest::new(0x100, 1).unwrap());
        let path = backend_link::socket_path_in(dir.path(), 4);
        let server = LinkServer::start(&path, guest.clone()).unwrap();
        let ring = LinkAttacher::new(dir.path().to_path_buf())
            .attach(4, 0x100, 2)
            .expect("attached");
        guest.write(0x100, 0, &5u32.to_le_bytes()).unwrap();
        assert_eq!(ring.read_u32(0), 5);
        drop(server);
        assert!(
            readable(ring.event_fd(), 5000),
            "the VMM's exit wakes the daemon"
        );
        ring.ack_event();
        assert_eq!(ring.read_u32(0), 0, "unmapped");
        ring.write_u32(0, 9);
        let mut b = [0u8; 4];
        guest.read(0x100, 0, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 5, "no write after the VMM left");
        // Later kicks no longer wake the daemon.
        guest.kick(2).unwrap();
        assert!(!readable(ring.event_fd(), 0));
    }
}
