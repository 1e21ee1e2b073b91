//! xl's `disk = [ 'SPEC', ... ]` (xl-disk-configuration(5)) plus Oxen's own parameters.
//!
//! A spec is comma-separated positional parameters (`target,format,vdev,access`), `key=value`
//! pairs and flags; `target=` takes the rest of the spec, commas included. The deprecated xend
//! forms work too: prefixes such as `phy:`, `file:`, `tap:aio:`, `raw:`, `vhd:` before the target,
//! after which the positional order is `target,vdev[:devtype],access`.

#[cfg(test)]
mod tests;
mod vdev;

use std::path::PathBuf;

use crate::spec::{check_backend, is_param_name, set_once as set, small_number};
use crate::suggest::did_you_mean;
pub use vdev::vdev_number;

/// Image format of a disk's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// The bytes of the file or block device are the disk.
    Raw,
    /// Microsoft VHD (fixed, dynamic or differencing).
    Vhd,
}

/// One validated `disk` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Image file or block device (a relative `phy:` target gets `/dev/` in front, as in xl).
    pub target: PathBuf,
    /// Image format: given, or VHD when the target ends in `.vhd`, else raw.
    pub format: DiskFormat,
    /// Guest device name as written (`xvda`, `hdc`, `d0p1`, ...).
    pub vdev: String,
    /// The VBD interface's device number for `vdev` (xenstore device id): `xvda` is 51712.
    pub devid: u32,
    /// The guest may only read.
    pub readonly: bool,
    /// Presented as a CD-ROM (`devtype=cdrom`); always read-only.
    pub cdrom: bool,
    /// Advertise discard (TRIM) to the guest; xl's default is on.
    pub discard: bool,
    /// `direct-io-safe`: the target tolerates O_DIRECT (not on a network filesystem).
    pub direct_io_safe: bool,
    /// Key file of an encrypted image (Oxen's `key=`).
    pub key: Option<PathBuf>,
    /// Offer persistent grants to the frontend (Oxen's `persistent-grants`). Off by default:
    /// mapping a grant costs Oxen no hypercall, while persistent grants make the frontend copy
    /// every request through bounce buffers.
    pub persistent_grants: bool,
    /// Most queues the backend offers (Oxen's `queues=`, 1 to 16); `None` leaves it to the backend.
    pub queues: Option<u8>,
    /// Largest ring the backend accepts, as log2 of pages (Oxen's `ring-page-order=`, 0 to 4);
    /// `None` leaves it to the backend.
    pub ring_page_order: Option<u8>,
}

/// Most queues a disk may be given.
pub const MAX_DISK_QUEUES: u8 = 16;
/// Largest ring page order a disk may be given (16 pages).
pub const MAX_RING_PAGE_ORDER: u8 = 4;

/// Parameters and flags a spec may name, for spelling hints.
const NAMES: &[&str] = &[
    "target",
    "format",
    "vdev",
    "access",
    "devtype",
    "cdrom",
    "backend",
    "backendtype",
    "specification",
    "script",
    "direct-io-safe",
    "discard",
    "no-discard",
    "trusted",
    "untrusted",
    "key",
    "persistent-grants",
    "no-persistent-grants",
    "queues",
    "ring-page-order",
];

/// What a stray positional parameter may have been meant as: a format or a flag.
const FORMATS_AND_FLAGS: &[&str] = &[
    "raw",
    "vhd",
    "cdrom",
    "direct-io-safe",
    "discard",
    "no-discard",
    "trusted",
    "untrusted",
    "persistent-grants",
    "no-persistent-grants",
];

/// A spec being read; `Some("")` is a parameter given empty, which means its default.
#[derive(Default)]
struct Draft {
    target: Option<String>,
    format: Option<String>,
    vdev: Option<String>,
    access: Option<String>,
    cdrom: Option<bool>,
    /// A deprecated prefix was seen: the positional format is skipped (xend's order).
    had_prefix: bool,
    /// `phy:` or `backendtype=phy`: a relative target is under /dev.
    phy: bool,
    discard: Option<bool>,
    direct_io_safe: bool,
    key: Option<String>,
    persistent_grants: Option<bool>,
    queues: Option<u8>,
    ring_page_order: Option<u8>,
}

fn no_scripts(script: &str) -> String {
    format!("block scripts are not supported by Oxen (script '{script}'): give the image or device path as the target")
}

