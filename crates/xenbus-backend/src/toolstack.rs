//! The toolstack's part, as libxl does it for a device at `xl create` or `xl block-attach`
//! (`libxl__device_generic_add`) and at `xl block-detach` (`libxl__initiate_device_generic_remove`).

use std::time::{Duration, Instant};

use xenstore::client::{Client, ClientError};

use crate::id::{DeviceId, XenbusState};
use crate::xs::{self, NodeState};
use crate::Error;

/// How often [`remove_device`] looks at the frontend's state while it waits.
const REMOVE_POLL: Duration = Duration::from_millis(10);

/// Writes a new device's two directories in one transaction, replacing stale ones:
///
/// - the back end's (`frontend`, `frontend-id`, `online` = 1, `state` = 1 and `backend_nodes`),
///   owned by dom0 and readable by the domain (`n0`, `r<domid>`);
/// - the frontend's (`backend`, `backend-id` = 0, `state` = 1 and `frontend_nodes`), owned by the
///   domain and readable by dom0 (`n<domid>`, `r0`).
///
/// Nodes inherit their directory's permissions. A node name may contain `/` (a subdirectory).
pub fn create_device(
    c: &mut Client,
    id: &DeviceId,
    backend_nodes: &[(&str, String)],
    frontend_nodes: &[(&str, String)],
) -> Result<(), Error> {
    let be = id.backend_path();
    let fe = id.frontend_path();
    let be_perms = ["n0".to_string(), format!("r{}", id.domid)];
    let fe_perms = [format!("n{}", id.domid), "r0".to_string()];
    let be_fixed = [
        ("frontend", fe.clone()),
        ("frontend-id", id.domid.to_string()),
        ("online", "1".to_string()),
        ("state", XenbusState::Initialising.to_string()),
    ];
    let fe_fixed = [
        ("backend", be.clone()),
        ("backend-id", "0".to_string()),
        ("state", XenbusState::Initialising.to_string()),
    ];
    c.transact(|c, tx| {
        for stale in [&be, &fe, &id.error_dir()] {
            xs::rm_opt(c, tx, stale)?;
        }
        make_dir(c, tx, &be, &be_perms, be_fixed.iter().chain(backend_nodes))?;
        make_dir(c, tx, &fe, &fe_perms, fe_fixed.iter().chain(frontend_nodes))
    })
    .map_err(|source| Error::xs(format!("creating device {id}"), source))
}

fn make_dir<'a>(
    c: &mut Client,
    tx: u32,
    dir: &str,
    perms: &[String],
    nodes: impl Iterator<Item = &'a (&'a str, String)>,
) -> Result<(), ClientError> {
    c.mkdir(tx, dir)?;
    let p: Vec<&str> = perms.iter().map(String::as_str).collect();
    c.set_perms(tx, dir, &p)?;
    for (name, value) in nodes {
        c.write(tx, &format!("{dir}/{name}"), value.as_bytes())?;
    }
    Ok(())
}

/// How a [`remove_device`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveOutcome {
    /// The frontend was Closed (or had never connected) before the directories were removed;
    /// `false` means the timeout ran out and the device was removed under a live frontend.
    pub frontend_closed: bool,
}

/// Detaches a device as `xl block-detach` does: `online` = 0 and the back end's state Closing
/// (which makes the back end and then the frontend close), waits up to `timeout` for the
/// frontend to be Closed, then removes both directories and the back end's error node.
///
/// A frontend that never connected (no state, Unknown, Initialising, InitWait or garbage) is not
/// waited for. A device without a back-end directory just has its frontend directory removed.
/// The wait polls the frontend's state, so watch events for the caller's own watches on `c`
/// are left alone.
pub fn remove_device(
    c: &mut Client,
    id: &DeviceId,
    timeout: Duration,
) -> Result<RemoveOutcome, Error> {
    let be = id.backend_path();
    let ctx = |what: &str| format!("removing device {id}: {what}");
    let present = c
        .transact(|c, tx| {
            if xs::read_opt(c, tx, &be)?.is_none() {
                return Ok(false);
            }
            c.write(tx, &format!("{be}/online"), b"0")?;
            let state = format!("{be}/state");
            if xs::read_state(c, tx, &state)? != NodeState::State(XenbusState::Closed) {
                let closing = XenbusState::Closing.to_string();
                c.write(tx, &state, closing.as_bytes())?;
            }
            Ok(true)
        })
        .map_err(|e| Error::xs(ctx("asking the back end to close"), e))?;

    let frontend_closed = !present || wait_frontend_closed(c, id, timeout)?;
    force_remove(c, id)?;
    Ok(RemoveOutcome { frontend_closed })
}

/// Polls the frontend's state until it is no longer live; `false` if `timeout` ran out first.
fn wait_frontend_closed(c: &mut Client, id: &DeviceId, timeout: Duration) -> Result<bool, Error> {
    let path = format!("{}/state", id.frontend_path());
    let end = Instant::now() + timeout;
    loop {
        let st = xs::read_state(c, 0, &path).map_err(|e| {
            Error::xs(
                format!("removing device {id}: reading the frontend's state"),
                e,
            )
        })?;
        if !frontend_is_live(st) {
            return Ok(true);
        }
        if Instant::now() >= end {
            tracing::warn!(device = %id, state = ?st, "frontend did not close in time; removing the device anyway");
            return Ok(false);
        }
        std::thread::sleep(REMOVE_POLL);
    }
}

/// Whether a frontend in this state has (or may have) rings set up, so must be waited for.
fn frontend_is_live(st: NodeState) -> bool {
    use XenbusState::*;
    matches!(
        st,
        NodeState::State(Initialised | Connected | Closing | Reconfiguring | Reconfigured)
    )
}

/// Removes the device's directories (and the back end's error node) at once, without asking
/// anyone to close: what libxl does when a domain is destroyed. A back end serving it sees its
/// directory go and stops.
pub fn force_remove(c: &mut Client, id: &DeviceId) -> Result<(), Error> {
    c.transact(|c, tx| {
        for dir in [id.frontend_path(), id.backend_path(), id.error_dir()] {
            xs::rm_opt(c, tx, &dir)?;
        }
        Ok(())
    })
    .map_err(|e| Error::xs(format!("removing device {id}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_frontend_states() {
        use XenbusState::*;
        for s in [Initialised, Connected, Closing] {
            assert!(frontend_is_live(NodeState::State(s)));
        }
        for s in [Unknown, Initialising, InitWait, Closed] {
            assert!(!frontend_is_live(NodeState::State(s)));
        }
        assert!(!frontend_is_live(NodeState::Missing));
        assert!(!frontend_is_live(NodeState::Garbage));
    }
}
