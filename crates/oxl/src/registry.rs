//! Running domains on this host, one JSON record per domain under the runtime directory
//! (`$OXEN_RUN_DIR`, default `/run/oxen`). Until `oxend` owns the domain table, this is how
//! `oxl list`, `unpause` and `destroy` find a domain's VMM process.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What `oxl list` shows about a domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    /// `r` running, `p` paused, `s` shut down (preserved).
    pub state: String,
    /// Start time, seconds since the epoch.
    pub started: u64,
}

/// The runtime directory.
pub fn dir() -> PathBuf {
    std::env::var_os("OXEN_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/oxen"))
        .join("domains")
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

/// All live domains, sorted by id; records of dead processes are removed.
pub fn list() -> Result<Vec<Record>> {
    let d = dir();
    let mut out = Vec::new();
    let entries = match fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        match serde_json::from_str::<Record>(&text) {
            Ok(r) if alive(r.pid) => out.push(r),
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    out.sort_by_key(|r| r.domid);
    Ok(out)
}

/// Finds a domain by name or id.
pub fn find(name_or_id: &str) -> Result<Record> {
    let all = list()?;
    all.iter()
        .find(|r| r.name == name_or_id || r.domid.to_string() == name_or_id)
        .cloned()
        .with_context(|| format!("domain '{name_or_id}' does not exist"))
}

/// A registered domain; the record is removed on drop.
/// Takes an exclusive `flock` on the registry's lock file; held until the file is dropped.
fn lock_dir(d: &std::path::Path) -> Result<fs::File> {
    let path = d.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("locking {}", path.display()));
    }
    Ok(f)
}

#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    /// The record as last written.
    pub record: Record,
}

impl Registration {
    /// Registers a new domain, picking the lowest free domain id (0 is the host's).
    pub fn new(name: &str, memory_mib: u64, vcpus: u32, state: &str) -> Result<Self> {
        let d = dir();
        fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        // Two `oxl create` at once must not pick the same domid: the choice and the record's
        // creation happen under an exclusive lock (released on return, or by the kernel if
        // this process dies).
        let _lock = lock_dir(&d)?;
        let existing = list()?;
        if existing.iter().any(|r| r.name == name) {
            bail!("a domain named '{name}' already exists");
        }
        let domid = (1..)
            .find(|id| existing.iter().all(|r| r.domid != *id))
            .unwrap_or(1);
        let path = d.join(format!("{name}.json"));
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_secs())
            .unwrap_or(0);
        let record = Record {
            name: name.into(),
            domid,
            pid: std::process::id(),
            memory_mib,
            vcpus,
            state: state.into(),
            started,
        };
        // create_new: two `oxl create` of the same name race here, and only one wins.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "a domain named '{name}' already exists ({})",
                    path.display()
                )
            })?;
        f.write_all(serde_json::to_string(&record)?.as_bytes())?;
        Ok(Registration { path, record })
    }

    /// Updates the state letter.
    pub fn set_state(&mut self, state: &str) {
        self.record.state = state.into();
        if let Ok(text) = serde_json::to_string(&self.record) {
            let tmp = self.path.with_extension("tmp");
            if fs::write(&tmp, text).is_ok() {
                let _ = fs::rename(&tmp, &self.path);
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_list_find_and_cleanup() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: tests in this module are the only users of OXEN_RUN_DIR in this process.
        unsafe { std::env::set_var("OXEN_RUN_DIR", tmp.path()) };
        {
            let mut a = Registration::new("alpha", 256, 2, "r").unwrap();
            let b = Registration::new("beta", 128, 1, "p").unwrap();
            assert_eq!((a.record.domid, b.record.domid), (1, 2));
            assert!(Registration::new("alpha", 1, 1, "r")
                .unwrap_err()
                .to_string()
                .contains("already exists"));
            a.set_state("p");
            assert_eq!(find("alpha").unwrap().state, "p");
            assert_eq!(find("2").unwrap().name, "beta");
            assert!(find("gamma")
                .unwrap_err()
                .to_string()
                .contains("does not exist"));
            // A record whose process is gone is dropped from the list.
            let mut stale = a.record.clone();
            stale.name = "ghost".into();
            stale.pid = u32::MAX / 2;
            fs::write(
                dir().join("ghost.json"),
                serde_json::to_string(&stale).unwrap(),
            )
            .unwrap();
            assert_eq!(list().unwrap().len(), 2);
            assert!(!dir().join("ghost.json").exists());
        }
        assert!(list().unwrap().is_empty());

        // Domains created at the same moment get different ids.
        let regs: Vec<Registration> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| s.spawn(move || Registration::new(&format!("d{i}"), 64, 1, "r").unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ids: Vec<u32> = regs.iter().map(|r| r.record.domid).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=16).collect::<Vec<_>>());
    }
}
