//! The state file that lets the daemon stop and start again (an upgrade) without losing a
//! node, permission, domain record (with its ring page and event channel) or a domain's
//! watches. Saved atomically: written to a temporary file, fsynced, renamed over the old one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::Domains;
use crate::perms::Perms;
use crate::quota::Quotas;
use crate::server::Xenstore;
use crate::store::{Node, Store};
use crate::watch::Watch;

/// Version of the state file layout.
pub const FORMAT: u32 = 1;

/// Why the state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading, writing or renaming the file failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a state file this version understands.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// A value kept as text when it is UTF-8 (readable state files), as bytes otherwise.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedNode {
    path: String,
    value: Value,
    perms: Perms,
    children: Vec<String>,
    generation: u64,
}

/// Everything that survives a restart.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    format: u32,
    next_generation: u64,
    nodes: Vec<SavedNode>,
    domains: Domains,
    special: BTreeMap<String, Perms>,
    quotas: Quotas,
    #[serde(default)]
    domain_quotas: BTreeMap<u32, Quotas>,
    domain_watches: BTreeMap<u32, Vec<Watch>>,
}

impl State {
    /// Captures the state of a running store.
    pub fn capture(xs: &Xenstore) -> Self {
        let mut nodes: Vec<SavedNode> = xs
            .store
            .iter()
            .map(|(p, n)| SavedNode {
                path: p.clone(),
                value: match String::from_utf8(n.value.clone()) {
                    Ok(s) => Value::Text(s),
                    Err(e) => Value::Bytes(e.into_bytes()),
                },
                perms: n.perms.clone(),
                children: n.children.clone(),
                generation: n.generation,
            })
            .collect();
        nodes.sort_by(|a, b| a.path.cmp(&b.path));
        State {
            format: FORMAT,
            next_generation: xs.store.next_generation(),
            nodes,
            domains: xs.domains.clone(),
            special: xs.special.clone(),
            quotas: xs.quotas.clone(),
            domain_quotas: xs.domain_quotas.clone(),
            domain_watches: xs.domain_watches(),
        }
    }

    /// Rebuilds a store from saved state; domains' watches come back when their rings
    /// reconnect.
    pub fn restore(self, path: &Path) -> Result<Xenstore, PersistError> {
        let corrupt = |reason: String| PersistError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if self.format != FORMAT {
            return Err(corrupt(format!("unknown format {}", self.format)));
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for n in self.nodes {
            crate::path::validate(&n.path)
                .map_err(|_| corrupt(format!("bad path {:?}", n.path)))?;
            let value = match n.value {
                Value::Text(s) => s.into_bytes(),
                Value::Bytes(b) => b,
            };
            let node = Node {
                value,
                perms: n.perms,
                children: n.children,
                generation: n.generation,
            };
            nodes.push((n.path, node));
        }
        let store = Store::from_nodes(nodes, self.next_generation);
        let mut xs = Xenstore::from_parts(store, self.domains, self.special, self.quotas);
        xs.check()
            .map_err(|_| corrupt("node tree is inconsistent".into()))?;
        xs.pending_watches = self.domain_watches.into_iter().collect();
        xs.domain_quotas = self.domain_quotas;
        xs.mark_saved();
        Ok(xs)
    }
}

/// Saves the state atomically to `path`.
pub fn save(xs: &Xenstore, path: &Path) -> Result<(), PersistError> {
    write_state(&State::capture(xs), path)
}

/// Writes a captured state atomically to `path` (may run on another thread than the one
/// serving requests: capturing is quick, writing and fsync are not).
pub fn write_state(state: &State, path: &Path) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let data = serde_json::to_vec(state).map_err(|e| io(e.into()))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&data).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Loads the state saved at `path`; `Ok(None)` if there is none yet.
pub fn load(path: &Path) -> Result<Option<Xenstore>, PersistError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: State = serde_json::from_slice(&data).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    state.restore(path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ConnKind;
    use crate::wire::{Message, MsgType};

    fn req(xs: &mut Xenstore, c: u64, ty: MsgType, p: &[u8]) -> Vec<u8> {
        xs.handle(c, &Message::new(ty, 1, 0, p.to_vec()));
        xs.take_output(c)
    }

    #[test]
    fn save_and_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        assert!(load(&file).unwrap().is_none());
        let mut xs = Xenstore::default();
        let c = xs.connect(ConnKind::Socket);
        req(&mut xs, c, MsgType::Write, b"/vm/bin\0\xff\x00\x01");
        req(&mut xs, c, MsgType::Write, b"/vm/text\0hello");
        req(&mut xs, c, MsgType::SetPerms, b"/vm/text\0n3\0r4\0");
        req(&mut xs, c, MsgType::Introduce, b"3\0-77\x005\0");
        req(&mut xs, c, MsgType::Write, b"/local/domain/3\0");
        req(&mut xs, c, MsgType::SetPerms, b"/local/domain/3\0n3\0");
        let d = xs.connect(ConnKind::Domain(3));
        req(&mut xs, d, MsgType::Watch, b"device\0tok\0");
        save(&xs, &file).unwrap();

        let mut back = load(&file).unwrap().unwrap();
        assert!(!back.unsaved_changes());
        let c = back.connect(ConnKind::Socket);
        let r = req(&mut back, c, MsgType::Read, b"/vm/bin\0");
        assert_eq!(&r[16..], b"\xff\x00\x01");
        let r = req(&mut back, c, MsgType::GetPerms, b"/vm/text\0");
        assert_eq!(&r[16..], b"n3\0r4\0");
        assert_eq!(back.domains().get(3).unwrap().gfn, -77);
        // Domain 3's watch returns with its ring connection.
        let d = back.connect(ConnKind::Domain(3));
        back.handle(
            c,
            &Message::new(MsgType::Write, 2, 0, b"/local/domain/3/device/x\0".to_vec()),
        );
        let ev = back.take_output(d);
        assert_eq!(&ev[16..], b"device/x\0tok\0");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        std::fs::write(&file, b"{not json").unwrap();
        assert!(matches!(load(&file), Err(PersistError::Corrupt { .. })));
    }
}