/// Splits a deprecated `word:` prefix off a positional parameter, as xl's lexer does: a known
/// word is a prefix whatever follows; an unknown one only when no letter or digit follows (so
/// `hdc:cdrom` stays a vdev with its type).
fn split_prefix(tok: &str) -> Result<Option<(&str, &str)>, String> {
    let Some((word, rest)) = tok.split_once(':') else {
        return Ok(None);
    };
    let is_word = word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !is_word {
        return Ok(None);
    }
    const KNOWN: &[&str] = &[
        "raw", "qcow", "qcow2", "vhd", "iscsi", "nbd", "enbd", "drbd", "tapdisk", "tap", "tap2",
        "aio", "ioemu", "file", "phy",
    ];
    if KNOWN.contains(&word) {
        return Ok(Some((word, rest)));
    }
    if rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Err(format!("unknown deprecated disk prefix '{word}:'"))
}

impl Draft {
    fn token(&mut self, tok: &str) -> Result<(), String> {
        if let Some((key, value)) = tok.split_once('=') {
            return self.named(key, value);
        }
        match tok {
            "cdrom" => self.cdrom = Some(true),
            "direct-io-safe" => self.direct_io_safe = true,
            "discard" => self.discard = Some(true),
            "no-discard" => self.discard = Some(false),
            "persistent-grants" => self.persistent_grants = Some(true),
            "no-persistent-grants" => self.persistent_grants = Some(false),
            // Trust only changes what a driver domain's backend assumes; Oxen has none.
            "trusted" | "untrusted" => {}
            "colo" | "no-colo" => return Err("COLO replication is not supported by Oxen".into()),
            _ => return self.positional(tok),
        }
        Ok(())
    }

    fn named(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "format" => set(&mut self.format, key, value)?,
            "vdev" => set(&mut self.vdev, key, value)?,
            "access" => set(&mut self.access, key, value)?,
            "devtype" => {
                self.cdrom = Some(match value {
                    "cdrom" => true,
                    "disk" => false,
                    _ => return Err(format!("'{value}' is not a devtype (disk, cdrom)")),
                })
            }
            "backend" => check_backend(value)?,
            "backendtype" => match value {
                "phy" => self.phy = true,
                // Oxen has one block backend; the choice does not change what the guest sees.
                "" | "tap" | "qdisk" => {}
                "standalone" => {
                    return Err("backendtype 'standalone' is not supported by Oxen".into())
                }
                _ => return Err(format!("'{value}' is not a backendtype (phy, tap, qdisk)")),
            },
            "specification" => match value {
                "" | "xen" => {}
                "virtio" => return Err("virtio disks are not supported by Oxen".into()),
                _ => return Err(format!("'{value}' is not a specification (xen)")),
            },
            "script" if value.is_empty() => {}
            "script" => return Err(no_scripts(value)),
            "key" => set(&mut self.key, key, value)?,
            "queues" => self.queues = Some(small_number(key, value, 1, MAX_DISK_QUEUES)?),
            "ring-page-order" => {
                self.ring_page_order = Some(small_number(key, value, 0, MAX_RING_PAGE_ORDER)?)
            }
            k if k.starts_with("colo-") || k == "active-disk" || k == "hidden-disk" => {
                return Err("COLO replication is not supported by Oxen".into())
            }
            _ if !is_param_name(key) => {
                return Err(format!(
                    "'{key}={value}': a target containing '=' must come last, as target=PATH"
                ))
            }
            _ => {
                return Err(format!(
                    "unknown disk parameter '{key}'{}",
                    did_you_mean(key, NAMES)
                ))
            }
        }
        Ok(())
    }

    fn positional(&mut self, tok: &str) -> Result<(), String> {
        let mut tok = tok;
        while let Some((prefix, rest)) = split_prefix(tok)? {
            self.had_prefix = true;
            match prefix {
                "raw" | "qcow" | "qcow2" | "vhd" => set(&mut self.format, "format", prefix)?,
                "iscsi" | "nbd" | "enbd" | "drbd" => return Err(no_scripts(prefix)),
                "phy" => self.phy = true,
                _ => {} // tap:, aio:, file:, ... only chose xend's backend.
            }
            tok = rest;
        }
        if self.target.is_none() {
            self.target = Some(tok.to_string());
        } else if !self.had_prefix && self.format.is_none() {
            let empty_target = self.target.as_deref() == Some("");
            let vdev_name = tok.rsplit_once(':').map_or(tok, |(v, _)| v);
            if empty_target && tok.contains(':') {
                // xend's empty cdrom: `,hdc:cdrom,r`.
                self.vdev_and_devtype(tok)?;
                self.format = Some("empty".into());
            } else if vdev_number(vdev_name).is_ok() {
                // No format is also a vdev name, so this is xend's `target,vdev,access`.
                self.had_prefix = true;
                self.vdev_and_devtype(tok)?;
            } else {
                self.format = Some(tok.to_string());
            }
        } else if self.vdev.is_none() {
            self.vdev_and_devtype(tok)?;
        } else if self.access.is_none() {
            self.access = Some(tok.to_string());
        } else {
            return Err(format!(
                "too many positional parameters at '{tok}' (target, format, vdev, access){}",
                did_you_mean(tok, FORMATS_AND_FLAGS)
            ));
        }
        Ok(())
    }

    /// A vdev with xend's optional `:cdrom` / `:disk` suffix.
    fn vdev_and_devtype(&mut self, tok: &str) -> Result<(), String> {
        let vdev = match tok.rsplit_once(':') {
            Some((vdev, "cdrom")) => {
                self.cdrom = Some(true);
                vdev
            }
            Some((vdev, "disk")) => {
                self.cdrom = Some(false);
                vdev
            }
            Some((_, other)) => return Err(format!("unknown deprecated device type '{other}'")),
            None => tok,
        };
        set(&mut self.vdev, "vdev", vdev)
    }

    fn finish(self) -> Result<DiskSpec, String> {
        let cdrom = self.cdrom.unwrap_or(false);
        let target = match self.target.as_deref() {
            Some(t) if !t.is_empty() => t,
            _ if cdrom => {
                return Err("an empty cdrom drive (no target) is not supported by Oxen".into())
            }
            _ => return Err("no target (image or device path) given".into()),
        };
        let target = match (self.phy, target.starts_with('/')) {
            (true, false) => PathBuf::from(format!("/dev/{target}")),
            _ => PathBuf::from(target),
        };
        let format = match self.format.as_deref().unwrap_or("") {
            "raw" => DiskFormat::Raw,
            "vhd" => DiskFormat::Vhd,
            "" if target
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("vhd")) =>
            {
                DiskFormat::Vhd
            }
            "" => DiskFormat::Raw,
            f @ ("qcow" | "qcow2" | "qed") => {
                return Err(format!("format '{f}' is not supported by Oxen (raw, vhd)"))
            }
            "empty" => {
                return Err("an empty cdrom drive (no target) is not supported by Oxen".into())
            }
            f => {
                return Err(format!(
                    "'{f}' is not a disk format (raw, vhd){}",
                    did_you_mean(f, FORMATS_AND_FLAGS)
                ))
            }
        };
        let vdev = match self.vdev {
            Some(v) if !v.is_empty() => v,
            _ => return Err("no vdev (guest device name such as xvda) given".into()),
        };
        let devid = vdev_number(&vdev)?;
        let readonly = match self.access.as_deref().unwrap_or("") {
            "" => cdrom,
            "r" | "ro" => true,
            "w" | "rw" if cdrom => {
                return Err("a cdrom is read-only: access must be r or ro".into())
            }
            "w" | "rw" => false,
            a => return Err(format!("'{a}' is not an access mode (r, ro, w, rw)")),
        };
        Ok(DiskSpec {
            target,
            format,
            vdev,
            devid,
            readonly,
            cdrom,
            discard: self.discard.unwrap_or(true),
            direct_io_safe: self.direct_io_safe,
            key: self.key.filter(|k| !k.is_empty()).map(PathBuf::from),
            persistent_grants: self.persistent_grants.unwrap_or(false),
            queues: self.queues,
            ring_page_order: self.ring_page_order,
        })
    }
}

