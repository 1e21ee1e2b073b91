//! Each domain's VMM process: starting it (`oxl create` with its output in the domain's log),
//! waiting for it to register, and supervising it through a pidfd until it ends, then applying
//! the domain's on_crash / on_reboot.
//!
//! One small thread per VMM waits on its pidfd: simple, and a host runs tens or hundreds of
//! domains, not thousands.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toolstack::{Action, ApiError, DomainInfo, State};
use xlcfg::DomainConfig;

use crate::daemon::{state_of, Daemon, Entry, Vmm};
use crate::sys::{self, Exit};

/// A crash this soon after a (re)start counts towards [`MAX_QUICK_CRASHES`].
const QUICK_CRASH_SECS: u64 = 10;
/// After this many quick crashes in a row, a restarting domain is kept as crashed instead.
const MAX_QUICK_CRASHES: u32 = 5;
/// How much of the log an error about a failed start quotes.
const LOG_TAIL_BYTES: u64 = 2048;

/// How a VMM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A child's exit status.
    Exit(Exit),
    /// An adopted VMM ended and left its registry record: it did not exit normally.
    Killed,
    /// An adopted VMM ended and removed its record: it exited normally (poweroff, or a reboot
    /// or crash whose action it applied itself).
    Clean,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The xl.cfg, absolute.
    pub config: PathBuf,
    /// `KEY=VALUE` overrides.
    pub overrides: Vec<String>,
    /// Start paused.
    pub paused: bool,
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0)
}

/// Reads and checks the configuration, as `oxl create` will.
pub fn load_config(launch: &Launch) -> Result<DomainConfig, ApiError> {
    let path = &launch.config;
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "the configuration path '{}' is not absolute",
            path.display()
        )));
    }
    let text = fs::read_to_string(path)
        .map_err(|e| ApiError::bad_request(format!("reading {}: {e}", path.display())))?;
    DomainConfig::load(&text, &path.display().to_string(), &launch.overrides)
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The domain's log file, where its VMM's output goes.
pub fn log_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("logs").join(format!("{name}.log"))
}

/// The end of the log from byte `from` on.
fn log_tail(path: &Path, from: u64) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(LOG_TAIL_BYTES));
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_ok() {
        let _ = f.take(LOG_TAIL_BYTES).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// Starts the VMM of `dc.name` (which the caller has reserved in `pending`) and waits until it
/// has registered the domain. The caller puts the entry in the table and watches it.
fn spawn(d: &Daemon, launch: &Launch, dc: &DomainConfig) -> Result<(Entry, OwnedFd), ApiError> {
    let name = &dc.name;
    let log = log_path(&d.cfg.run_dir, name);
    let internal = |what: &str, e: std::io::Error| ApiError::internal(format!("{what}: {e}"));
    fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))
        .map_err(|e| internal("creating the log directory", e))?;
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| internal(&format!("opening {}", log.display()), e))?;
    let from = out.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(
        out,
        "oxend: starting domain '{name}' from {} at {}",
        launch.config.display(),
        now()
    );
    let err = out
        .try_clone()
        .map_err(|e| internal("duplicating the log descriptor", e))?;

    let mut cmd = Command::new(&d.cfg.oxl);
    cmd.arg("create");
    if launch.paused {
        cmd.arg("-p");
    }
    cmd.arg(&launch.config)
        .args(&launch.overrides)
        .env("OXEN_RUN_DIR", &d.cfg.run_dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Its own process group: a terminal's Ctrl-C to oxend does not reach the domains.
        .process_group(0);
    let child = cmd
        .spawn()
        .map_err(|e| internal(&format!("starting {}", d.cfg.oxl.display()), e))?;
    let pid = child.id();
    // The pidfd is taken before anything can reap the child, so it is this very process.
    let pidfd = sys::pidfd_open(pid).map_err(|e| internal("pidfd_open on the VMM", e))?;
    tracing::info!(name, pid, "started the VMM");

    let deadline = Instant::now() + d.cfg.start_timeout;
    loop {
        if let Some(r) = d.registry.get(name).filter(|r| r.pid == pid) {
            let info = DomainInfo {
                domid: r.domid,
                uuid: dc.uuid.clone(),
                name: name.clone(),
                state: state_of(&r.state),
                pid,
                config: Some(launch.config.clone()),
                overrides: launch.overrides.clone(),
                memory_mib: r.memory_mib,
                vcpus: r.vcpus,
                started: r.started,
                on_crash: action(dc.on_crash),
                on_reboot: action(dc.on_reboot),
                restarts: 0,
            };
            let entry = Entry {
                info,
                paused: launch.paused,
                vmm: Vmm::Child,
                destroying: false,
                quick_crashes: 0,
            };
            return Ok((entry, pidfd));
        }
        let ended = sys::wait_readable(&pidfd, Some(Duration::from_millis(25)))
            .map_err(|e| internal("waiting for the VMM", e))?;
        if ended {
            let how = match sys::reap(pid) {
                Ok(Exit::Code(c)) => format!("with code {c}"),
                Ok(Exit::Signal(s)) => format!("on signal {s}"),
                Err(e) => format!("(unknown status: {e})"),
            };
            let tail = log_tail(&log, from);
            return Err(ApiError::internal(format!(
                "the VMM of '{name}' exited {how} before registering the domain; {}:\n{tail}",
                log.display()
            )));
        }
        if Instant::now() >= deadline {
            let _ = sys::pidfd_kill(&pidfd, libc::SIGKILL);
            let _ = sys::reap(pid);
            return Err(ApiError::internal(format!(
                "the VMM of '{name}' did not register the domain within {:?}; killed it (log: {})",
                d.cfg.start_timeout,
                log.display()
            )));
        }
    }
}

