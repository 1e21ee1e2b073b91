//! A Xenstore daemon in a thread on a temporary socket, for other crates' tests (the PV
//! backends and their xenbus machine). Built with the `testing` feature only.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::client::Client;
use crate::daemon::{Daemon, DaemonConfig};
use crate::quota::Quotas;

/// A running in-process daemon; dropping it stops the daemon and removes its socket.
#[derive(Debug)]
pub struct TestDaemon {
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    stop: UnixStream,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestDaemon {
    /// Starts a daemon with default quotas and no state file; panics if it cannot (a test
    /// set-up failure).
    pub fn start() -> TestDaemon {
        let dir = tempfile::tempdir().expect("temporary directory");
        let socket = dir.path().join("xenstored.sock");
        let cfg = DaemonConfig {
            socket: socket.clone(),
            state_file: None,
            save_interval: Duration::from_secs(3600),
            quotas: Quotas::default(),
            max_clients: 1024,
        };
        let (stop_rx, stop) = UnixStream::pair().expect("socket pair");
        let (ready, is_ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut d = Daemon::new(cfg, None).expect("xenstore daemon");
            let _ = ready.send(());
            d.run(Some(stop_rx)).expect("xenstore daemon run");
        });
        is_ready
            .recv_timeout(Duration::from_secs(10))
            .expect("the xenstore daemon did not start");
        TestDaemon {
            socket,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// A new connection to the daemon.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connecting to the test daemon")
    }

    /// The value at `path`, if it exists (as text).
    pub fn read(&self, path: &str) -> Option<String> {
        self.client()
            .read(0, path)
            .ok()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        let _ = (&self.stop).write_all(b"q");
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
