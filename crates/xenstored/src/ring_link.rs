//! Domain rings served through the VMM's backend link: on INTRODUCE (and when re-attaching
//! after a restart) oxenstored connects to `<run_dir>/xen/dom<domid>.sock` and maps the ring
//! page and event channel the domain's VMM hands over.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;

use backend_link::RemotePage;
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
            Ok(page) => {
                tracing::info!(domid, gfn, evtchn, link = %path.display(), "ring attached");
                Some(Arc::new(LinkedRing(page)))
            }
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
#[derive(Debug)]
struct LinkedRing(RemotePage);

impl LinkedRing {
    fn report(&self, e: backend_link::AccessError) {
        tracing::error!(link = %self.0.path().display(), "ring access: {e}");
    }
}

impl RingMemory for LinkedRing {
    fn read_u32(&self, off: usize) -> u32 {
        self.0.read_u32(off).unwrap_or_else(|e| {
            self.report(e);
            0
        })
    }
    fn write_u32(&self, off: usize, v: u32) {
        if let Err(e) = self.0.write_u32(off, v) {
            self.report(e);
        }
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        if let Err(e) = self.0.read_bytes(off, buf) {
            buf.fill(0);
            self.report(e);
        }
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        if let Err(e) = self.0.write_bytes(off, data) {
            self.report(e);
        }
    }
}

impl Notify for LinkedRing {
    fn notify(&self) {
        if let Err(e) = self.0.notify() {
            tracing::warn!(link = %self.0.path().display(), "ring notify: {e}");
        }
    }
}

impl RingPort for LinkedRing {
    fn event_fd(&self) -> RawFd {
        self.0.kick_fd()
    }
    fn ack_event(&self) {
        if let Err(e) = self.0.ack() {
            tracing::warn!(link = %self.0.path().display(), "ring event: {e}");
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
        ring.ack_event();
        assert_eq!(guest.wait_call(2, Duration::ZERO).unwrap(), 0);
    }
}
