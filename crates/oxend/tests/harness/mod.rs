//! A host for oxend tests: a temporary runtime directory, the real `oxend` binary on it with
//! the fake VMM (`examples/fake_vmm.rs`) as its `oxl`, and clean-up of every process started.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use toolstack::{Client, ClientError, DomainInfo, ErrorCode};

/// The fake VMM, built by `cargo test` with the crate's examples.
pub fn fake_vmm() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/fake_vmm");
    assert!(
        p.exists(),
        "{} missing: run `cargo test -p oxend` (it builds the examples)",
        p.display()
    );
    p
}

/// Waits until `f` holds, at most 10 s.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process lives (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

/// Sends a signal.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid as i32, sig) };
}

/// The API error code of a failed call.
pub fn code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(ClientError::Api(e)) => e.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A temporary host.
pub struct Host {
    pub dir: tempfile::TempDir,
    oxend: Option<Child>,
}

impl Host {
    pub fn new() -> Host {
        Host {
            dir: tempfile::tempdir().unwrap(),
            oxend: None,
        }
    }

    pub fn run(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.run().join("oxend.sock")
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxend"));
        c.arg("--run-dir")
            .arg(self.run())
            .arg("--oxl")
            .arg(fake_vmm())
            .args(["--grace", "1", "--start-timeout", "10"])
            .args(extra)
            .env("OXEN_LOG", "debug")
            .stdin(Stdio::null());
        c
    }

    /// Starts oxend and waits until it answers.
    pub fn start(&mut self, extra: &[&str]) {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = fs::File::create(self.run().join(format!("oxend-{n}.log"))).unwrap();
        let child = self
            .command(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.oxend = Some(child);
        eventually("oxend answers", || {
            Client::connect(self.socket())
                .and_then(|mut c| c.version())
                .is_ok()
        });
    }

    /// Runs a second oxend to its end.
    pub fn run_to_end(&self, extra: &[&str]) -> Output {
        let mut c = self
            .command(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        c.wait_with_output().unwrap()
    }

    /// Kills oxend (the domains go on).
    pub fn kill_oxend(&mut self) {
        if let Some(mut c) = self.oxend.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.socket()).unwrap()
    }

    /// Writes `NAME.cfg` with the given extra lines and the fake VMM's `extra` words.
    pub fn cfg(&self, name: &str, lines: &str, fake: &str) -> PathBuf {
        let p = self.run().join(format!("{name}.cfg"));
        fs::write(&p, format!("name = '{name}'\nkernel = '/no/kernel'\nmemory = 64\nvcpus = 2\nextra = '{fake}'\n{lines}\n")).unwrap();
        p
    }

    pub fn create(&self, cfg: &Path) -> Result<DomainInfo, ClientError> {
        self.client().create(toolstack::CreateArgs {
            config: cfg.to_path_buf(),
            overrides: vec![],
            paused: false,
        })
    }

    /// The domain's record in the table, waiting until `f` holds for it.
    pub fn wait_info(&self, name: &str, what: &str, f: impl Fn(&DomainInfo) -> bool) -> DomainInfo {
        let mut last = None;
        eventually(what, || {
            last = self.client().info(name).ok();
            last.as_ref().is_some_and(&f)
        });
        last.unwrap()
    }

    /// Waits until the domain is gone from the table.
    pub fn wait_gone(&self, name: &str) {
        eventually(
            &format!("'{name}' gone"),
            || matches!(self.client().info(name), Err(ClientError::Api(e)) if e.code == ErrorCode::NoSuchDomain),
        );
    }

    /// The VMM pids in the registry.
    pub fn registered_pids(&self) -> Vec<u32> {
        let Ok(rd) = fs::read_dir(self.run().join("domains")) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter_map(|v| v["pid"].as_u64().map(|p| p as u32))
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_oxend();
        for pid in self.registered_pids() {
            if alive(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}
