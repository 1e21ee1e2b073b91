//! The domain table: the VMMs' registry records plus what oxend knows about each domain (its
//! configuration, actions, restarts, preserved crashes), behind one mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use toolstack::{Action, ApiError, DomainInfo, DomainRef, ErrorCode, State};

use crate::registry::{Record, Registry};
use crate::store::{Saved, Store};
use crate::sys;
use crate::vmm::{self, Ending};

/// How oxend runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The runtime directory (`$OXEN_RUN_DIR`, default `/run/oxen`).
    pub run_dir: PathBuf,
    /// The `oxl` that runs each domain's VMM (`oxl create`).
    pub oxl: PathBuf,
    /// The group whose members may manage domains, besides root and oxend's own user.
    pub group: Option<u32>,
    /// How long `destroy` waits after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// How long `create` waits for the VMM to register the domain.
    pub start_timeout: Duration,
}

/// Who runs a domain's VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    /// A child of this oxend (its exit status is known).
    Child,
    /// A process found running (started by an earlier oxend or by `oxl create` directly).
    Adopted,
    /// None: the domain is preserved after its VMM ended.
    Gone,
}

/// One domain in the table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What `info` returns.
    pub info: DomainInfo,
    /// Created paused.
    pub paused: bool,
    /// Its VMM.
    pub vmm: Vmm,
    /// `destroy` is under way: however the VMM ends, the domain is forgotten.
    pub destroying: bool,
    /// Crashes soon after a (re)start in a row, to stop restart loops.
    pub quick_crashes: u32,
}

/// The table's contents.
#[derive(Debug, Default)]
pub struct Table {
    /// Domains by name.
    pub entries: BTreeMap<String, Entry>,
    /// Names being created or restarted (not yet in `entries`).
    pub pending: BTreeSet<String>,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    /// How it runs.
    pub cfg: Config,
    /// The VMMs' records.
    pub registry: Registry,
    /// oxend's own saved state.
    pub store: Store,
    table: Mutex<Table>,
    changed: Condvar,
}

/// Names as xl.cfg allows them; anything else found on disk is not adopted.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !n.starts_with('.')
}

/// The table's state for a registry record's state letter.
pub fn state_of(letter: &str) -> State {
    match letter {
        "p" => State::Paused,
        "s" => State::Shutdown,
        _ => State::Running,
    }
}

/// An entry for a running VMM oxend knows nothing else about.
fn stranger(r: &Record) -> Entry {
    Entry {
        info: DomainInfo {
            domid: r.domid,
            uuid: None,
            name: r.name.clone(),
            state: state_of(&r.state),
            pid: r.pid,
            config: None,
            overrides: Vec::new(),
            memory_mib: r.memory_mib,
            vcpus: r.vcpus,
            started: r.started,
            // Unknown configuration: a VMM that dies is forgotten.
            on_crash: Action::Destroy,
            on_reboot: Action::Destroy,
            restarts: 0,
        },
        paused: false,
        vmm: Vmm::Adopted,
        destroying: false,
        quick_crashes: 0,
    }
}

impl Daemon {
    /// The daemon with an empty table; [`Daemon::recover`] fills it.
    pub fn new(cfg: Config) -> Arc<Daemon> {
        Arc::new(Daemon {
            registry: Registry::new(&cfg.run_dir),
            store: Store::new(&cfg.run_dir),
            cfg,
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
        })
    }

