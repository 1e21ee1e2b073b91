//! Node permissions: an owner entry (whose access letter is the default for everyone else)
//! followed by per-domain entries, each `n`, `r`, `w` or `b` plus a domain id.

use serde::{Deserialize, Serialize};

use crate::wire::XsError;

/// Read access bit.
pub const READ: u8 = 1;
/// Write access bit.
pub const WRITE: u8 = 2;
/// Ownership bit (may change permissions).
pub const OWNER: u8 = 4;

/// One permission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perm {
    /// The domain this entry is about.
    pub domid: u32,
    /// `READ | WRITE` bits.
    pub access: u8,
}

impl Perm {
    fn letter(self) -> char {
        match self.access & (READ | WRITE) {
            0 => 'n',
            READ => 'r',
            WRITE => 'w',
            _ => 'b',
        }
    }
}

/// The permissions of a node; never empty, the first entry names the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perms(Vec<Perm>);

/// Who is asking: a domain id, the domain it serves as device model (set_target), and
/// whether it is privileged (dom0 and the local Unix socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's domain.
    pub domid: u32,
    /// The domain this caller may act for (set_target).
    pub target: Option<u32>,
    /// Control domain: every check passes.
    pub privileged: bool,
}

impl Caller {
    /// The all-powerful control domain.
    pub const DOM0: Caller = Caller {
        domid: 0,
        target: None,
        privileged: true,
    };

    /// An unprivileged domain.
    pub fn domain(domid: u32, target: Option<u32>) -> Self {
        Caller {
            domid,
            target,
            privileged: domid == 0,
        }
    }

    fn is(&self, domid: u32) -> bool {
        self.domid == domid || self.target == Some(domid)
    }
}

impl Perms {
    /// Owned by `owner`, no access for anyone else.
    pub fn owned_by(owner: u32) -> Self {
        Perms(vec![Perm {
            domid: owner,
            access: 0,
        }])
    }

    /// Builds from entries; fails on an empty list.
    pub fn new(entries: Vec<Perm>) -> Result<Self, XsError> {
        if entries.is_empty() {
            return Err(XsError::Inval);
        }
        Ok(Perms(entries))
    }

    /// The entries, owner first.
    pub fn entries(&self) -> &[Perm] {
        &self.0
    }

    /// The owning domain.
    pub fn owner(&self) -> u32 {
        self.0[0].domid
    }

    /// Replaces the owner (used when an unprivileged domain creates a node).
    pub fn set_owner(&mut self, domid: u32) {
        self.0[0].domid = domid;
    }

    /// Parses the `SET_PERMS` strings, e.g. `["b0", "r5"]`.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, XsError> {
        let mut v = Vec::new();
        for item in items {
            let s = std::str::from_utf8(item).map_err(|_| XsError::Inval)?;
            let mut chars = s.chars();
            let access = match chars.next() {
                Some('n') => 0,
                Some('r') => READ,
                Some('w') => WRITE,
                Some('b') => READ | WRITE,
                _ => return Err(XsError::Inval),
            };
            let id = chars.as_str();
            if id.is_empty() || id.len() > 10 || !id.bytes().all(|c| c.is_ascii_digit()) {
                return Err(XsError::Inval);
            }
            let domid: u32 = id.parse().map_err(|_| XsError::Inval)?;
            if domid > 0xffff {
                return Err(XsError::Inval);
            }
            v.push(Perm { domid, access });
        }
        Perms::new(v)
    }

    /// The `GET_PERMS` reply payload: each entry as a nul-terminated string.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 4);
        for p in &self.0 {
            out.push(p.letter() as u8);
            out.extend_from_slice(p.domid.to_string().as_bytes());
            out.push(0);
        }
        out
    }

    /// The access bits `caller` has: owners (and their device models) and privileged callers
    /// get everything; otherwise the first entry naming the caller, else the owner's default.
    pub fn access_for(&self, caller: &Caller) -> u8 {
        if caller.privileged || caller.is(self.owner()) {
            return READ | WRITE | OWNER;
        }
        self.0[1..]
            .iter()
            .find(|p| caller.is(p.domid))
            .map_or(self.0[0].access, |p| p.access)
            & (READ | WRITE)
    }

    /// Checks that `caller` has every bit of `need`.
    pub fn check(&self, caller: &Caller, need: u8) -> Result<(), XsError> {
        if self.access_for(caller) & need == need {
            Ok(())
        } else {
            Err(XsError::Acces)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(items: &[&str]) -> Perms {
        Perms::parse(items.iter().map(|s| s.as_bytes())).unwrap()
    }

    #[test]
    fn parse_format() {
        let perms = p(&["b0", "r5", "w7", "n9"]);
        assert_eq!(perms.to_wire(), b"b0\0r5\0w7\0n9\0");
        assert_eq!(perms.owner(), 0);
        for bad in ["x1", "r", "r-1", "r99999999999", "r70000"] {
            assert!(Perms::parse([bad.as_bytes()]).is_err(), "{bad}");
        }
        assert!(Perms::parse(std::iter::empty()).is_err());
    }

    #[test]
    fn access_rules() {
        let perms = p(&["r3", "b5", "n6"]);
        let d = |id, t| Caller::domain(id, t);
        assert_eq!(perms.access_for(&Caller::DOM0), READ | WRITE | OWNER);
        assert_eq!(perms.access_for(&d(3, None)), READ | WRITE | OWNER);
        assert_eq!(perms.access_for(&d(5, None)), READ | WRITE);
        assert_eq!(perms.access_for(&d(6, None)), 0);
        // Default for strangers comes from the owner entry's letter.
        assert_eq!(perms.access_for(&d(8, None)), READ);
        // A device model targeting domain 3 acts as its owner.
        assert_eq!(perms.access_for(&d(9, Some(3))), READ | WRITE | OWNER);
        assert_eq!(perms.access_for(&d(9, Some(5))), READ | WRITE);
        assert_eq!(perms.check(&d(6, None), READ), Err(XsError::Acces));
    }
}
