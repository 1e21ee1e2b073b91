//! The domain record oxend hands out.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A domain's state in oxend's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Its vCPUs run.
    Running,
    /// Created paused (`create` with `paused`), waiting for an unpause.
    Paused,
    /// The guest shut down or rebooted and the action was `preserve`: kept for inspection.
    Shutdown,
    /// The VMM crashed or was killed and on_crash was `preserve`: kept until destroyed.
    Crashed,
    /// Being destroyed.
    Dying,
    /// A state this client does not know (a newer oxend).
    #[serde(other)]
    Unknown,
}

impl State {
    /// The state as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Shutdown => "shutdown",
            State::Crashed => "crashed",
            State::Dying => "dying",
            State::Unknown => "unknown",
        }
    }
}

/// What oxend does when a domain's VMM ends (xl's on_crash / on_reboot values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Forget the domain.
    Destroy,
    /// Start it again from its configuration.
    Restart,
    /// Keep it in the table (as `crashed` or `shutdown`) until destroyed.
    Preserve,
    /// Core dump (done by the VMM), then forget.
    CoredumpDestroy,
    /// Core dump (done by the VMM), then start again.
    CoredumpRestart,
}

impl Action {
    /// Whether the domain starts again.
    pub fn restarts(self) -> bool {
        matches!(self, Action::Restart | Action::CoredumpRestart)
    }
}

/// One domain: what `list` returns a list of and `info` and `create` return.
///
/// Clients must ignore fields they do not know: later oxends add fields without a version
/// change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    /// Domain id (1 and up; 0 is the host).
    pub domid: u32,
    /// UUID from the configuration, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Name.
    pub name: String,
    /// State.
    pub state: State,
    /// The VMM's process id (the last one, for a crashed domain).
    pub pid: u32,
    /// The xl.cfg it was created from; absent for a domain oxend adopted without knowing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// The `KEY=VALUE` overrides given at creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// When the current VMM started, seconds since the epoch.
    pub started: u64,
    /// What happens when the VMM crashes or is killed.
    pub on_crash: Action,
    /// What happens when the guest reboots and the VMM did not restart it itself.
    pub on_reboot: Action,
    /// How many times oxend restarted the domain.
    #[serde(default)]
    pub restarts: u32,
}

/// How a request names a domain: by name, or by id (a JSON number, or a string of digits,
/// since names are never all digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DomainRef {
    /// By domain id.
    Id(u32),
    /// By name (or id, when all digits).
    Name(String),
}

impl DomainRef {
    /// Whether `d` is the domain meant.
    pub fn matches(&self, d: &DomainInfo) -> bool {
        match self {
            DomainRef::Id(id) => d.domid == *id,
            DomainRef::Name(n) => d.name == *n || n.parse::<u32>().is_ok_and(|id| id == d.domid),
        }
    }
}

impl fmt::Display for DomainRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainRef::Id(id) => write!(f, "{id}"),
            DomainRef::Name(n) => f.write_str(n),
        }
    }
}

impl From<&str> for DomainRef {
    fn from(s: &str) -> Self {
        DomainRef::Name(s.to_string())
    }
}

impl From<u32> for DomainRef {
    fn from(id: u32) -> Self {
        DomainRef::Id(id)
    }
}

#[cfg(test)]
pub(crate) fn sample() -> DomainInfo {
    DomainInfo {
        domid: 3,
        uuid: None,
        name: "web".into(),
        state: State::Running,
        pid: 4242,
        config: Some("/etc/oxen/web.cfg".into()),
        overrides: vec![],
        memory_mib: 256,
        vcpus: 2,
        started: 1_700_000_000,
        on_crash: Action::Restart,
        on_reboot: Action::Restart,
        restarts: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_round_trip_and_wire_names() {
        let mut d = sample();
        d.uuid = Some("0f1e2d3c-0000-4000-8000-00000000abcd".into());
        d.overrides = vec!["memory=512".into()];
        d.on_crash = Action::CoredumpRestart;
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["state"], "running");
        assert_eq!(v["on_crash"], "coredump-restart");
        assert_eq!(serde_json::from_value::<DomainInfo>(v).unwrap(), d);
        // Optional fields are left out when empty.
        let v = serde_json::to_value(sample()).unwrap();
        assert!(v.get("uuid").is_none() && v.get("overrides").is_none());
    }

    #[test]
    fn newer_fields_and_states_are_tolerated() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["numa_node"] = json!(1);
        v["state"] = json!("migrating");
        v.as_object_mut().unwrap().remove("restarts");
        let d: DomainInfo = serde_json::from_value(v).unwrap();
        assert_eq!((d.state, d.restarts), (State::Unknown, 0));
    }

    #[test]
    fn domain_refs_by_name_or_id() {
        let d = sample();
        let r: DomainRef = serde_json::from_value(json!(3)).unwrap();
        assert_eq!(r, DomainRef::Id(3));
        assert!(r.matches(&d));
        assert!(DomainRef::from("web").matches(&d));
        assert!(DomainRef::from("3").matches(&d), "digits name the id");
        assert!(!DomainRef::from("db").matches(&d));
        assert!(!DomainRef::Id(4).matches(&d));
        assert_eq!(
            serde_json::to_value(DomainRef::from("web")).unwrap(),
            json!("web")
        );
        assert_eq!(DomainRef::Id(7).to_string(), "7");
        assert!(serde_json::from_value::<DomainRef>(json!(-1)).is_err());
    }

    #[test]
    fn actions_and_states() {
        assert!(Action::Restart.restarts() && Action::CoredumpRestart.restarts());
        assert!(!Action::Preserve.restarts() && !Action::Destroy.restarts());
        for s in [
            State::Running,
            State::Paused,
            State::Shutdown,
            State::Crashed,
            State::Dying,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
