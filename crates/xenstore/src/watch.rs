//! Watches: a path (or special `@introduceDomain` / `@releaseDomain`) plus a token; each change
//! below the path sends the watcher a `WATCH_EVENT` with the changed path and the token.

use crate::path;
use crate::perms::Perms;

/// The special path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special path fired when a domain is released or dies.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// A registered watch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Watch {
    /// Absolute path watched, or a special `@` name.
    pub path: String,
    /// The client's token, echoed in events.
    pub token: String,
    /// Registered with a relative path: events are reported relative to the caller's home.
    pub relative: bool,
}

/// A change that may fire watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The changed node (or special `@` name).
    pub path: String,
    /// Fire only watches on exactly this path (nodes below a removed subtree's root).
    pub exact: bool,
    /// The node's permissions when it changed; watchers must be able to read it.
    pub perms: Option<Perms>,
    /// Permissions before the change (set_perms), also granting visibility.
    pub old_perms: Option<Perms>,
}

impl Event {
    /// An event on a node with the given permissions.
    pub fn node(path: &str, exact: bool, perms: &Perms) -> Self {
        Event {
            path: path.to_string(),
            exact,
            perms: Some(perms.clone()),
            old_perms: None,
        }
    }

    /// An event on a special path.
    pub fn special(path: &str) -> Self {
        Event {
            path: path.to_string(),
            exact: true,
            perms: None,
            old_perms: None,
        }
    }
}

impl Watch {
    /// Whether this watch fires for `ev`.
    pub fn matches(&self, ev: &Event) -> bool {
        if ev.exact {
            self.path == ev.path
        } else {
            path::is_child(&ev.path, &self.path)
        }
    }

    /// The path to report for an event on `event_path` to this watch's owner (home `domid`).
    pub fn report_path<'a>(&self, event_path: &'a str, domid: u32) -> std::borrow::Cow<'a, str> {
        if self.relative {
            let home = path::domain_path(domid);
            if let Some(rest) = event_path.strip_prefix(&home) {
                if let Some(rel) = rest.strip_prefix('/') {
                    return rel.to_string().into();
                }
            }
        }
        event_path.into()
    }
}

/// A `WATCH_EVENT` payload: `<path>\0<token>\0`.
pub fn event_payload(path: &str, token: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(path.len() + token.len() + 2);
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(token.as_bytes());
    p.push(0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_relative_reports() {
        let w = Watch {
            path: "/local/domain/3/device".into(),
            token: "t".into(),
            relative: true,
        };
        let p = Perms::owned_by(0);
        assert!(w.matches(&Event::node("/local/domain/3/device/vif/0", false, &p)));
        assert!(!w.matches(&Event::node("/local/domain/3/devices", false, &p)));
        assert!(!w.matches(&Event::node("/local/domain/3/device/vif", true, &p)));
        assert!(w.matches(&Event::node("/local/domain/3/device", true, &p)));
        assert_eq!(w.report_path("/local/domain/3/device/vif", 3), "device/vif");
        let root = Watch {
            path: "/".into(),
            token: "t".into(),
            relative: false,
        };
        assert!(root.matches(&Event::node("/x", false, &p)));
        assert_eq!(event_payload("/a", "tok"), b"/a\0tok\0");
    }
}
