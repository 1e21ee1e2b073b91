//! Node paths: validation, relative paths and the per-domain home `/local/domain/N`.

use crate::wire::{XsError, REL_PATH_MAX};

/// Domain 0's id, the privileged control domain.
pub const DOM0: u32 = 0;
/// First domain id reserved by Xen for special meanings (`DOMID_FIRST_RESERVED`).
pub const DOMID_FIRST_RESERVED: u32 = 0x7ff0;

/// The home directory of a domain, the base of its relative paths.
pub fn domain_path(domid: u32) -> String {
    format!("/local/domain/{domid}")
}

/// Whether `c` may appear in a node path.
fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'/' | b'_' | b'@')
}

/// Turns a request path into an absolute, validated node path. Paths not starting with `/`
/// are relative to the caller's home `/local/domain/<domid>`.
pub fn canonicalize(raw: &str, domid: u32) -> Result<String, XsError> {
    // Special watch names are not nodes.
    if raw.starts_with('@') {
        return Err(XsError::Inval);
    }
    let abs = if raw.starts_with('/') {
        raw.to_string()
    } else {
        if raw.is_empty() {
            return Err(XsError::Inval);
        }
        format!("/local/domain/{domid}/{raw}")
    };
    validate(&abs)?;
    Ok(abs)
}

/// Checks an absolute node path against Xenstore's rules: leading `/`, no trailing or doubled
/// `/`, only `[A-Za-z0-9-/_@]`, and at most [`REL_PATH_MAX`] bytes past a domain's home.
pub fn validate(p: &str) -> Result<(), XsError> {
    let b = p.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(XsError::Inval);
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err(XsError::Inval);
    }
    if p.contains("//") || !b.iter().all(|&c| valid_char(c)) {
        return Err(XsError::Inval);
    }
    if p.len() > home_prefix_len(p) + REL_PATH_MAX {
        return Err(XsError::Inval);
    }
    Ok(())
}

/// Length of a leading `/local/domain/<N>/` (N of at most 5 digits), else 0.
fn home_prefix_len(p: &str) -> usize {
    const PFX: &str = "/local/domain/";
    let Some(rest) = p.strip_prefix(PFX) else {
        return 0;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 5 || rest.as_bytes().get(digits) != Some(&b'/') {
        return 0;
    }
    PFX.len() + digits + 1
}

/// The parent of an absolute path (`/` is its own parent).
pub fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// The last component of an absolute path.
pub fn basename(p: &str) -> &str {
    match p.rfind('/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// Whether `child` is `parent` or lies below it (every path is below `/`).
pub fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" || child == parent {
        return true;
    }
    child.len() > parent.len()
        && child.starts_with(parent)
        && child.as_bytes()[parent.len()] == b'/'
}

/// The absolute path `child` below `dir`.
pub fn join(dir: &str, child: &str) -> String {
    if dir == "/" {
        format!("/{child}")
    } else {
        format!("{dir}/{child}")
    }
}

/// Parses a domain id as the protocol writes it (decimal), rejecting junk.
pub fn parse_domid(s: &str) -> Result<u32, XsError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(XsError::Inval);
    }
    let v: u32 = s.parse().map_err(|_| XsError::Inval)?;
    if v > 0xffff {
        return Err(XsError::Inval);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_invalid() {
        assert_eq!(canonicalize("/a/b", 3).unwrap(), "/a/b");
        assert_eq!(canonicalize("x/y", 3).unwrap(), "/local/domain/3/x/y");
        assert_eq!(canonicalize("/", 0).unwrap(), "/");
        for bad in ["", "@x", "/a/", "/a//b", "a b", "/a\u{e9}", "/a.b", "/a b"] {
            assert_eq!(canonicalize(bad, 0), Err(XsError::Inval), "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(REL_PATH_MAX));
        assert_eq!(validate(&long), Err(XsError::Inval));
        let home = format!("/local/domain/5/{}", "a".repeat(REL_PATH_MAX));
        assert_eq!(validate(&home), Ok(()));
    }

    #[test]
    fn relations() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(basename("/a/b"), "b");
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(is_child("/a", "/"));
        assert!(!is_child("/ab", "/a"));
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(parse_domid("12").unwrap(), 12);
        assert!(parse_domid("x").is_err() && parse_domid("70000").is_err());
    }
}
