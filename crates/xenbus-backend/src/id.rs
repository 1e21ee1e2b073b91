//! Which device a back end serves, where its nodes live, and the xenbus states
//! (xen/include/public/io/xenbus.h).

use std::fmt;
use std::str::FromStr;

/// One split device of one domain: `vbd` 51712 of domain 3, say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId {
    /// The device class: `vbd`, `vif`, ...
    pub kind: String,
    /// The guest domain (the frontend's).
    pub domid: u32,
    /// The device number within the class (`virtual-device` for a vbd, the handle for a vif).
    pub devid: u32,
}

impl DeviceId {
    /// A device of domain `domid`.
    pub fn new(kind: impl Into<String>, domid: u32, devid: u32) -> Self {
        DeviceId {
            kind: kind.into(),
            domid,
            devid,
        }
    }

    /// `/local/domain/0/backend/<kind>/<domid>/<devid>`: the back end runs as dom0.
    pub fn backend_path(&self) -> String {
        format!(
            "/local/domain/0/backend/{}/{}/{}",
            self.kind, self.domid, self.devid
        )
    }

    /// `/local/domain/<domid>/device/<kind>/<devid>`.
    pub fn frontend_path(&self) -> String {
        format!(
            "/local/domain/{}/device/{}/{}",
            self.domid, self.kind, self.devid
        )
    }

    /// The directory Linux's `xenbus_dev_fatal` reports a back end's errors under:
    /// `/local/domain/0/error/backend/<kind>/<domid>/<devid>` (the message is its `error` node).
    pub fn error_dir(&self) -> String {
        format!(
            "/local/domain/0/error/backend/{}/{}/{}",
            self.kind, self.domid, self.devid
        )
    }

    /// The node holding the back end's last fatal error: [`DeviceId::error_dir`]`/error`.
    pub fn error_path(&self) -> String {
        format!("{}/error", self.error_dir())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.domid, self.devid)
    }
}

/// A xenbus driver state, as written in a device's `state` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum XenbusState {
    /// 0: no state (also what a missing node reads as in Linux).
    Unknown = 0,
    /// 1: created by the toolstack, not yet set up.
    Initialising = 1,
    /// 2: the back end has written its features and waits for the frontend's rings.
    InitWait = 2,
    /// 3: the frontend has written its ring references and event channels.
    Initialised = 3,
    /// 4: in service.
    Connected = 4,
    /// 5: shutting down.
    Closing = 5,
    /// 6: shut down.
    Closed = 6,
    /// 7: reconfiguration requested (PCI pass-through only).
    Reconfiguring = 7,
    /// 8: reconfiguration done.
    Reconfigured = 8,
}

impl XenbusState {
    /// The state with this number.
    pub fn from_number(n: u32) -> Option<Self> {
        use XenbusState::*;
        Some(match n {
            0 => Unknown,
            1 => Initialising,
            2 => InitWait,
            3 => Initialised,
            4 => Connected,
            5 => Closing,
            6 => Closed,
            7 => Reconfiguring,
            8 => Reconfigured,
            _ => return None,
        })
    }

    /// Parses a `state` node's value (decimal, surrounding blanks allowed); `None` for anything
    /// else, e.g. a guest's garbage.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(value).ok()?.trim();
        Self::from_number(s.parse().ok()?)
    }

    /// The value written to a `state` node.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Xen's name for it (`xenbus_strstate`).
    pub fn name(self) -> &'static str {
        use XenbusState::*;
        match self {
            Unknown => "Unknown",
            Initialising => "Initialising",
            InitWait => "InitWait",
            Initialised => "Initialised",
            Connected => "Connected",
            Closing => "Closing",
            Closed => "Closed",
            Reconfiguring => "Reconfiguring",
            Reconfigured => "Reconfigured",
        }
    }
}

/// Formats as the node value (`4`), as xenbus writes it.
impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A state node value that is not a xenbus state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a xenbus state: {0:?}")]
pub struct BadState(pub String);

impl FromStr for XenbusState {
    type Err = BadState;
    fn from_str(s: &str) -> Result<Self, BadState> {
        Self::parse(s.as_bytes()).ok_or_else(|| BadState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let id = DeviceId::new("vbd", 3, 51712);
        assert_eq!(id.backend_path(), "/local/domain/0/backend/vbd/3/51712");
        assert_eq!(id.frontend_path(), "/local/domain/3/device/vbd/51712");
        assert_eq!(
            id.error_path(),
            "/local/domain/0/error/backend/vbd/3/51712/error"
        );
        assert_eq!(id.to_string(), "vbd/3/51712");
    }

    #[test]
    fn states_round_trip_and_garbage_is_rejected() {
        for n in 0..=8u32 {
            let s = XenbusState::from_number(n).unwrap();
            assert_eq!(s.number() as u32, n);
            assert_eq!(s.to_string().parse::<XenbusState>().unwrap(), s);
        }
        assert_eq!(XenbusState::parse(b" 4\n"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::Connected.name(), "Connected");
        for bad in [
            &b"9"[..],
            b"-1",
            b"",
            b"four",
            b"4x",
            b"\xff",
            b"99999999999",
        ] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
        assert!("7a".parse::<XenbusState>().is_err());
    }
}
