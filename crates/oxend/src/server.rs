//! The socket: one oxend per host (a lock file), `oxend.sock` with mode 0660 and the
//! managing group, peer credentials checked, one thread per connection.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use toolstack::{ApiError, ErrorCode, Op, Request, Response};

use crate::daemon::{Config, Daemon};
use crate::error::Error;
use crate::{ops, sys};

/// The longest request line read; longer ones close the connection.
const MAX_LINE: u64 = 1 << 20;

/// Who may manage domains: root, oxend's own user, and members of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// oxend's user.
    pub uid: u32,
    /// The managing group (`--group`).
    pub gid: Option<u32>,
}

impl Policy {
    /// Whether `p` may manage domains.
    pub fn permits(&self, p: &sys::Peer) -> bool {
        p.uid == 0
            || p.uid == self.uid
            || self
                .gid
                .is_some_and(|g| p.gid == g || p.groups.contains(&g))
    }
}

/// A bound, locked oxend, its table recovered.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    daemon: Arc<Daemon>,
    policy: Policy,
    socket: PathBuf,
    _lock: fs::File,
}

impl Server {
    /// Takes the host's oxend lock, creates the socket and recovers the domain table.
    pub fn bind(cfg: Config) -> Result<Server, Error> {
        let run = cfg.run_dir.clone();
        fs::create_dir_all(&run).map_err(Error::io("creating", &run))?;
        let lock_path = run.join("oxend.lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("opening", &lock_path))?;
        if !sys::try_lock(&lock).map_err(Error::io("locking", &lock_path))? {
            return Err(Error::AlreadyRunning(lock_path));
        }
        // The holder's pid, for people; the lock is what counts.
        let _ = lock
            .set_len(0)
            .and_then(|_| writeln!(lock, "{}", std::process::id()));

        // Bound under a temporary name and renamed once its mode and group are right, so the
        // socket is never reachable with looser permissions. Whatever was there is stale: the
        // lock says no other oxend runs.
        let socket = run.join(toolstack::SOCKET_NAME);
        let tmp = run.join(format!(".{}.new", toolstack::SOCKET_NAME));
        let _ = fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(Error::io("binding", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o660))
            .map_err(Error::io("setting the mode of", &tmp))?;
        if let Some(gid) = cfg.group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))
                .map_err(Error::io("changing the group of", &tmp))?;
        }
        fs::rename(&tmp, &socket).map_err(Error::io("renaming the socket to", &socket))?;

        let policy = Policy {
            uid: sys::euid(),
            gid: cfg.group,
        };
        let daemon = Daemon::new(cfg);
        daemon.recover();
        tracing::info!(socket = %socket.display(), "oxend listening");
        Ok(Server {
            listener,
            daemon,
            policy,
            socket,
            _lock: lock,
        })
    }

    /// The socket's path.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// Serves connections until the listener fails.
    pub fn run(self) -> Result<(), Error> {
        for conn in self.listener.incoming() {
            let stream = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    continue;
                }
            };
            let (d, policy) = (self.daemon.clone(), self.policy);
            let spawned = std::thread::Builder::new()
                .name("client".into())
                .spawn(move || serve(&d, policy, stream));
            if let Err(e) = spawned {
                tracing::warn!("starting a connection's thread: {e}");
            }
        }
        Ok(())
    }
}

/// Answers one connection's requests, one line each, until it closes.
fn serve(d: &Arc<Daemon>, policy: Policy, stream: UnixStream) {
    let peer = sys::peer(&stream);
    let allowed = match &peer {
        Ok(p) => policy.permits(p),
        Err(e) => {
            tracing::warn!("reading a client's credentials: {e}");
            false
        }
    };
    if !allowed {
        tracing::info!(?peer, "a client that may not manage domains connected");
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut buf = Vec::new();
        match (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = !buf.ends_with(b"\n") && buf.len() as u64 > MAX_LINE;
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let resp = if too_long {
            Response::err(
                0,
                ApiError::bad_request(format!("request longer than {MAX_LINE} bytes")),
            )
        } else {
            answer(d, allowed, &line)
        };
        let mut out = serde_json::to_string(&resp).unwrap_or_else(|e| {
            format!(
                r#"{{"v":1,"id":0,"err":{{"code":"internal","msg":"encoding the response: {e}"}}}}"#
            )
        });
        out.push('\n');
        if writer.write_all(out.as_bytes()).is_err() || too_long {
            return;
        }
    }
}

/// The response to one request line.
pub fn answer(d: &Arc<Daemon>, allowed: bool, line: &str) -> Response {
    let req = match Request::parse(line) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if !allowed {
        return Response::err(
            req.id,
            ApiError::new(
                ErrorCode::Permission,
                "only root, oxend's user and its group may manage domains",
            ),
        );
    }
    let result = Op::from_request(&req).and_then(|op| {
        tracing::debug!(op = op.name(), id = req.id, "request");
        ops::handle(d, op)
    });
    match result {
        Ok(v) => Response::ok(req.id, v),
        Err(e) => Response::err(req.id, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Peer;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn who_may_manage_domains() {
        let open = Policy {
            uid: 1000,
            gid: None,
        };
        assert!(open.permits(&peer(0, 0, &[])), "root");
        assert!(open.permits(&peer(1000, 1000, &[])), "oxend's user");
        assert!(!open.permits(&peer(1001, 50, &[50])), "no group given");
        let grp = Policy {
            uid: 0,
            gid: Some(50),
        };
        assert!(grp.permits(&peer(1001, 50, &[])), "primary group");
        assert!(
            grp.permits(&peer(1001, 100, &[7, 50])),
            "supplementary group"
        );
        assert!(!grp.permits(&peer(1001, 100, &[7])), "not a member");
    }
}
