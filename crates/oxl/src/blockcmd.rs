//! `oxl block-attach`, `block-detach`, `block-list`, `block-snapshot`, `block-resize`.

use anyhow::{bail, Context, Result};

use crate::{ctl, registry, vbd, xendomain};

/// `block-attach DOMAIN SPEC`.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The disk, as in xl.cfg's `disk` list (e.g. `format=vhd,vdev=xvdb,access=rw,target=/d.vhd`).
    pub spec: String,
}

/// `block-detach DOMAIN VDEV`.
#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// Domain name or id.
    pub domain: String,
    /// The disk (`xvdb` or its device number).
    pub vdev: String,
    /// Remove it even if the guest does not release it.
    #[arg(long)]
    pub force: bool,
}

/// `block-list DOMAIN`.
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Domain name or id.
    pub domain: String,
    /// Print JSON.
    #[arg(short = 'l', long)]
    pub long: bool,
}

/// `block-snapshot DOMAIN VDEV [NAME]`.
#[derive(clap::Args, Debug)]
pub struct SnapshotArgs {
    /// Domain name or id.
    pub domain: String,
    /// The disk.
    pub vdev: String,
    /// The snapshot file (beside the disk when it has no directory); default
    /// `<disk>-snap-<time>.vhd`.
    pub name: Option<String>,
}

/// `block-resize DOMAIN VDEV SIZE`.
#[derive(clap::Args, Debug)]
pub struct ResizeArgs {
    /// Domain name or id.
    pub domain: String,
    /// The disk.
    pub vdev: String,
    /// New size: bytes, or with a K, M, G or T suffix (powers of 1024).
    pub size: String,
}

fn domid(domain: &str) -> Result<u32> {
    Ok(registry::find(domain)?.domid)
}

/// Attaches a disk: writes its nodes; the domain's VMM starts the back end.
pub fn attach(a: AttachArgs) -> Result<()> {
    let spec =
        xlcfg::parse_disk_spec(&a.spec).map_err(|e| anyhow::anyhow!("disk '{}': {e}", a.spec))?;
    let d = domid(&a.domain)?;
    let mut c = xendomain::connect()?;
    vbd::add(&mut c, d, &spec)
}

/// Detaches a disk.
pub fn detach(a: DetachArgs) -> Result<()> {
    let d = domid(&a.domain)?;
    let mut c = xendomain::connect()?;
    vbd::remove(&mut c, d, &a.vdev, a.force)
}

/// Lists a domain's disks.
pub fn list(a: ListArgs) -> Result<()> {
    let d = domid(&a.domain)?;
    let mut c = xendomain::connect()?;
    let rows = vbd::list(&mut c, d)?;
    if a.long {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        vbd::print(&rows);
    }
    Ok(())
}

/// Takes a live snapshot through the domain's VMM.
pub fn snapshot(a: SnapshotArgs) -> Result<()> {
    let d = domid(&a.domain)?;
    let msg = ctl::call(
        d,
        &ctl::Request::BlockSnapshot {
            vdev: a.vdev,
            name: a.name,
        },
    )?;
    println!("{msg}");
    Ok(())
}

/// Grows a disk through the domain's VMM.
pub fn resize(a: ResizeArgs) -> Result<()> {
    let size = parse_size(&a.size)?;
    let d = domid(&a.domain)?;
    let msg = ctl::call(d, &ctl::Request::BlockResize { vdev: a.vdev, size })?;
    println!("{msg}");
    Ok(())
}

/// `1048576`, `512K`, `128M`, `2G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("'{s}' is not a size (e.g. 128M, 2G)"))?;
    let Some(bytes) = n.checked_mul(1u64 << shift) else {
        bail!("size '{s}' is too large");
    };
    if bytes == 0 || !bytes.is_multiple_of(512) {
        bail!("size '{s}' must be a non-zero multiple of 512 bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128M").unwrap(), 128 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1k").unwrap(), 1024);
        assert!(parse_size("0").is_err());
        assert!(parse_size("100").is_err(), "not a sector multiple");
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
