//! The toolstack's side of virtual block devices: the Xenstore nodes libxl writes for a `vbd`
//! (at create and for `xl block-attach`), removal (`block-detach`) and `block-list`.
//!
//! The back end itself runs in the domain's VMM process (`devices.rs`): it watches the
//! domain's `backend/vbd` directory and starts a `blkback::Vbd` for each device written here,
//! so a disk from xl.cfg and a hot-attached one take the same path, as in Xen.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use xenbus_backend::DeviceId;
use xenstore::client::Client;
use xlcfg::{DiskFormat, DiskSpec};

/// Oxen's own back-end nodes (besides libxl's `params`, `mode`, `dev`, ...).
pub const NODE_FORMAT: &str = "oxen-format";
/// Path of an encrypted VHD's key file.
pub const NODE_KEY: &str = "oxen-key";
/// Most queues offered.
pub const NODE_QUEUES: &str = "oxen-queues";
/// `1` to offer persistent grants.
pub const NODE_PERSISTENT: &str = "oxen-persistent-grants";
/// Largest ring offered (`max-ring-page-order`).
pub const NODE_RING_ORDER: &str = "oxen-ring-page-order";

/// Queues offered when the disk line does not say.
const DEFAULT_QUEUES: u8 = 4;

/// The device id of a disk of domain `domid`.
pub fn device_id(domid: u32, devid: u32) -> DeviceId {
    DeviceId::new("vbd", domid, devid)
}

/// The device number of `vdev`: a name like `xvdb`, or the number itself (as xl accepts).
pub fn devid(vdev: &str) -> Result<u32> {
    xlcfg::vdev_number(vdev)
        .or_else(|e| vdev.parse::<u32>().map_err(|_| anyhow::anyhow!("{e}")))
        .with_context(|| format!("'{vdev}' is not a virtual device"))
}

/// Writes the nodes of `spec` for domain `domid`; the VMM's back end picks them up.
pub fn add(c: &mut Client, domid: u32, spec: &DiskSpec) -> Result<()> {
    let id = device_id(domid, spec.devid);
    let exists = c.read(0, &id.backend_path()).is_ok();
    if exists {
        bail!(
            "domain {domid} already has a disk {} ({})",
            spec.vdev,
            spec.devid
        );
    }
    if !spec.target.exists() {
        bail!("disk target {} does not exist", spec.target.display());
    }
    let format = match spec.format {
        DiskFormat::Raw => "raw",
        DiskFormat::Vhd => "vhd",
    };
    let mut be = vec![
        ("params", spec.target.display().to_string()),
        ("type", "oxen".to_string()),
        ("mode", if spec.readonly { "r" } else { "w" }.to_string()),
        ("dev", spec.vdev.clone()),
        (
            "device-type",
            if spec.cdrom { "cdrom" } else { "disk" }.to_string(),
        ),
        ("removable", u8::from(spec.cdrom).to_string()),
        ("bootable", "1".to_string()),
        ("discard-enable", u8::from(spec.discard).to_string()),
        (NODE_FORMAT, format.to_string()),
        (
            NODE_QUEUES,
            spec.queues.unwrap_or(DEFAULT_QUEUES).to_string(),
        ),
        (
            NODE_PERSISTENT,
            u8::from(spec.persistent_grants).to_string(),
        ),
        (
            NODE_RING_ORDER,
            spec.ring_page_order
                .map_or(blkif::MAX_RING_PAGE_ORDER, u32::from)
                .to_string(),
        ),
    ];
    if let Some(k) = &spec.key {
        be.push((NODE_KEY, k.display().to_string()));
    }
    let fe = vec![
        ("virtual-device", spec.devid.to_string()),
        (
            "device-type",
            if spec.cdrom { "cdrom" } else { "disk" }.to_string(),
        ),
    ];
    xenbus_backend::create_device(c, &id, &be, &fe)
        .with_context(|| format!("writing the Xenstore nodes of disk {}", spec.vdev))
}

/// Removes disk `vdev` (a name like `xvdb` or a device number) of domain `domid` the way
/// `xl block-detach` does: asks the frontend to close, waits, then removes the nodes.
pub fn remove(c: &mut Client, domid: u32, vdev: &str, force: bool) -> Result<()> {
    let id = device_id(domid, devid(vdev)?);
    if c.read(0, &id.backend_path()).is_err() {
        bail!("domain {domid} has no disk {vdev}");
    }
    if force {
        xenbus_backend::force_remove(c, &id)?;
        return Ok(());
    }
    let out = xenbus_backend::remove_device(c, &id, Duration::from_secs(10))?;
    if !out.frontend_closed {
        eprintln!("oxl: the guest did not release disk {vdev} within 10 s; it was removed anyway");
    }
    Ok(())
}

/// One row of `block-list`.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    /// Device number.
    pub vdev: u32,
    /// Device name.
    pub name: String,
    /// Back-end domain.
    pub backend: u32,
    /// Frontend state.
    pub state: u32,
    /// Event channel the frontend chose.
    pub evtchn: i64,
    /// First ring reference.
    pub ring_ref: i64,
    /// Back-end path.
    pub be_path: String,
    /// Image path.
    pub params: String,
}

/// The disks of domain `domid`.
pub fn list(c: &mut Client, domid: u32) -> Result<Vec<Row>> {
    let dir = format!("/local/domain/{domid}/device/vbd");
    let mut ids: Vec<u32> = c
        .directory(0, &dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect();
    ids.sort_unstable();
    let mut rows = Vec::new();
    for devid in ids {
        let id = device_id(domid, devid);
        let fe = id.frontend_path();
        let be = id.backend_path();
        let mut read = |p: String| {
            c.read(0, &p)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let num = |s: String| s.trim().parse::<i64>().unwrap_or(-1);
        rows.push(Row {
            vdev: devid,
            name: read(format!("{be}/dev")),
            backend: 0,
            state: num(read(format!("{fe}/state"))).max(0) as u32,
            evtchn: num(read(format!("{fe}/event-channel"))),
            ring_ref: {
                let r = read(format!("{fe}/ring-ref"));
                if r.is_empty() {
                    num(read(format!("{fe}/ring-ref0")))
                } else {
                    num(r)
                }
            },
            params: read(format!("{be}/params")),
            be_path: be,
        });
    }
    Ok(rows)
}

/// Prints rows in xl's layout.
pub fn print(rows: &[Row]) {
    println!(
        "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} BE-path",
        "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref"
    );
    for r in rows {
        println!(
            "{:<5} {:<3} {:<6} {:<5} {:<6} {:<8} {}",
            r.vdev, r.backend, r.vdev, r.state, r.evtchn, r.ring_ref, r.be_path
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_xen_numbering() {
        let id = device_id(3, 51712);
        assert_eq!(id.backend_path(), "/local/domain/0/backend/vbd/3/51712");
        assert_eq!(id.frontend_path(), "/local/domain/3/device/vbd/51712");
        assert_eq!(devid("xvdb").unwrap(), 51728);
        assert_eq!(devid("51712").unwrap(), 51712);
        assert!(devid("floppy").is_err());
    }
}
