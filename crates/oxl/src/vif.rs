//! The toolstack's side of virtual network interfaces: the Xenstore nodes libxl writes for a
//! `vif` (at create and for `xl network-attach`), removal and `network-list`. The back end
//! (`netback`) runs in the domain's VMM process and is started by `devices.rs` when these nodes
//! appear, as for disks.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xenbus_backend::DeviceId;
use xenstore::client::Client;
use xlcfg::VifSpec;

/// Most queues offered (Oxen's node; xl's `queues=`).
pub const NODE_QUEUES: &str = "oxen-queues";
/// Queues offered when the vif line does not say.
const DEFAULT_QUEUES: u8 = 2;

/// The device id of interface `devid` of domain `domid`.
pub fn device_id(domid: u32, devid: u32) -> DeviceId {
    DeviceId::new("vif", domid, devid)
}

/// The devids in use under `/local/domain/0/backend/vif/<domid>`.
fn used(c: &mut Client, domid: u32) -> Vec<u32> {
    c.directory(0, &format!("/local/domain/0/backend/vif/{domid}"))
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect()
}

/// Writes the nodes of `spec` for domain `domid`; returns the device id used (the lowest free
/// one when the spec names none, as xl picks).
pub fn add(c: &mut Client, domid: u32, spec: &VifSpec) -> Result<u32> {
    let taken = used(c, domid);
    let devid = match spec.devid {
        Some(d) if taken.contains(&d) => bail!("domain {domid} already has a vif with devid {d}"),
        Some(d) => d,
        None => (0..).find(|d| !taken.contains(d)).unwrap_or(0),
    };
    let id = device_id(domid, devid);
    let mac = spec.mac.to_string();
    let mut be = vec![
        ("mac", mac.clone()),
        ("bridge", spec.bridge.clone()),
        ("handle", devid.to_string()),
        ("type", "vif".to_string()),
        (
            "script",
            spec.script.clone().unwrap_or_else(|| "vif-bridge".into()),
        ),
        (
            NODE_QUEUES,
            spec.queues.unwrap_or(DEFAULT_QUEUES).to_string(),
        ),
    ];
    if let Some(v) = &spec.vifname {
        be.push(("vifname", v.clone()));
    }
    if let Some(ip) = &spec.ip {
        be.push(("ip", ip.clone()));
    }
    if let Some(r) = &spec.rate {
        // libxl's form: bytes per interval, interval in microseconds.
        be.push((
            "rate",
            format!("{},{}", r.bytes_per_interval, r.interval_us),
        ));
    }
    if let Some(m) = spec.mtu {
        be.push(("mtu", m.to_string()));
    }
    let mut fe = vec![("handle", devid.to_string()), ("mac", mac)];
    if let Some(m) = spec.mtu {
        fe.push(("mtu", m.to_string()));
    }
    xenbus_backend::create_device(c, &id, &be, &fe)
        .with_context(|| format!("writing the Xenstore nodes of vif {devid}"))?;
    Ok(devid)
}

/// Removes interface `devid` (or the one with MAC `which`) of domain `domid`.
pub fn remove(c: &mut Client, domid: u32, which: &str) -> Result<()> {
    let devid = match which.parse::<u32>() {
        Ok(d) => d,
        Err(_) => used(c, domid)
            .into_iter()
            .find(|d| {
                c.read(0, &format!("{}/mac", device_id(domid, *d).backend_path()))
                    .is_ok_and(|m| String::from_utf8_lossy(&m).eq_ignore_ascii_case(which))
            })
            .with_context(|| format!("domain {domid} has no vif '{which}' (devid or MAC)"))?,
    };
    let id = device_id(domid, devid);
    if c.read(0, &id.backend_path()).is_err() {
        bail!("domain {domid} has no vif {devid}");
    }
    let out = xenbus_backend::remove_device(c, &id, Duration::from_secs(10))?;
    if !out.frontend_closed {
        eprintln!("oxl: the guest did not release vif {devid} within 10 s; it was removed anyway");
    }
    Ok(())
}

/// One row of `network-list`.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    /// Device id.
    pub idx: u32,
    /// Back-end domain.
    pub backend: u32,
    /// MAC address.
    pub mac: String,
    /// Frontend state.
    pub state: i64,
    /// Event channel (tx, or the single one).
    pub evtchn: i64,
    /// Tx ring reference.
    pub tx_ring_ref: i64,
    /// Rx ring reference.
    pub rx_ring_ref: i64,
    /// Back-end path.
    pub be_path: String,
}

/// The interfaces of domain `domid`.
pub fn list(c: &mut Client, domid: u32) -> Result<Vec<Row>> {
    let mut ids = used(c, domid);
    ids.sort_unstable();
    let mut rows = Vec::new();
    for devid in ids {
        let id = device_id(domid, devid);
        let (fe, be) = (id.frontend_path(), id.backend_path());
        let mut read = |p: String| {
            c.read(0, &p)
                .map(|v| String::from_utf8_lossy(&v).trim().to_string())
                .unwrap_or_default()
        };
        let num = |s: String| s.parse::<i64>().unwrap_or(-1);
        let first = |a: String, b: String| if a.is_empty() { b } else { a };
        rows.push(Row {
            idx: devid,
            backend: 0,
            mac: read(format!("{be}/mac")),
            state: num(read(format!("{fe}/state"))),
            evtchn: num(first(
                read(format!("{fe}/event-channel")),
                read(format!("{fe}/event-channel-tx")),
            )),
            tx_ring_ref: num(first(
                read(format!("{fe}/tx-ring-ref")),
                read(format!("{fe}/queue-0/tx-ring-ref")),
            )),
            rx_ring_ref: num(first(
                read(format!("{fe}/rx-ring-ref")),
                read(format!("{fe}/queue-0/rx-ring-ref")),
            )),
            be_path: be,
        });
    }
    Ok(rows)
}

/// Prints rows in xl's layout.
pub fn print(rows: &[Row]) {
    println!("Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path");
    for r in rows {
        println!(
            "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>8}/{:<8} {}",
            r.idx,
            r.backend,
            r.mac,
            r.idx,
            r.state,
            r.evtchn,
            r.tx_ring_ref,
            r.rx_ring_ref,
            r.be_path
        );
    }
}
