//! Shared test helpers: start `oxenstored` on a private socket and find Xen's client tools.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A daemon running on a temporary socket; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl Daemon {
    /// Starts a daemon keeping its state in a fresh temporary directory.
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("socket");
        let state = dir.path().join("state.json");
        let child = spawn(&socket, &state, extra);
        wait_for_socket(&socket);
        Daemon {
            child,
            dir,
            socket,
            state,
        }
    }

    /// Stops with SIGTERM (a clean stop that saves the state) and waits for the exit.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM to oxenstored");
        let status = self.child.wait().expect("wait for oxenstored");
        assert!(status.success(), "oxenstored exited with {status}");
    }

    /// Starts the daemon again on the same socket and state file.
    pub fn restart(&mut self, extra: &[&str]) {
        self.child = spawn(&self.socket, &self.state, extra);
        wait_for_socket(&self.socket);
    }

    /// Runs one of Xen's client tools against this daemon.
    pub fn tool(&self, name: &str, args: &[&str]) -> Output {
        let out = Command::new(tool_path(name))
            .args(args)
            .env("XENSTORED_PATH", &self.socket)
            .output()
            .unwrap_or_else(|e| panic!("running {name}: {e}"));
        out
    }

    /// Runs a tool that must succeed; returns its standard output.
    pub fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.tool(name, args);
        assert!(
            out.status.success(),
            "{name} {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(socket: &Path, state: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxenstored"));
    // Never look for VMM link sockets in the host's real run directory.
    if !extra.contains(&"--run-dir") {
        cmd.arg("--run-dir").arg(socket.with_file_name("run"));
    }
    cmd.arg("--socket")
        .arg(socket)
        .arg("--state-file")
        .arg(state)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn oxenstored")
}

pub fn wait_for_socket(socket: &Path) {
    let end = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < end,
            "oxenstored did not open {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where Debian's packages put a Xen client tool. Panics (failing the test) if it is not
/// installed: scripts/deps.d/20-xenstore.sh installs them.
pub fn tool_path(name: &str) -> PathBuf {
    // Xen's own directory first: Debian's /usr/bin entries for some tools are wrappers that
    // insist on running under a Xen hypervisor.
    let candidates = [
        PathBuf::from("/usr/lib/xen-4.17/bin").join(name),
        PathBuf::from("/usr/bin").join(name),
        PathBuf::from("/usr/lib/xen/bin").join(name),
    ];
    candidates.iter().find(|p| p.exists()).cloned().unwrap_or_else(|| {
        panic!("{name} is not installed: run scripts/install-deps (xenstore-utils, xen-utils-4.17)")
    })
}
