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
    /// Directory levels below `path` that still match (`None`: any). For special watches,
    /// depth 1 reports `@name/<domid>`.
    #[serde(default)]
    pub depth: Option<u32>,
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
    /// The domain a special event is about.
    pub domid: Option<u32>,
}

impl Event {
    /// An event on a node with the given permissions.
    pub fn node(path: &str, exact: bool, perms: &Perms) -> Self {
        Event {
            path: path.to_string(),
            exact,
            perms: Some(perms.clone()),
            old_perms: None,
            domid: None,
        }
    }

    /// An event on a special path, about domain `domid`.
    pub fn special(path: &str, domid: u32) -> Self {
        Event {
            path: path.to_string(),
            exact: true,
            perms: None,
            old_perms: None,
            domid: Some(domid),
        }
    }
}

/// How many levels `child` lies below `parent` (which it must be a child of).
fn levels_below(child: &str, parent: &str) -> u32 {
    if child == parent {
        return 0;
    }
    let rest = if parent == "/" {
        child
    } else {
        &child[parent.len()..]
    };
    rest.bytes().filter(|&b| b == b'/').count() as u32
}

impl Watch {
    /// Whether this watch fires for `ev`.
    pub fn matches(&self, ev: &Event) -> bool {
        if ev.path.starts_with('@') {
            // `@releaseDomain/<domid>` watches one domain only.
            return match self.path.split_once('/') {
                Some((base, d)) => {
                    base == ev.path && ev.domid.map(|x| x.to_string()).as_deref() == Some(d)
                }
                None => self.path == ev.path,
            };
        }
        let hit = if ev.exact {
            self.path == ev.path
        } else {
            path::is_child(&ev.path, &self.path)
        };
        hit && self
            .depth
            .is_none_or(|d| levels_below(&ev.path, &self.path) <= d)
    }

    /// The path to report for `ev` to this watch's owner (home `domid`).
    pub fn report<'a>(&self, ev: &'a Event, domid: u32) -> std::borrow::Cow<'a, str> {
        // The reported path is always at or below the watched one: `@name/<domid>` for
        // depth-1 and per-domain special watches.
        if let (true, Some(d)) = (ev.path.starts_with('@'), ev.domid) {
            if self.depth == Some(1) || self.path.contains('/') {
                return format!("{}/{d}", ev.path).into();
            }
        }
        self.report_path(&ev.path, domid)
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
            depth: None,
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
            depth: None,
        };
        assert!(root.matches(&Event::node("/x", false, &p)));
        assert_eq!(event_payload("/a", "tok"), b"/a\0tok\0");
        let shallow = Watch {
            depth: Some(1),
            ..root.clone()
        };
        assert!(shallow.matches(&Event::node("/x", false, &p)));
        assert!(!shallow.matches(&Event::node("/x/y", false, &p)));
        let one = Watch {
            path: "@releaseDomain/7".into(),
            ..root.clone()
        };
        assert!(one.matches(&Event::special(RELEASE_DOMAIN, 7)));
        assert!(!one.matches(&Event::special(RELEASE_DOMAIN, 8)));
        let ids = Watch {
            path: RELEASE_DOMAIN.into(),
            depth: Some(1),
            ..root
        };
        let ev = Event::special(RELEASE_DOMAIN, 8);
        assert_eq!(ids.report(&ev, 0), "@releaseDomain/8");
    }
}
