//! Attaching the tap to the host's network: Xen's hotplug script convention (`online` /
//! `offline` with `XENBUS_PATH`, `vif` and `bridge` in the environment), or, with a bridge and
//! no script, `ip link set TAP master BRIDGE` directly.

use std::path::PathBuf;
use std::process::Command;

use crate::Error;

/// How a vif's tap joins the network.
#[derive(Debug, Clone)]
pub(crate) enum Hotplug {
    /// Run this script with `online` / `offline`.
    Script {
        script: PathBuf,
        xenbus_path: String,
        bridge: Option<String>,
    },
    /// Enslave the tap to this bridge with `ip`.
    Bridge(String),
}

impl Hotplug {
    /// What `script` and `bridge` ask for, if anything.
    pub(crate) fn new(
        script: Option<PathBuf>,
        bridge: Option<String>,
        xenbus_path: String,
    ) -> Option<Hotplug> {
        match (script, bridge) {
            (Some(script), bridge) => Some(Hotplug::Script {
                script,
                xenbus_path,
                bridge,
            }),
            (None, Some(b)) => Some(Hotplug::Bridge(b)),
            (None, None) => None,
        }
    }

    /// The tap `vif` now exists (`online`) or is about to go (`online` = false).
    pub(crate) fn run(&self, vif: &str, online: bool) -> Result<(), Error> {
        let action = if online { "online" } else { "offline" };
        let mut cmd = match self {
            Hotplug::Script {
                script,
                xenbus_path,
                bridge,
            } => {
                let mut c = Command::new(script);
                c.arg(action)
                    .env("XENBUS_PATH", xenbus_path)
                    .env("vif", vif)
                    .env("netdev", vif);
                if let Some(b) = bridge {
                    c.env("bridge", b);
                }
                c
            }
            Hotplug::Bridge(bridge) => {
                let mut c = Command::new("ip");
                c.args(["link", "set", vif]);
                if online {
                    c.args(["master", bridge, "up"]);
                } else {
                    c.arg("nomaster");
                }
                c
            }
        };
        let what = format!("{cmd:?}");
        let out = cmd.output().map_err(|e| Error::Hotplug {
            vif: vif.to_string(),
            what: what.clone(),
            why: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(Error::Hotplug {
                vif: vif.to_string(),
                what,
                why: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}
