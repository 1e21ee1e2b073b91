//! A domain's control socket: how `oxl` commands reach the VMM process that runs the domain
//! for what Xenstore cannot carry (a live snapshot, an online resize). One JSON request per
//! line, one JSON reply per line, on `$OXEN_RUN_DIR/ctl/dom<ID>.sock` (root only).
//! `oxend` will take this over.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A request to the domain's VMM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Live snapshot of disk `vdev`; `name` is the snapshot file.
    BlockSnapshot {
        /// Disk name (`xvda`).
        vdev: String,
        /// Snapshot file name or path.
        name: Option<String>,
    },
    /// Grow disk `vdev` to `size` bytes.
    BlockResize {
        /// Disk name.
        vdev: String,
        /// New size in bytes.
        size: u64,
    },
}

/// The reply: `Ok(message)` or `Err(error)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    /// Success.
    pub ok: bool,
    /// What happened, or what went wrong.
    pub message: String,
}

/// The control socket of domain `domid`.
pub fn socket_path(domid: u32) -> PathBuf {
    crate::registry::dir()
        .parent()
        .map(|p| p.join("ctl"))
        .unwrap_or_else(|| PathBuf::from("/run/oxen/ctl"))
        .join(format!("dom{domid}.sock"))
}

/// Serves the socket until dropped.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

/// Largest request line accepted.
const MAX_LINE: u64 = 64 * 1024;

impl Server {
    /// Listens on domain `domid`'s socket; `handle` answers each request.
    pub fn start(
        domid: u32,
        handle: Arc<dyn Fn(Request) -> Result<String> + Send + Sync>,
    ) -> Result<Server> {
        Server::start_at(socket_path(domid), handle)
    }

    /// Listens on `path`.
    fn start_at(
        path: PathBuf,
        handle: Arc<dyn Fn(Request) -> Result<String> + Send + Sync>,
    ) -> Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_in = stop.clone();
        std::thread::Builder::new()
            .name("ctl".into())
            .spawn(move || {
                while !stop_in.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let h = handle.clone();
                            let _ = std::thread::Builder::new()
                                .name("ctl-conn".into())
                                .spawn(move || serve(s, h.as_ref()));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            tracing::warn!("control socket: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .context("starting the control socket thread")?;
        Ok(Server { path, stop })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(s: UnixStream, handle: &(dyn Fn(Request) -> Result<String> + Send + Sync)) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(w) = s.try_clone() else { return };
    let mut w = w;
    let mut r = BufReader::new(s).take(MAX_LINE);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match handle(req) {
            Ok(message) => Reply { ok: true, message },
            Err(e) => Reply {
                ok: false,
                message: format!("{e:#}"),
            },
        },
        Err(e) => Reply {
            ok: false,
            message: format!("bad request: {e}"),
        },
    };
    if let Ok(mut text) = serde_json::to_string(&reply) {
        text.push('\n');
        let _ = w.write_all(text.as_bytes());
    }
}

/// Sends `req` to domain `domid`'s VMM and returns its message.
pub fn call(domid: u32, req: &Request) -> Result<String> {
    call_at(&socket_path(domid), req)
}

/// Sends `req` to the VMM serving `path`.
fn call_at(path: &std::path::Path, req: &Request) -> Result<String> {
    let mut s = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot reach the domain's VMM on {} (is the domain running on this host?)",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    s.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s)
        .take(MAX_LINE)
        .read_line(&mut line)
        .context("reading the VMM's reply")?;
    let reply: Reply = serde_json::from_str(&line)
        .with_context(|| format!("unreadable reply from the VMM: {line:?}"))?;
    if !reply.ok {
        bail!("{}", reply.message);
    }
    Ok(reply.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        // Explicit paths: another test may set OXEN_RUN_DIR at the same time.
        let path = dir.path().join("ctl").join("dom77.sock");
        let _s = Server::start_at(
            path.clone(),
            Arc::new(|r| match r {
                Request::BlockResize { size, .. } if size > 0 => Ok(format!("grown to {size}")),
                _ => bail!("no such disk"),
            }),
        )
        .unwrap();
        let ok = call_at(
            &path,
            &Request::BlockResize {
                vdev: "xvda".into(),
                size: 5,
            },
        )
        .unwrap();
        assert_eq!(ok, "grown to 5");
        let err = call_at(
            &path,
            &Request::BlockSnapshot {
                vdev: "xvda".into(),
                name: None,
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "no such disk");
        assert!(call_at(
            &dir.path().join("ctl").join("dom78.sock"),
            &Request::BlockResize {
                vdev: "x".into(),
                size: 1
            }
        )
        .is_err());
    }
}
