//! The vif's side of the xenbus negotiation: what it advertises, and connecting its queues
//! to the rings netfront wrote.

use std::sync::Arc;
use std::time::Duration;

use netif::{RxQueue, TxQueue};
use pv_host::{DomainHost, EventPort};
use tap::Tap;
use vm_memory::GuestMemoryMmap;
use xen::gnttab::GrantMapping;
use xen_ring::GuestRingPages;
use xenbus_backend::{Driver, FrontendInfo};

use crate::frontend::{self, Channels, QueueRefs};
use crate::queue::{QueueParts, QueueThreads, Shared};

/// A vif's driver for the xenbus machine.
pub(crate) struct VifDriver {
    pub(crate) host: Arc<dyn DomainHost>,
    /// The tap's first queue (it keeps the interface alive between connections).
    pub(crate) tap: Arc<Tap>,
    pub(crate) mac: [u8; 6],
    pub(crate) mtu: Option<u16>,
    pub(crate) max_queues: u32,
    pub(crate) rate: Option<(u64, Duration)>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) queues: Vec<QueueThreads>,
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl VifDriver {
    fn start_queues(&mut self, fe: &FrontendInfo) -> Result<(), String> {
        let cfg = frontend::parse(fe, self.max_queues)?;
        self.tap
            .set_offload(cfg.features.tap_offloads())
            .map_err(|e| e.to_string())?;
        // Frames that reached the tap while nobody served it are stale.
        let mut scratch = vec![0u8; 65_600];
        while let Ok(Some(_)) = self.tap.read_frame(&mut scratch) {}
        let name = self.tap.name().to_string();
        for (q, refs) in cfg.queues.iter().enumerate() {
            let parts = self
                .queue_parts(q, refs, cfg.features)
                .map_err(|e| format!("queue {q}: {e}"))?;
            let t = QueueThreads::spawn(&name, q, parts, self.shared.clone())
                .map_err(|e| format!("queue {q}: starting its threads: {e}"))?;
            self.queues.push(t);
        }
        tracing::info!(vif = %name, queues = cfg.queues.len(), features = ?cfg.features, "connected");
        Ok(())
    }

    fn queue_parts(
        &self,
        q: usize,
        refs: &QueueRefs,
        features: netif::RxFeatures,
    ) -> Result<QueueParts, String> {
        let gnttab = self.host.grant_table();
        let mem = self.host.memory();
        let map = |what: &str,
                   gref: u32|
         -> Result<
            (
                GuestRingPages<GuestMemoryMmap>,
                GrantMapping<GuestMemoryMmap>,
            ),
            String,
        > {
            let m = gnttab
                .map(gref, false)
                .map_err(|e| format!("{what} {gref}: {e}"))?;
            let pages = GuestRingPages::new(mem.clone(), vec![m.gpa()])
                .map_err(|e| format!("{what} {gref}: {e}"))?;
            Ok((pages, m))
        };
        let (tx_pages, tx_map) = map("tx-ring-ref", refs.tx_ring_ref)?;
        let (rx_pages, rx_map) = map("rx-ring-ref", refs.rx_ring_ref)?;
        let tx = TxQueue::new(tx_pages, gnttab.clone()).map_err(|e| format!("tx ring: {e}"))?;
        let rx = RxQueue::new(rx_pages, gnttab.clone(), features)
            .map_err(|e| format!("rx ring: {e}"))?;
        let bind = |port: u32| -> Result<Box<dyn EventPort>, String> {
            self.host
                .bind_port(port)
                .map_err(|e| format!("event channel {port}: {e}"))
        };
        let (tx_port, rx_port) = match refs.channels {
            Channels::Shared(p) => (bind(p)?, None),
            Channels::Split { tx, rx } => (bind(tx)?, Some(bind(rx)?)),
        };
        let tap = if q == 0 {
            self.tap.clone()
        } else {
            Arc::new(self.tap.attach_queue().map_err(|e| e.to_string())?)
        };
        Ok(QueueParts {
            tx,
            rx,
            tx_port,
            rx_port,
            tap,
            maps: vec![tx_map, rx_map],
            rate: self.rate,
        })
    }
}

impl Driver for VifDriver {
    fn advertise(&mut self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-gso-tcpv6", "1"),
            ("feature-rx-copy", "1"),
            ("feature-rx-flip", "0"),
            ("feature-ipv6-csum-offload", "1"),
            ("feature-split-event-channels", "1"),
            ("feature-multicast-control", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        v.push(("multi-queue-max-queues".into(), self.max_queues.to_string()));
        v.push(("mac".into(), mac_string(&self.mac)));
        if let Some(mtu) = self.mtu {
            v.push(("mtu".into(), mtu.to_string()));
        }
        v
    }

    fn connect(&mut self, frontend: &FrontendInfo) -> Result<(), String> {
        *crate::queue::lock(&self.shared.failed) = None;
        let r = self.start_queues(frontend);
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    fn disconnect(&mut self) {
        // Dropping a queue joins its threads, unmaps its rings, unbinds its ports and closes
        // its tap queue (except the first).
        self.queues.clear();
        self.shared.retire();
    }

    fn connected_nodes(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
}
