//! The vbd's side of the xenbus negotiation: what it advertises, and connecting its queues
//! to the rings the frontend wrote.

use std::sync::Arc;

use blkif::{Queue, QueueConfig};
use block::DiskImage;
use pv_host::DomainHost;
use xenbus_backend::{Driver, FrontendInfo};

use crate::disk::SwapDisk;
use crate::queue::{QueueThread, Shared};

/// The one guest ABI Oxen serves (64-bit x86 guests; Xen's `XEN_IO_PROTO_ABI_NATIVE`).
const PROTOCOL: &str = "x86_64-abi";

/// A vbd's driver for the xenbus machine.
pub(crate) struct VbdDriver {
    pub(crate) host: Arc<dyn DomainHost>,
    pub(crate) disk: Arc<SwapDisk>,
    pub(crate) cfg: QueueConfig,
    pub(crate) max_queues: u32,
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared>,
    /// Called from a queue thread whose ring broke.
    pub(crate) on_fail: Arc<dyn Fn(String) + Send + Sync>,
    pub(crate) queues: Vec<QueueThread>,
}

impl VbdDriver {
    /// What blkif advertises for this disk, as owned pairs.
    fn features(&self) -> Vec<(String, String)> {
        blkif::backend_features(&self.cfg, self.disk.as_ref())
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn start_queues(&mut self, fe: &FrontendInfo) -> Result<(), String> {
        if let Some(p) = fe.protocol() {
            if p != PROTOCOL {
                return Err(format!("unsupported protocol '{p}' (only {PROTOCOL})"));
            }
        }
        let nq = fe.read_unsigned_or("multi-queue-num-queues", 1);
        if nq == 0 || nq > u64::from(self.max_queues) {
            return Err(format!(
                "multi-queue-num-queues {nq} is not between 1 and {}",
                self.max_queues
            ));
        }
        let order = fe.read_unsigned_or("ring-page-order", 0);
        if order > u64::from(self.cfg.max_ring_page_order) {
            return Err(format!(
                "ring-page-order {order} is above the advertised {}",
                self.cfg.max_ring_page_order
            ));
        }
        let mut cfg = self.cfg;
        cfg.persistent_grants =
            self.cfg.persistent_grants && fe.read_unsigned_or("feature-persistent", 0) == 1;
        let gnttab = self.host.grant_table();
        let mem = self.host.memory();
        for q in 0..nq as usize {
            // One queue: keys at the top; several: under queue-N/ (ring-page-order stays at
            // the top either way).
            let prefix = if nq == 1 {
                String::new()
            } else {
                format!("queue-{q}/")
            };
            let key = |k: &str| {
                if k == "ring-page-order" {
                    k.to_string()
                } else {
                    format!("{prefix}{k}")
                }
            };
            let refs = blkif::ring_refs(|k| fe.get(&key(k)).map(str::to_string))
                .map_err(|e| format!("queue {q}: {e}"))?;
            let port = fe
                .read_u32(&key("event-channel"))
                .map_err(|e| format!("queue {q}: {e}"))?;
            let disk: Arc<dyn DiskImage> = self.disk.clone();
            let queue = Queue::new(gnttab.clone(), mem.clone(), disk, &refs, cfg)
                .map_err(|e| format!("queue {q}: {e}"))?;
            let port = self
                .host
                .bind_port(port)
                .map_err(|e| format!("queue {q}: event channel {port}: {e}"))?;
            let t = QueueThread::spawn(
                format!("{}-q{q}", self.name),
                q,
                queue,
                port,
                self.shared.clone(),
                self.on_fail.clone(),
            )
            .map_err(|e| format!("queue {q}: starting its thread: {e}"))?;
            self.queues.push(t);
        }
        tracing::info!(
            vbd = %self.name,
            queues = nq,
            persistent = cfg.persistent_grants,
            "connected"
        );
        Ok(())
    }
}

impl Driver for VbdDriver {
    fn advertise(&mut self) -> Vec<(String, String)> {
        let mut v = self.features();
        v.push(("multi-queue-max-queues".into(), self.max_queues.to_string()));
        v
    }

    fn connect(&mut self, frontend: &FrontendInfo) -> Result<(), String> {
        *self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let r = self.start_queues(frontend);
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    fn disconnect(&mut self) {
        // Dropping a queue thread joins it; its queue unmaps the ring and its port unbinds.
        self.queues.clear();
        self.shared.retire();
    }

    fn connected_nodes(&mut self) -> Vec<(String, String)> {
        // The size may have changed since InitWait (an online resize).
        let mut v = self.features();
        v.retain(|(k, _)| matches!(k.as_str(), "sectors" | "sector-size" | "info"));
        v
    }
}
