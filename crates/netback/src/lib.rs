//! Oxen's PV network backend: serves a guest's `vif` devices (Linux's xen-netfront) through a
//! Linux tap.
//!
//! [`Vif::start`] creates the tap (`vif<domid>.<devid>` unless named), sets its MTU, brings it
//! up, attaches it to the network (a hotplug script run with Xen's environment, or straight
//! to a bridge) and runs the device's xenbus back end ([`xenbus_backend`]). Once netfront has
//! written its rings, each netif queue gets a tx thread (guest → tap, woken by the tx event
//! channel) and an rx thread (tap → guest, woken by the tap and the rx event channel), over
//! one tap queue of its own ([`netif`] does the ring protocol). Only copying receive is
//! offered (`feature-rx-copy`).
#![deny(missing_docs)]

mod driver;
mod frontend;
mod hotplug;
mod queue;
mod rate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pv_host::DomainHost;
use tap::Tap;
use xenbus_backend::{Backend, BackendHandle, DeviceId};

use hotplug::Hotplug;

/// Most queues a vif offers (`multi-queue-max-queues`).
pub const MAX_QUEUES: u32 = 16;

/// What can go wrong with a vif.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// The tap could not be set up.
    #[error(transparent)]
    Tap(#[from] tap::TapError),
    /// The hotplug script (or `ip`) failed.
    #[error("vif {vif}: hotplug {what}: {why}")]
    Hotplug {
        /// The tap.
        vif: String,
        /// The command.
        what: String,
        /// Why.
        why: String,
    },
    /// Xenstore refused something.
    #[error(transparent)]
    Xenbus(#[from] xenbus_backend::Error),
}

/// How a vif is set up (from xl.cfg's `vif`).
#[derive(Debug, Clone)]
pub struct VifConfig {
    /// The guest's MAC address (also written by the toolstack as `mac`).
    pub mac: [u8; 6],
    /// Bridge the tap joins: passed to the script as `bridge`, or, without a script, joined
    /// with `ip link set TAP master BRIDGE`.
    pub bridge: Option<String>,
    /// The tap's name; `vif<domid>.<devid>` by default.
    pub vifname: Option<String>,
    /// Hotplug script, run as `SCRIPT online` once the tap exists and `SCRIPT offline`
    /// before it goes, with `XENBUS_PATH`, `vif`, `netdev` and `bridge` in its environment
    /// (e.g. the repository's `scripts/hotplug/vif-bridge`).
    pub script: Option<PathBuf>,
    /// Transmit rate limit: (bytes per interval, interval in microseconds), xl's `rate=`.
    pub rate: Option<(u64, u64)>,
    /// Most queues the frontend may use (1 to [`MAX_QUEUES`]).
    pub max_queues: u32,
    /// The tap's MTU (also advertised as `mtu`); the kernel's default (1500) if unset.
    pub mtu: Option<u16>,
}

impl VifConfig {
    /// One queue, no bridge, script, rate or MTU.
    pub fn new(mac: [u8; 6]) -> VifConfig {
        VifConfig {
            mac,
            bridge: None,
            vifname: None,
            script: None,
            rate: None,
            max_queues: 1,
            mtu: None,
        }
    }
}

/// Counters over a vif's life, summed over its queues and connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Packets the guest sent, handed to the tap.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Transmitted packets refused as malformed (answered with an error).
    pub tx_dropped: u64,
    /// Multicast-control packets answered and not forwarded.
    pub tx_control: u64,
    /// Packets the tap refused.
    pub tap_write_errors: u64,
    /// Times transmission paused for the rate limit.
    pub tx_rate_waits: u64,
    /// Frames delivered to the guest.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames for the guest dropped.
    pub rx_dropped: u64,
    /// Times a frame waited for the guest's receive buffers.
    pub rx_no_slots: u64,
    /// Frames read from the tap too large to deliver.
    pub rx_truncated: u64,
}

