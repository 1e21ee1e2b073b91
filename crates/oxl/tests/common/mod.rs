//! Shared test helpers: a private runtime directory with fake domain records, the `oxl` binary,
//! and `oxenstored` on a private socket.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `$OXEN_RUN_DIR`.
pub struct RunDir {
    pub dir: tempfile::TempDir,
}

impl RunDir {
    pub fn new() -> RunDir {
        RunDir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Registers a domain the way `oxl create` does (the registry's JSON record).
    pub fn register(&self, name: &str, domid: u32, pid: u32, started: u64) {
        let d = self.path().join("domains");
        std::fs::create_dir_all(&d).unwrap();
        let rec = serde_json::json!({
            "name": name, "domid": domid, "pid": pid, "memory_mib": 128, "vcpus": 1,
            "state": "r", "started": started,
        });
        std::fs::write(d.join(format!("{name}.json")), rec.to_string()).unwrap();
    }

    /// Where `oxl` looks for domain `name`'s console of `kind`.
    pub fn console_socket(&self, name: &str, kind: &str) -> PathBuf {
        let d = self.path().join("console");
        std::fs::create_dir_all(&d).unwrap();
        d.join(format!("{name}.{kind}.sock"))
    }

    /// `oxl ARGS` in this runtime directory.
    pub fn oxl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxl"));
        c.args(args).env("OXEN_RUN_DIR", self.path());
        c
    }
}

/// `oxenstored` on a private socket; killed when dropped.
pub struct Xenstored {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

/// The `oxenstored` built next to `oxl` (the workspace build builds both). Fails, naming the
/// fix, if it has not been built.
fn oxenstored_path() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_oxl")).with_file_name("oxenstored");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p xenstored` (add --release for a release test run)",
        p.display()
    );
    p
}

impl Xenstored {
    pub fn start() -> Xenstored {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("socket");
        let child = Command::new(oxenstored_path())
            .arg("--socket")
            .arg(&socket)
            .arg("--no-persist")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn oxenstored");
        wait_until("oxenstored's socket", || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        Xenstored { child, dir, socket }
    }

    pub fn client(&self) -> xenstore::client::Client {
        xenstore::client::Client::connect(&self.socket).expect("connect to oxenstored")
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it holds; fails the test after 10 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit; fails the test after 10 s.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("oxl to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.unwrap()
}
