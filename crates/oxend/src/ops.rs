//! The API's operations, on the daemon's table.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use toolstack::{
    ApiError, CreateArgs, DomainArgs, DomainInfo, ErrorCode, Op, State, VersionInfo, VERSION,
};

use crate::daemon::{Daemon, Vmm};
use crate::sys;
use crate::vmm::{self, Launch};

/// The host's own domain, as xl names it.
const DOM0: &str = "Domain-0";
/// How long `destroy` waits for a SIGKILLed VMM and for its supervisor to forget it.
const REAP_WAIT: Duration = Duration::from_secs(5);

fn to_json<T: serde::Serialize>(v: Result<T, ApiError>) -> Result<Value, ApiError> {
    v.and_then(|v| serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string())))
}

/// Carries out one operation.
pub fn handle(d: &Arc<Daemon>, op: Op) -> Result<Value, ApiError> {
    match op {
        Op::Version => to_json(Ok(VersionInfo {
            protocol: VERSION,
            oxend: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
        })),
        Op::List => to_json(Ok(list(d))),
        Op::Info(a) => to_json(info(d, &a)),
        Op::Domid(a) => domid(d, &a.name).map(|id| json!({ "domid": id })),
        Op::Domname(a) => domname(d, a.domid).map(|n| json!({ "name": n })),
        Op::Create(a) => to_json(create(d, a)),
        Op::Destroy(a) => to_json(destroy(d, &a)),
    }
}

fn list(d: &Arc<Daemon>) -> Vec<DomainInfo> {
    let mut t = d.lock();
    d.sync(&mut t);
    let mut all: Vec<DomainInfo> = t.entries.values().map(|e| e.info.clone()).collect();
    all.sort_by_key(|i| i.domid);
    all
}

fn info(d: &Arc<Daemon>, a: &DomainArgs) -> Result<DomainInfo, ApiError> {
    let mut t = d.lock();
    let name = d.find(&mut t, &a.domain)?;
    t.entries
        .get(&name)
        .map(|e| e.info.clone())
        .ok_or_else(|| no_such(&name))
}

fn no_such(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NoSuchDomain,
        format!("domain '{what}' does not exist"),
    )
}

fn domid(d: &Arc<Daemon>, name: &str) -> Result<u32, ApiError> {
    if name == DOM0 {
        return Ok(0);
    }
    let mut t = d.lock();
    d.sync(&mut t);
    t.entries
        .get(name)
        .map(|e| e.info.domid)
        .ok_or_else(|| no_such(name))
}

fn domname(d: &Arc<Daemon>, domid: u32) -> Result<String, ApiError> {
    if domid == 0 {
        return Ok(DOM0.into());
    }
    let mut t = d.lock();
    d.sync(&mut t);
    t.entries
        .values()
        .find(|e| e.info.domid == domid)
        .map(|e| e.info.name.clone())
        .ok_or_else(|| no_such(&domid.to_string()))
}

fn create(d: &Arc<Daemon>, a: CreateArgs) -> Result<DomainInfo, ApiError> {
    if let Some(bad) = a.overrides.iter().find(|o| !o.contains('=')) {
        return Err(ApiError::bad_request(format!(
            "'{bad}' is not a KEY=VALUE setting"
        )));
    }
    let launch = Launch {
        config: a.config,
        overrides: a.overrides,
        paused: a.paused,
    };
    let dc = vmm::load_config(&launch)?;
    {
        let mut t = d.lock();
        d.sync(&mut t);
        if t.entries.contains_key(&dc.name) || t.pending.contains(&dc.name) {
            return Err(ApiError::new(
                ErrorCode::Exists,
                format!("a domain named '{}' already exists", dc.name),
            ));
        }
        t.pending.insert(dc.name.clone());
    }
    tracing::info!(name = dc.name, config = %launch.config.display(), "creating domain");
    vmm::start(d, &launch, &dc, 0, 0).inspect_err(|e| {
        tracing::warn!(name = dc.name, "creating the domain failed: {e}");
        d.lock().pending.remove(&dc.name);
        d.notify();
    })
}

/// Like `oxl destroy`: SIGTERM to the VMM, which tears the domain down and exits; then, unlike
/// it, SIGKILL if it has not ended within the grace period.
fn destroy(d: &Arc<Daemon>, a: &DomainArgs) -> Result<DomainInfo, ApiError> {
    let info = {
        let mut t = d.lock();
        let name = d.find(&mut t, &a.domain)?;
        let e = t.entries.get_mut(&name).ok_or_else(|| no_such(&name))?;
        e.info.state = State::Dying;
        if e.vmm == Vmm::Gone {
            let info = e.info.clone();
            d.forget(&mut t, &name);
            return Ok(info);
        }
        e.destroying = true;
        e.info.clone()
    };
    let (name, pid) = (info.name.as_str(), info.pid);
    tracing::info!(name, pid, "destroying domain");
    // No pidfd: the process is already gone and its supervisor is forgetting it.
    if let Ok(fd) = sys::pidfd_open(pid) {
        let failed =
            |e: std::io::Error| ApiError::internal(format!("signalling the VMM {pid}: {e}"));
        sys::pidfd_kill(&fd, libc::SIGTERM).map_err(failed)?;
        if !sys::wait_readable(&fd, Some(d.cfg.grace)).map_err(failed)? {
            tracing::warn!(
                name,
                pid,
                "the VMM did not end within {:?}; killing it",
                d.cfg.grace
            );
            sys::pidfd_kill(&fd, libc::SIGKILL).map_err(failed)?;
            sys::wait_readable(&fd, Some(REAP_WAIT)).map_err(failed)?;
        }
    }
    let gone = d.wait_until(REAP_WAIT, |t| {
        t.entries.get(name).is_none_or(|e| e.info.pid != pid)
    });
    if !gone {
        return Err(ApiError::internal(format!(
            "domain '{name}' (VMM {pid}) did not go away"
        )));
    }
    Ok(info)
}