    /// Locks the table (a panic elsewhere does not make it unusable).
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes whoever waits for the table to change.
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits until `done` holds for the table, at most `timeout`.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Table) -> bool) -> bool {
        let guard = self.lock();
        let (g, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |t| !done(t))
            .unwrap_or_else(|e| e.into_inner());
        done(&g)
    }

    /// Saves an entry's state for a later oxend.
    pub fn save(&self, e: &Entry) {
        self.store.save(&Saved {
            info: e.info.clone(),
            paused: e.paused,
            preserved: e.vmm == Vmm::Gone,
        });
    }

    /// Rebuilds the table at start-up from the saved domains and the registry: live VMMs are
    /// adopted, VMMs that died while oxend was away get their on_crash, preserved domains stay.
    pub fn recover(self: &Arc<Self>) {
        let mut ended = Vec::new();
        {
            let mut t = self.lock();
            for s in self.store.load_all() {
                let name = s.info.name.clone();
                let rec = self.registry.get(&name).filter(|r| r.pid == s.info.pid);
                let mut e = Entry {
                    info: s.info,
                    paused: s.paused,
                    vmm: Vmm::Adopted,
                    destroying: false,
                    quick_crashes: 0,
                };
                match rec {
                    Some(r) if sys::alive(r.pid) => {
                        e.info.state = state_of(&r.state);
                        if self.adopt(&mut t, e) {
                            tracing::info!(name, pid = r.pid, "found running domain again");
                        }
                    }
                    // Its record is left but its VMM is gone: it was killed while oxend was away.
                    Some(r) => {
                        tracing::warn!(
                            name,
                            pid = r.pid,
                            "the domain's VMM died while oxend was down"
                        );
                        t.entries.insert(name.clone(), e);
                        ended.push((name, r.pid));
                    }
                    None if s.preserved => {
                        e.vmm = Vmm::Gone;
                        t.entries.insert(name, e);
                    }
                    None => self.store.remove(&name),
                }
            }
            self.sync(&mut t);
        }
        for (name, pid) in ended {
            vmm::ended(self, &name, pid, Ending::Killed);
        }
    }

    /// Puts `e` in the table and supervises its VMM; false if its process is already gone.
    fn adopt(self: &Arc<Self>, t: &mut Table, e: Entry) -> bool {
        let pid = e.info.pid;
        let Ok(pidfd) = sys::pidfd_open(pid) else {
            return false;
        };
        let name = e.info.name.clone();
        self.save(&e);
        t.entries.insert(name.clone(), e);
        vmm::watch(self.clone(), name, pid, pidfd, Vmm::Adopted);
        true
    }

    /// Brings the table up to date with the registry: states the VMMs changed (unpause,
    /// preserve), and VMMs started outside oxend (adopted).
    pub fn sync(self: &Arc<Self>, t: &mut Table) {
        for e in t.entries.values_mut() {
            if e.vmm == Vmm::Gone || e.destroying {
                continue;
            }
            if let Some(r) = self
                .registry
                .get(&e.info.name)
                .filter(|r| r.pid == e.info.pid)
            {
                e.info.state = state_of(&r.state);
                e.info.domid = r.domid;
            }
        }
        let records = match self.registry.all() {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!("reading the registry: {err}");
                return;
            }
        };
        for r in records {
            if !valid_name(&r.name)
                || t.entries.contains_key(&r.name)
                || t.pending.contains(&r.name)
                || !sys::alive(r.pid)
            {
                continue;
            }
            if self.adopt(t, stranger(&r)) {
                tracing::info!(
                    name = r.name,
                    pid = r.pid,
                    "adopted a domain started outside oxend"
                );
            }
        }
    }

    /// The entry `d` names (after a sync).
    pub fn find(self: &Arc<Self>, t: &mut Table, d: &DomainRef) -> Result<String, ApiError> {
        self.sync(t);
        t.entries
            .values()
            .find(|e| d.matches(&e.info))
            .map(|e| e.info.name.clone())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoSuchDomain,
                    format!("domain '{d}' does not exist"),
                )
            })
    }

    /// Removes a domain from the table and from disk (its saved state, its VMM's stale record).
    pub fn forget(&self, t: &mut Table, name: &str) {
        if let Some(e) = t.entries.remove(name) {
            self.store.remove(name);
            self.registry.remove_stale(name, e.info.pid);
            // TODO(issue 8): remove a killed Xen domain's Xenstore nodes (/local/domain/N,
            // backends) and release it in oxenstored; the VMM does this itself when it ends
            // normally.
            tracing::info!(name, domid = e.info.domid, "domain forgotten");
        }
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_states() {
        assert!(valid_name("web-1.a_b"));
        for bad in ["", ".hidden", "a/b", "../x", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(state_of("p"), State::Paused);
        assert_eq!(state_of("s"), State::Shutdown);
        assert_eq!(state_of("r"), State::Running);
        assert_eq!(state_of("?"), State::Running);
    }
}
