//! What a frontend wrote in its directory, read in one transaction when it asks to connect.

use std::collections::BTreeMap;

use xenstore::client::{Client, ClientError};

use crate::id::DeviceId;
use crate::xs;

/// Directory levels read below the frontend's directory (`queue-0/tx-ring-ref` is level 2).
const MAX_DEPTH: usize = 2;
/// Nodes kept at most: the directory is the guest's, and a guest may fill it.
const MAX_NODES: usize = 1024;

/// A snapshot of the frontend's directory (ring references, event channels, protocol,
/// features), taken in one transaction when the frontend becomes Initialised or Connected.
/// Values are text, as xenbus writes them; names are relative (`ring-ref`, `queue-1/event-channel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendInfo {
    id: DeviceId,
    path: String,
    nodes: BTreeMap<String, String>,
}

impl FrontendInfo {
    /// A snapshot made of given nodes (for drivers' tests).
    pub fn from_nodes<'a>(
        id: DeviceId,
        nodes: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        FrontendInfo {
            path: id.frontend_path(),
            id,
            nodes: nodes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Reads the frontend's directory of device `id`.
    pub(crate) fn read(c: &mut Client, id: &DeviceId) -> Result<Self, ClientError> {
        let path = id.frontend_path();
        let nodes = c.transact(|c, tx| {
            let mut nodes = BTreeMap::new();
            collect(c, tx, &path, "", 0, &mut nodes)?;
            Ok(nodes)
        })?;
        Ok(FrontendInfo {
            id: id.clone(),
            path,
            nodes,
        })
    }

    /// The device.
    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    /// The frontend's directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A node's value, if the frontend wrote it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(String::as_str)
    }

    /// Every node read, by relative name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A node the frontend must have written; the error names it.
    pub fn read_str(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("reading {}/{name}: missing", self.path))
    }

    /// A required unsigned decimal node (`ring-ref`, `event-channel`, ...).
    pub fn read_u64(&self, name: &str) -> Result<u64, String> {
        let v = self.read_str(name)?;
        v.trim()
            .parse()
            .map_err(|_| format!("reading {}/{name}: {v:?} is not a number", self.path))
    }

    /// A required unsigned decimal node that fits 32 bits.
    pub fn read_u32(&self, name: &str) -> Result<u32, String> {
        let n = self.read_u64(name)?;
        u32::try_from(n).map_err(|_| format!("reading {}/{name}: {n} is too large", self.path))
    }

    /// An optional unsigned node, `default` when missing or not a number (Linux's
    /// `xenbus_read_unsigned`, used for `feature-*` flags).
    pub fn read_unsigned_or(&self, name: &str, default: u64) -> u64 {
        self.get(name)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// The ring ABI the frontend declared (`protocol`: `x86_64-abi`, `x86_32-abi`), if any;
    /// a frontend that writes none uses the back end's native layout.
    pub fn protocol(&self) -> Option<&str> {
        self.get("protocol")
    }
}

fn collect(
    c: &mut Client,
    tx: u32,
    dir: &str,
    prefix: &str,
    depth: usize,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ClientError> {
    let children = match c.directory(tx, dir) {
        Ok(v) => v,
        // The frontend's directory went away meanwhile: there is nothing to read.
        Err(e) if xs::is_noent(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in children {
        if out.len() >= MAX_NODES {
            tracing::debug!(dir, "frontend directory too large; the rest is ignored");
            return Ok(());
        }
        let path = format!("{dir}/{child}");
        let name = format!("{prefix}{child}");
        if let Some(v) = xs::read_opt(c, tx, &path)? {
            out.insert(name.clone(), String::from_utf8_lossy(&v).into_owned());
        }
        if depth + 1 < MAX_DEPTH {
            collect(c, tx, &path, &format!("{name}/"), depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_helpers() {
        let id = DeviceId::new("vif", 2, 0);
        let f = FrontendInfo::from_nodes(
            id,
            [
                ("tx-ring-ref", "8"),
                ("event-channel", " 12\n"),
                ("big", "4294967296"),
                ("bad", "x1"),
                ("protocol", "x86_64-abi"),
                ("queue-0/rx-ring-ref", "9"),
            ],
        );
        assert_eq!(f.read_u32("tx-ring-ref"), Ok(8));
        assert_eq!(f.read_u32("event-channel"), Ok(12));
        assert_eq!(f.read_u64("big"), Ok(1 << 32));
        assert!(f.read_u32("big").unwrap_err().contains("too large"));
        let e = f.read_u32("bad").unwrap_err();
        assert!(e.contains("/local/domain/2/device/vif/0/bad"), "{e}");
        assert!(f.read_u32("rx-ring-ref").unwrap_err().contains("missing"));
        assert_eq!(f.read_u32("queue-0/rx-ring-ref"), Ok(9));
        assert_eq!(f.read_unsigned_or("bad", 7), 7);
        assert_eq!(f.read_unsigned_or("feature-sg", 0), 0);
        assert_eq!(f.protocol(), Some("x86_64-abi"));
        assert_eq!(f.nodes().count(), 6);
    }
}