/// xl.cfg's action as the API names it.
pub fn action(a: xlcfg::Action) -> Action {
    match a {
        xlcfg::Action::Destroy => Action::Destroy,
        xlcfg::Action::Restart => Action::Restart,
        xlcfg::Action::Preserve => Action::Preserve,
        xlcfg::Action::CoredumpDestroy => Action::CoredumpDestroy,
        xlcfg::Action::CoredumpRestart => Action::CoredumpRestart,
    }
}

/// Starts a domain whose name the caller has put in `pending`, then (on success) moves it to
/// the table, saved and supervised. On failure the name stays pending for the caller to clear.
pub fn start(
    d: &Arc<Daemon>,
    launch: &Launch,
    dc: &DomainConfig,
    restarts: u32,
    quick_crashes: u32,
) -> Result<DomainInfo, ApiError> {
    let (mut entry, pidfd) = spawn(d, launch, dc)?;
    entry.info.restarts = restarts;
    entry.quick_crashes = quick_crashes;
    let info = entry.info.clone();
    let mut t = d.lock();
    t.pending.remove(&dc.name);
    d.save(&entry);
    t.entries.insert(dc.name.clone(), entry);
    // Watched only once in the table, so an early end finds its entry.
    watch(d.clone(), dc.name.clone(), info.pid, pidfd, Vmm::Child);
    d.notify();
    Ok(info)
}

/// Supervises a VMM: when its pidfd says it ended, works out how and calls [`ended`].
pub fn watch(d: Arc<Daemon>, name: String, pid: u32, pidfd: OwnedFd, vmm: Vmm) {
    let thread_name = format!("watch-{name}");
    let spawned = std::thread::Builder::new()
        .name(thread_name)
        .stack_size(128 << 10)
        .spawn(move || {
            if let Err(e) = sys::wait_readable(&pidfd, None) {
                tracing::error!(
                    name,
                    pid,
                    "waiting on the VMM's pidfd: {e}; it is no longer supervised"
                );
                return;
            }
            let ending = match vmm {
                Vmm::Child => match sys::reap(pid) {
                    Ok(x) => Ending::Exit(x),
                    Err(e) => {
                        tracing::warn!(name, pid, "reaping the VMM: {e}");
                        Ending::Killed
                    }
                },
                _ if d.registry.get(&name).is_some_and(|r| r.pid == pid) => Ending::Killed,
                _ => Ending::Clean,
            };
            ended(&d, &name, pid, ending);
        });
    if let Err(e) = spawned {
        tracing::error!(pid, "starting the thread that supervises the VMM: {e}");
    }
}

/// A domain's VMM `pid` ended: forget the domain, keep it, or start it again, as its actions
/// say.
pub fn ended(d: &Arc<Daemon>, name: &str, pid: u32, ending: Ending) {
    let mut t = d.lock();
    let Some(e) = t.entries.get_mut(name).filter(|e| e.info.pid == pid) else {
        return;
    };
    tracing::info!(name, pid, ?ending, "the domain's VMM ended");
    if e.destroying {
        d.forget(&mut t, name);
        return;
    }
    let (act, kept) = match ending {
        Ending::Exit(Exit::Code(0)) | Ending::Clean => (Action::Destroy, State::Shutdown),
        Ending::Exit(Exit::Code(3)) => (e.info.on_reboot, State::Shutdown),
        Ending::Exit(Exit::Code(4) | Exit::Signal(_)) | Ending::Killed => {
            (e.info.on_crash, State::Crashed)
        }
        Ending::Exit(Exit::Code(c)) => {
            tracing::warn!(name, "the VMM failed (exit code {c}); see its log");
            (Action::Destroy, State::Crashed)
        }
    };
    d.registry.remove_stale(name, pid);
    let quick = if now().saturating_sub(e.info.started) < QUICK_CRASH_SECS {
        e.quick_crashes + 1
    } else {
        0
    };
    let looping = act.restarts() && quick > MAX_QUICK_CRASHES;
    if looping {
        tracing::error!(name, "crashed {quick} times in a row within {QUICK_CRASH_SECS} s of starting; not restarting it");
    }
    if act == Action::Preserve || looping {
        e.vmm = Vmm::Gone;
        e.info.state = kept;
        let e = e.clone();
        d.save(&e);
        d.notify();
        return;
    }
    let config = e.info.config.clone();
    let (true, Some(config)) = (act.restarts(), config) else {
        d.forget(&mut t, name);
        return;
    };
    let Some(mut old) = t.entries.remove(name) else {
        return;
    };
    t.pending.insert(name.to_string());
    drop(t);
    tracing::info!(name, "restarting the domain");
    let launch = Launch {
        config,
        overrides: old.info.overrides.clone(),
        paused: false,
    };
    let result = load_config(&launch).and_then(|dc| {
        if dc.name != name {
            return Err(ApiError::bad_request(format!(
                "the configuration now names the domain '{}'",
                dc.name
            )));
        }
        start(d, &launch, &dc, old.info.restarts + 1, quick)
    });
    if let Err(err) = result {
        tracing::error!(name, "restarting the domain failed: {err}");
        let mut t = d.lock();
        t.pending.remove(name);
        old.vmm = Vmm::Gone;
        old.info.state = State::Crashed;
        d.save(&old);
        t.entries.insert(name.to_string(), old);
        d.notify();
    }
}
