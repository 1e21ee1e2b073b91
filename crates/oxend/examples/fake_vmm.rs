//! A stand-in for `oxl create` in oxend's tests (no KVM): `fake_vmm create [-p] CFG [K=V...]`
//! registers the domain in `$OXEN_RUN_DIR/domains/NAME.json` the way oxl does (lowest free
//! domid under the directory's flock, its own pid), then waits. SIGTERM removes the record and
//! exits 0, like a destroyed domain; SIGUSR1 unpauses.
//!
//! Behaviour comes from words in the configuration's `extra`:
//! `fake.fail` exits 1 before registering; `fake.exit=N` (after `fake.after_ms=M`, default 100)
//! ends with code N, removing the record as oxl does; `fake.ignore_term` ignores SIGTERM. It
//! never lives longer than two minutes, so a test that dies leaks nothing for long.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn alive(pid: u64) -> bool {
    // SAFETY: signal 0 only probes for existence.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let paused = args.iter().any(|a| a == "-p");
    let mut rest = args.iter().filter(|a| *a != "create" && *a != "-p");
    let cfg = PathBuf::from(rest.next().expect("a configuration file"));
    let overrides: Vec<String> = rest.cloned().collect();
    let text = fs::read_to_string(&cfg).expect("reading the configuration");
    let dc = xlcfg::DomainConfig::load(&text, "cfg", &overrides).expect("a valid configuration");
    let word = |w: &str| {
        dc.cmdline
            .split_whitespace()
            .find_map(|x| x.strip_prefix(w).map(str::to_string))
    };
    if word("fake.fail").is_some() {
        eprintln!("fake: cannot start domain '{}'", dc.name);
        std::process::exit(1);
    }
    eprintln!("fake: starting domain '{}'", dc.name);

    let dir =
        PathBuf::from(std::env::var_os("OXEN_RUN_DIR").expect("OXEN_RUN_DIR")).join("domains");
    fs::create_dir_all(&dir).unwrap();
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))
        .unwrap();
    // SAFETY: flock on a descriptor this process owns.
    unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    let taken: Vec<u64> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| serde_json::from_str::<Value>(&fs::read_to_string(e.path()).ok()?).ok())
        .filter(|r| alive(r["pid"].as_u64().unwrap_or(0)))
        .filter_map(|r| r["domid"].as_u64())
        .collect();
    let domid = (1..).find(|id| !taken.contains(id)).unwrap_or(1);
    let path = dir.join(format!("{}.json", dc.name));
    let mut record = json!({
        "name": dc.name, "domid": domid, "pid": std::process::id(), "memory_mib": dc.memory_mib,
        "vcpus": dc.vcpus, "state": if paused { "p" } else { "r" },
        "started": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    });
    if path.exists()
        && fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|r| alive(r["pid"].as_u64().unwrap_or(0)))
    {
        eprintln!("fake: a domain named '{}' already exists", dc.name);
        std::process::exit(1);
    }
    let write = |r: &Value| {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, r.to_string()).unwrap();
        fs::rename(&tmp, &path).unwrap();
    };
    write(&record);
    drop(lock);

    let term = Arc::new(AtomicBool::new(false));
    let usr1 = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(libc::SIGTERM, term.clone()).unwrap();
    signal_hook::flag::register(libc::SIGUSR1, usr1.clone()).unwrap();
    let exit: Option<i32> = word("fake.exit=").and_then(|v| v.parse().ok());
    let after = Duration::from_millis(
        word("fake.after_ms=")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    let ignore_term = word("fake.ignore_term").is_some();
    let start = Instant::now();
    let code = loop {
        std::thread::sleep(Duration::from_millis(10));
        if term.load(Ordering::Relaxed) && !ignore_term {
            eprintln!("fake: domain '{}' destroyed", dc.name);
            break 0;
        }
        if usr1.swap(false, Ordering::Relaxed) {
            record["state"] = json!("r");
            write(&record);
        }
        if let Some(c) = exit.filter(|_| start.elapsed() >= after) {
            break c;
        }
        if start.elapsed() > Duration::from_secs(120) {
            break 0;
        }
    };
    let _ = fs::remove_file(&path);
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