/// Parses one disk spec, as written in `disk = [...]` or given to `oxl block-attach`.
///
/// The error says what is wrong without location; callers add where the spec came from.
pub fn parse_disk_spec(spec: &str) -> Result<DiskSpec, String> {
    let mut draft = Draft::default();
    let mut rest = spec;
    loop {
        let s = rest.trim_start();
        if s.is_empty() {
            break;
        }
        if let Some(t) = s.strip_prefix("target=") {
            // `target=` eats the rest of the spec; it may follow an empty positional target.
            if draft.target.as_deref().is_some_and(|t| !t.is_empty()) {
                return Err("'target' is given twice".into());
            }
            draft.target = Some(t.strip_suffix(',').unwrap_or(t).to_string());
            break;
        }
        let (tok, next) = s.split_once(',').unwrap_or((s, ""));
        draft.token(tok.trim_end())?;
        rest = next;
    }
    draft.finish()
}

/// Parses a `disk` list: every spec, then no two naming the same guest device. Errors name the
/// spec by its index in the list.
pub(crate) fn parse_disk_list(specs: &[&str]) -> Result<Vec<DiskSpec>, String> {
    let mut disks: Vec<DiskSpec> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |m: String| format!("disk {i} ('{spec}'): {m}");
        let disk = parse_disk_spec(spec).map_err(at)?;
        if let Some((j, other)) = disks
            .iter()
            .enumerate()
            .find(|(_, d)| d.devid == disk.devid)
        {
            return Err(at(if other.vdev == disk.vdev {
                format!("vdev '{}' is already used by disk {j}", disk.vdev)
            } else {
                format!(
                    "vdev '{}' is the same device as '{}' of disk {j}",
                    disk.vdev, other.vdev
                )
            }));
        }
        disks.push(disk);
    }
    Ok(disks)
}
