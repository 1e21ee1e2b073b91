//! `oxl shutdown` and `oxl reboot`: ask the guest, through `control/shutdown` in Xenstore, the
//! way xl does; the guest's PV drivers act on it.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::registry::{self, Record};

/// What to ask the guest for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `poweroff`.
    Poweroff,
    /// `reboot`.
    Reboot,
}

impl Request {
    /// The value written to `control/shutdown`.
    pub fn value(self) -> &'static str {
        match self {
            Request::Poweroff => "poweroff",
            Request::Reboot => "reboot",
        }
    }
}

/// `oxl shutdown` / `oxl reboot` arguments, as xl names them.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Wait: for shutdown, until the domain has shut down; for reboot, until it has restarted
    /// or ended.
    #[arg(short = 'w', long = "wait")]
    pub wait: bool,
    /// Every domain.
    #[arg(short = 'a', long = "all", conflicts_with = "domain")]
    pub all: bool,
    /// Domain name or id.
    #[arg(required_unless_present = "all")]
    pub domain: Option<String>,
}

/// How often `-w` looks at the domain.
const POLL: Duration = Duration::from_millis(100);

/// The node the guest watches for requests.
pub fn control_path(domid: u32) -> String {
    format!("/local/domain/{domid}/control/shutdown")
}

/// Runs `oxl shutdown` or `oxl reboot`.
pub fn run(args: Args, req: Request) -> Result<()> {
    let targets = match &args.domain {
        Some(d) => vec![registry::find(d)?],
        None => registry::list()?,
    };
    if targets.is_empty() {
        return Ok(());
    }
    let mut xs = crate::xendomain::connect()?;
    for d in &targets {
        xs.write(0, &control_path(d.domid), req.value().as_bytes())
            .with_context(|| {
                format!(
                    "asking domain '{}' (id {}) to {}",
                    d.name,
                    d.domid,
                    req.value()
                )
            })?;
    }
    if args.wait {
        for d in &targets {
            eprintln!(
                "oxl: waiting for domain '{}' to {}",
                d.name,
                match req {
                    Request::Poweroff => "shut down",
                    Request::Reboot => "reboot",
                }
            );
            wait(d, req)?;
        }
    }
    Ok(())
}

/// Whether `now` (the domain's current record, `None` once it is gone) shows that `before` has
/// done what `req` asked.
pub fn done(before: &Record, now: Option<&Record>, req: Request) -> bool {
    let Some(now) = now else {
        return true;
    };
    match req {
        // A preserved domain (on_poweroff=preserve) has shut down but stays listed.
        Request::Poweroff => now.state == "s",
        // A restart shows as a new VMM process or a new start time; a domain that ended is gone.
        Request::Reboot => {
            now.pid != before.pid || now.started != before.started || now.state == "s"
        }
    }
}

fn wait(d: &Record, req: Request) -> Result<()> {
    loop {
        let now = registry::list()?
            .into_iter()
            .find(|r| r.name == d.name && r.domid == d.domid);
        if done(d, now.as_ref(), req) {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_paths() {
        assert_eq!(Request::Poweroff.value(), "poweroff");
        assert_eq!(Request::Reboot.value(), "reboot");
        assert_eq!(control_path(7), "/local/domain/7/control/shutdown");
    }

    #[test]
    fn when_waiting_ends() {
        let before = Record {
            name: "web".into(),
            domid: 3,
            pid: 100,
            memory_mib: 256,
            vcpus: 1,
            state: "r".into(),
            started: 1000,
        };
        let with = |f: &dyn Fn(&mut Record)| {
            let mut r = before.clone();
            f(&mut r);
            r
        };
        for req in [Request::Poweroff, Request::Reboot] {
            assert!(done(&before, None, req), "gone");
            assert!(!done(&before, Some(&before), req), "unchanged");
            assert!(done(&before, Some(&with(&|r| r.state = "s".into())), req));
        }
        let restarted = with(&|r| r.started = 1005);
        assert!(done(&before, Some(&restarted), Request::Reboot));
        assert!(!done(&before, Some(&restarted), Request::Poweroff));
        assert!(done(
            &before,
            Some(&with(&|r| r.pid = 101)),
            Request::Reboot
        ));
    }
}