impl Metrics {
    pub(crate) fn add(&mut self, m: &Metrics) {
        self.tx_packets += m.tx_packets;
        self.tx_bytes += m.tx_bytes;
        self.tx_dropped += m.tx_dropped;
        self.tx_control += m.tx_control;
        self.tap_write_errors += m.tap_write_errors;
        self.tx_rate_waits += m.tx_rate_waits;
        self.rx_packets += m.rx_packets;
        self.rx_bytes += m.rx_bytes;
        self.rx_dropped += m.rx_dropped;
        self.rx_no_slots += m.rx_no_slots;
        self.rx_truncated += m.rx_truncated;
    }
}

/// A running vif.
#[derive(Debug)]
pub struct Vif {
    handle: Option<BackendHandle>,
    tap: Arc<Tap>,
    hotplug: Option<Hotplug>,
    shared: Arc<queue::Shared>,
}

impl Vif {
    /// Creates the tap and starts the back end of device `id` (kind `vif`), whose Xenstore
    /// directories the toolstack has written, on Xenstore's socket `xenstore`.
    pub fn start(
        host: Arc<dyn DomainHost>,
        xenstore: &Path,
        id: DeviceId,
        cfg: VifConfig,
    ) -> Result<Vif, Error> {
        if cfg.max_queues == 0 || cfg.max_queues > MAX_QUEUES {
            return Err(Error::Config(format!(
                "{id}: {} queues (1 to {MAX_QUEUES})",
                cfg.max_queues
            )));
        }
        let rate = match cfg.rate {
            None => None,
            Some((bytes, us)) if bytes > 0 && us > 0 => Some((bytes, Duration::from_micros(us))),
            Some((bytes, us)) => {
                return Err(Error::Config(format!(
                    "{id}: rate of {bytes} bytes per {us} us"
                )))
            }
        };
        let name = cfg
            .vifname
            .clone()
            .unwrap_or_else(|| format!("vif{}.{}", id.domid, id.devid));
        let tap = Arc::new(Tap::open(&name)?);
        if let Some(mtu) = cfg.mtu {
            tap.set_mtu(mtu)?;
        }
        tap.set_up(true)?;
        let hotplug = Hotplug::new(cfg.script, cfg.bridge, id.backend_path());
        if let Some(h) = &hotplug {
            h.run(tap.name(), true)?;
        }
        let mut vif = Vif {
            handle: None,
            tap: tap.clone(),
            hotplug,
            shared: Arc::new(queue::Shared::default()),
        };
        let driver = driver::VifDriver {
            host,
            tap,
            mac: cfg.mac,
            mtu: cfg.mtu,
            max_queues: cfg.max_queues,
            rate,
            shared: vif.shared.clone(),
            queues: Vec::new(),
        };
        // On failure, dropping `vif` runs the hotplug script's `offline`.
        let handle = Backend::spawn(xenstore, id, driver)?;
        let _ = vif.shared.closer.set(handle.node_writer());
        vif.handle = Some(handle);
        Ok(vif)
    }

    fn handle(&self) -> &BackendHandle {
        // Set in `start` before the vif is handed out; taken only in `drop`.
        self.handle.as_ref().expect("vif back end")
    }

    /// The device.
    pub fn id(&self) -> &DeviceId {
        self.handle().id()
    }

    /// The tap's name.
    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    /// Whether the frontend is connected and served.
    pub fn is_connected(&self) -> bool {
        self.handle().is_connected()
    }

    /// Whether the device is gone (removed from Xenstore or closed).
    pub fn is_finished(&self) -> bool {
        self.handle().is_finished()
    }

    /// Why a queue stopped serving, if one did (a broken ring).
    pub fn failure(&self) -> Option<String> {
        queue::lock(&self.shared.failed).clone()
    }

    /// Counters over the device's life.
    pub fn metrics(&self) -> Metrics {
        self.shared.totals()
    }

    /// Stops the device: the frontend sees the back end close, the hotplug script runs
    /// `offline` and the tap goes.
    pub fn close(self) {}
}

impl Drop for Vif {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.close();
        }
        tracing::info!(vif = self.tap.name(), metrics = ?self.metrics(), "vif closed");
        if let Some(h) = &self.hotplug {
            if let Err(e) = h.run(self.tap.name(), false) {
                tracing::warn!("{e}");
            }
        }
    }
}
