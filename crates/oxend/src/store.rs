//! What oxend remembers about its domains across its own restarts, one file per domain under
//! `RUN/oxend/NAME.json`: the record with the configuration and the actions (which the VMM's
//! registry record does not carry), and whether oxend is keeping it as preserved.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toolstack::DomainInfo;

/// One domain as oxend saved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The record as last handed out.
    pub info: DomainInfo,
    /// Created paused.
    #[serde(default)]
    pub paused: bool,
    /// The VMM is gone and oxend keeps the domain (on_crash/on_reboot `preserve`).
    #[serde(default)]
    pub preserved: bool,
}

/// The directory of saved domains.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store under the runtime directory `run_dir`.
    pub fn new(run_dir: &Path) -> Store {
        Store {
            dir: run_dir.join("oxend"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Saves (replaces) a domain's file.
    pub fn save(&self, s: &Saved) {
        let write = || -> io::Result<()> {
            fs::create_dir_all(&self.dir)?;
            let text = serde_json::to_string(s).map_err(io::Error::other)?;
            let tmp = self.dir.join(format!(".{}.tmp", s.info.name));
            fs::write(&tmp, text)?;
            fs::rename(&tmp, self.path(&s.info.name))
        };
        if let Err(e) = write() {
            tracing::warn!(
                name = s.info.name,
                "saving the domain's state in {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Forgets a domain.
    pub fn remove(&self, name: &str) {
        match fs::remove_file(self.path(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(name, "removing the domain's saved state: {e}"),
        }
    }

    /// Every readable saved domain (unreadable files are logged and skipped).
    pub fn load_all(&self) -> Vec<Saved> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in entries.flatten().map(|e| e.path()) {
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Saved>(&t).map_err(|e| e.to_string()))
            {
                Ok(s) if crate::daemon::valid_name(&s.info.name) => out.push(s),
                Ok(_) => tracing::warn!("{}: not a valid domain name, skipped", p.display()),
                Err(e) => tracing::warn!("{}: {e}, skipped", p.display()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolstack::{Action, State};

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.load_all().is_empty());
        let s = Saved {
            info: DomainInfo {
                domid: 2,
                uuid: None,
                name: "web".into(),
                state: State::Crashed,
                pid: 9,
                config: Some("/c.cfg".into()),
                overrides: vec![],
                memory_mib: 64,
                vcpus: 1,
                started: 1,
                on_crash: Action::Preserve,
                on_reboot: Action::Restart,
                restarts: 1,
            },
            paused: false,
            preserved: true,
        };
        store.save(&s);
        fs::write(dir.path().join("oxend/bad.json"), "{}").unwrap();
        assert_eq!(store.load_all(), vec![s]);
        store.remove("web");
        store.remove("web");
        assert!(store.load_all().is_empty());
    }
}
