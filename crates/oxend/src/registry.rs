//! The per-domain records every VMM (`oxl create`) writes under `RUN/domains/NAME.json`
//! (crates/oxl/src/registry.rs writes them), read-only here apart from removing the records of
//! VMMs that died without removing their own.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One VMM's record, the JSON `oxl create` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Domain name.
    pub name: String,
    /// Domain id.
    pub domid: u32,
    /// VMM process id.
    pub pid: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// `r` running, `p` paused, `s` shut down (preserved by the VMM itself).
    pub state: String,
    /// Start time, seconds since the epoch.
    pub started: u64,
}

/// The records' directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry under the runtime directory `run_dir`.
    pub fn new(run_dir: &Path) -> Registry {
        Registry {
            dir: run_dir.join("domains"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The record of `name`, if there is a readable one (whether its VMM lives or not).
    pub fn get(&self, name: &str) -> Option<Record> {
        let text = fs::read_to_string(self.path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every readable record, live or not.
    pub fn all(&self) -> io::Result<Vec<Record>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "json") {
                if let Some(r) = fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// Removes `name`'s record if it still names `pid`, a VMM the caller knows has ended (its
    /// pidfd said so: a zombie nobody reaped yet still answers `kill(pid, 0)`).
    pub fn remove_stale(&self, name: &str, pid: u32) {
        if self.get(name).is_some_and(|r| r.pid == pid) {
            match fs::remove_file(self.path(name)) {
                Ok(()) => tracing::debug!(name, pid, "removed the stale registry record"),
                Err(e) => tracing::warn!(name, pid, "removing the stale registry record: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(name: &str, pid: u32) -> Record {
        Record {
            name: name.into(),
            domid: 1,
            pid,
            memory_mib: 64,
            vcpus: 1,
            state: "r".into(),
            started: 5,
        }
    }

    #[test]
    fn reads_records_and_removes_only_the_pid_named() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path());
        assert!(reg.all().unwrap().is_empty(), "no directory yet");
        fs::create_dir_all(dir.path().join("domains")).unwrap();
        let me = record("me", std::process::id());
        let dead = record("dead", u32::MAX / 2);
        for r in [&me, &dead] {
            fs::write(reg.path(&r.name), serde_json::to_string(r).unwrap()).unwrap();
        }
        fs::write(reg.path("junk"), "{").unwrap();
        fs::write(dir.path().join("domains/.lock"), "").unwrap();
        let mut all = reg.all().unwrap();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(all, vec![dead.clone(), me.clone()]);
        assert_eq!(reg.get("me"), Some(me.clone()));
        reg.remove_stale("dead", 7);
        assert_eq!(reg.all().unwrap().len(), 2, "not the pid named");
        reg.remove_stale("dead", dead.pid);
        assert_eq!(reg.get("dead"), None);
    }
}
