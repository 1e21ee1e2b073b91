//! The PV device back ends of a running domain, inside its VMM process.
//!
//! The toolstack announces devices the Xen way, by writing their Xenstore nodes
//! (`vbd.rs`); this module watches the domain's `backend/vbd` directory and starts a
//! `blkback::Vbd` for each new device, and drops it once its directory is gone (after
//! `block-detach`). Live snapshots and resizes arrive on the domain's control socket
//! (`ctl.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use blkback::{Format, Vbd, VbdConfig};
use pv_host::DomainHost;
use xenstore::client::Client;

use crate::ctl::{self, Request};
use crate::{vbd, vif};
use netback::{Vif, VifConfig};

type Vbds = Arc<Mutex<BTreeMap<u32, Vbd>>>;

/// The domain's device back ends; dropping it stops them.
pub struct Devices {
    domid: u32,
    xenstore: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    vbds: Vbds,
    _ctl: ctl::Server,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

impl Devices {
    /// Starts watching domain `domid`'s devices in Xenstore (at `xenstore`).
    pub fn start(host: Arc<dyn DomainHost>, domid: u32, xenstore: PathBuf) -> Result<Devices> {
        let vbds: Vbds = Arc::default();
        let mut client = Client::connect(&xenstore)
            .with_context(|| format!("connecting to Xenstore at {}", xenstore.display()))?;
        for kind in KINDS {
            let dir = kind_dir(kind, domid);
            client
                .watch(&dir, kind)
                .with_context(|| format!("watching {dir}"))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut watcher = Watcher {
            host,
            domid,
            xenstore: xenstore.clone(),
            client,
            vbds: vbds.clone(),
            vifs: BTreeMap::new(),
            refused: BTreeSet::new(),
        };
        // Devices written before the VMM started (xl.cfg disks) start now, not on the
        // first watch event, so the guest finds them ready.
        watcher.sync_all();
        let stop_in = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("devices-{domid}"))
            .spawn(move || watcher.run(&stop_in))
            .context("starting the device watcher")?;
        let ctl_vbds = vbds.clone();
        let ctl = ctl::Server::start(domid, Arc::new(move |req| control(&ctl_vbds, req)))?;
        Ok(Devices {
            domid,
            xenstore,
            stop,
            thread: Some(thread),
            vbds,
            _ctl: ctl,
        })
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // The guest is gone: close each vbd (its threads end, its image is flushed when the
        // last handle goes) and remove the device nodes, as libxl does at destroy.
        let vbds = std::mem::take(&mut *lock(&self.vbds));
        let ids: Vec<_> = vbds.values().map(|v| v.id().clone()).collect();
        for (_, v) in vbds {
            v.close();
        }
        if let Ok(mut c) = Client::connect(&self.xenstore) {
            let mut all = ids;
            for kind in KINDS {
                let listed = c
                    .directory(0, &kind_dir(kind, self.domid))
                    .unwrap_or_default();
                all.extend(
                    listed
                        .iter()
                        .filter_map(|d| d.parse().ok())
                        .map(|devid| xenbus_backend::DeviceId::new(kind, self.domid, devid)),
                );
            }
            for id in all {
                let _ = xenbus_backend::force_remove(&mut c, &id);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The device kinds served.
const KINDS: [&str; 2] = ["vbd", "vif"];

/// Where the toolstack announces devices of `kind` for `domid`.
fn kind_dir(kind: &str, domid: u32) -> String {
    format!("/local/domain/0/backend/{kind}/{domid}")
}

struct Watcher {
    host: Arc<dyn DomainHost>,
    domid: u32,
    xenstore: PathBuf,
    client: Client,
    vbds: Vbds,
    vifs: BTreeMap<u32, Vif>,
    /// Devices whose start failed: not retried until their directory goes away.
    refused: BTreeSet<(&'static str, u32)>,
}

impl Watcher {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            match self.client.next_event(Duration::from_millis(200)) {
                Ok(Some(_)) => self.sync_all(),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("device watcher: {e}; reconnecting");
                    std::thread::sleep(Duration::from_millis(500));
                    if self.client.reconnect(Duration::from_secs(5)).is_ok() {
                        for kind in KINDS {
                            let _ = self.client.watch(&kind_dir(kind, self.domid), kind);
                        }
                    }
                }
            }
        }
    }

    fn sync_all(&mut self) {
        for kind in KINDS {
            self.sync(kind);
        }
    }

    /// Starts devices of `kind` that appeared, forgets those that went away.
    fn sync(&mut self, kind: &'static str) {
        let present: BTreeSet<u32> = self
            .client
            .directory(0, &kind_dir(kind, self.domid))
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        self.refused
            .retain(|(k, d)| *k != kind || present.contains(d));
        let running: BTreeSet<u32> = if kind == "vbd" {
            let mut vbds = lock(&self.vbds);
            vbds.retain(|devid, v| present.contains(devid) || !v.is_finished());
            vbds.keys().copied().collect()
        } else {
            self.vifs
                .retain(|devid, v| present.contains(devid) || !v.is_finished());
            self.vifs.keys().copied().collect()
        };
        for devid in present {
            if running.contains(&devid) || self.refused.contains(&(kind, devid)) {
                continue;
            }
            let started = if kind == "vbd" {
                self.start_vbd(devid)
                    .map(|v| v.map(|v| lock(&self.vbds).insert(devid, v)).is_some())
            } else {
                self.start_vif(devid)
                    .map(|v| v.map(|v| self.vifs.insert(devid, v)).is_some())
            };
            if let Err(e) = started {
                tracing::error!(domid = self.domid, devid, kind, "device not started: {e:#}");
                let id = xenbus_backend::DeviceId::new(kind, self.domid, devid);
                let _ = self
                    .client
                    .write(0, &id.error_path(), format!("{e:#}").as_bytes());
                self.refused.insert((kind, devid));
            }
        }
    }

    /// Reads node `name` of device `id`'s back-end directory.
    fn node(&mut self, id: &xenbus_backend::DeviceId, name: &str) -> Option<String> {
        self.client
            .read(0, &format!("{}/{name}", id.backend_path()))
            .ok()
            .map(|v| String::from_utf8_lossy(&v).trim().to_string())
    }

    /// Starts interface `devid` if its nodes are complete and it is online.
    fn start_vif(&mut self, devid: u32) -> Result<Option<Vif>> {
        let id = vif::device_id(self.domid, devid);
        let (Some(mac), Some(online)) = (self.node(&id, "mac"), self.node(&id, "online")) else {
            return Ok(None);
        };
        if online != "1" {
            return Ok(None);
        }
        let mac = parse_mac(&mac)?;
        let mut cfg = VifConfig::new(mac);
        cfg.bridge = self.node(&id, "bridge").filter(|b| !b.is_empty());
        cfg.vifname = self.node(&id, "vifname").filter(|b| !b.is_empty());
        cfg.script = match self.node(&id, "script").as_deref() {
            // Xen's default script only joins the bridge, which Oxen does itself.
            None | Some("") | Some("vif-bridge") => None,
            Some(s) if s.starts_with('/') => Some(PathBuf::from(s)),
            Some(s) => bail!("hotplug script '{s}' must be an absolute path (or vif-bridge)"),
        };
        cfg.rate = match self.node(&id, "rate") {
            Some(r) if !r.is_empty() => {
                let (b, us) = r
                    .split_once(',')
                    .and_then(|(b, us)| Some((b.parse().ok()?, us.parse().ok()?)))
                    .ok_or_else(|| anyhow!("bad rate node '{r}' (bytes,microseconds)"))?;
                Some((b, us))
            }
            _ => None,
        };
        cfg.mtu = self.node(&id, "mtu").and_then(|m| m.parse().ok());
        cfg.max_queues = self
            .node(&id, vif::NODE_QUEUES)
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        tracing::info!(domid = self.domid, devid, "starting vif");
        Ok(Some(Vif::start(
            self.host.clone(),
            &self.xenstore,
            id,
            cfg,
        )?))
    }

    /// Starts device `devid` if its nodes are complete and it is online.
    fn start_vbd(&mut self, devid: u32) -> Result<Option<Vbd>> {
        let id = vbd::device_id(self.domid, devid);
        let mut read = |name: &str| self.node(&id, name);
        // The toolstack writes everything in one transaction; a half-written directory is
        // one being removed.
        let (Some(params), Some(online)) = (read("params"), read("online")) else {
            return Ok(None);
        };
        if online != "1" {
            return Ok(None);
        }
        let format_name = read(vbd::NODE_FORMAT).unwrap_or_else(|| "raw".into());
        let format = Format::parse(&format_name)
            .ok_or_else(|| anyhow!("unknown disk format '{format_name}'"))?;
        let read_only = match read("mode").as_deref() {
            Some("r") => true,
            Some("w") | None => false,
            Some(m) => bail!("bad mode '{m}' (r or w)"),
        };
        let key = match read(vbd::NODE_KEY) {
            Some(k) if !k.is_empty() => Some(
                block::crypt::Key::from_file(Path::new(&k))
                    .with_context(|| format!("reading the key file {k}"))?,
            ),
            _ => None,
        };
        let max_queues = read(vbd::NODE_QUEUES)
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        let persistent_grants = read(vbd::NODE_PERSISTENT).as_deref() == Some("1");
        let max_ring_page_order = read(vbd::NODE_RING_ORDER)
            .and_then(|o| o.parse().ok())
            .unwrap_or(blkif::MAX_RING_PAGE_ORDER);
        let cfg = VbdConfig {
            path: PathBuf::from(params),
            format,
            read_only,
            key,
            max_queues,
            persistent_grants,
            max_ring_page_order,
        };
        tracing::info!(domid = self.domid, devid, ?cfg.path, "starting disk");
        Ok(Some(Vbd::start(
            self.host.clone(),
            &self.xenstore,
            id,
            cfg,
        )?))
    }
}

/// Parses `00:16:3e:01:02:03`.
fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("bad MAC address '{s}'"))?;
    parts
        .try_into()
        .map_err(|_| anyhow!("bad MAC address '{s}'"))
}

/// Finds the vbd named `vdev` (`xvda` or a device number).
fn with_vbd<T>(vbds: &Vbds, vdev: &str, f: impl FnOnce(&Vbd) -> Result<T>) -> Result<T> {
    let devid = vbd::devid(vdev)?;
    let vbds = lock(vbds);
    let v = vbds
        .get(&devid)
        .ok_or_else(|| anyhow!("the domain has no disk {vdev}"))?;
    f(v)
}

/// Answers a control-socket request.
fn control(vbds: &Vbds, req: Request) -> Result<String> {
    match req {
        Request::BlockSnapshot { vdev, name } => with_vbd(vbds, &vdev, |v| {
            let (snap, held) = v.snapshot(name.as_deref().map(Path::new))?;
            tracing::info!(%vdev, ?snap, held_us = held.as_micros() as u64, "live snapshot");
            Ok(format!(
                "{} (I/O held {:.1} ms; {vdev} continues on {})",
                snap.display(),
                held.as_secs_f64() * 1e3,
                v.path().display()
            ))
        }),
        Request::BlockResize { vdev, size } => with_vbd(vbds, &vdev, |v| {
            v.resize(size)?;
            Ok(format!("{vdev} is now {size} bytes"))
        }),
    }
}
