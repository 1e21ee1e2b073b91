//! The tree operations (read, write, mkdir, rm, directory, permissions), written once over
//! [`NodeView`] so they run the same on the committed store and inside a transaction. Each
//! mutating operation returns the watch events it caused.

use crate::path;
use crate::perms::{Caller, Perms, OWNER, READ, WRITE};
use crate::quota::Quotas;
use crate::store::{Node, NodeView};
use crate::watch::Event;
use crate::wire::{XsError, PAYLOAD_MAX};

/// Limits that apply to this caller (`None` for privileged callers).
fn limits<'q>(caller: &Caller, q: &'q Quotas) -> Option<&'q Quotas> {
    (!caller.privileged).then_some(q)
}

/// Fetches a node the caller may access with `need`.
fn node_for<'v, V: NodeView + ?Sized>(
    v: &'v mut V,
    caller: &Caller,
    p: &str,
    need: u8,
) -> Result<&'v Node, XsError> {
    let n = v.get(p).ok_or(XsError::NoEnt)?;
    n.perms.check(caller, need)?;
    Ok(n)
}

/// READ: the node's value.
pub fn read<V: NodeView + ?Sized>(v: &mut V, caller: &Caller, p: &str) -> Result<Vec<u8>, XsError> {
    Ok(node_for(v, caller, p, READ)?.value.clone())
}

/// DIRECTORY: child names, each nul-terminated.
pub fn directory<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    p: &str,
) -> Result<Vec<u8>, XsError> {
    let n = node_for(v, caller, p, READ)?;
    let mut out = Vec::new();
    for c in &n.children {
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// DIRECTORY_PART: `<gen>\0` then the child names from byte `offset` of the full list that
/// fit in one payload; the part that reaches the end of the list carries an extra empty
/// string, which is how clients know they have everything.
pub fn directory_part<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    p: &str,
    offset: usize,
) -> Result<Vec<u8>, XsError> {
    let n = node_for(v, caller, p, READ)?;
    let mut out = n.generation.to_string().into_bytes();
    out.push(0);
    let mut pos = 0usize;
    let mut complete = true;
    for c in &n.children {
        let len = c.len() + 1;
        if pos >= offset {
            if out.len() + len + 1 > PAYLOAD_MAX {
                complete = false;
                break;
            }
            out.extend_from_slice(c.as_bytes());
            out.push(0);
        }
        pos += len;
    }
    if complete {
        out.push(0);
    }
    Ok(out)
}

/// GET_PERMS.
pub fn get_perms<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    p: &str,
) -> Result<Perms, XsError> {
    Ok(node_for(v, caller, p, READ)?.perms.clone())
}

/// Creates `p` and any missing parents. The nearest existing ancestor must be writable; new
/// nodes inherit its permissions, owned by the creator if unprivileged.
fn create<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    q: &Quotas,
    p: &str,
    value: &[u8],
) -> Result<Vec<Event>, XsError> {
    let mut missing = vec![p];
    let mut anc = path::parent(p);
    let mut perms = loop {
        match v.get(anc) {
            Some(n) => break n.perms.clone(),
            None => {
                missing.push(anc);
                anc = path::parent(anc);
            }
        }
    };
    perms.check(caller, WRITE)?;
    if !caller.privileged {
        perms.set_owner(caller.domid);
    }
    if let Some(q) = limits(caller, q) {
        if v.owned_by(caller.domid) + missing.len() > q.nodes_per_domain {
            return Err(XsError::NoSpc);
        }
        if (Node {
            value: value.to_vec(),
            ..Node::new(perms.clone())
        })
        .size()
            >= q.node_size
        {
            return Err(XsError::NoSpc);
        }
    }
    // Top down, so each parent exists when its child is linked in.
    for (i, np) in missing.iter().enumerate().rev() {
        let parent_path = path::parent(np);
        let mut parent = v.get(parent_path).ok_or(XsError::Io)?.clone();
        parent.children.push(path::basename(np).to_string());
        v.put(parent_path, parent);
        let mut node = Node::new(perms.clone());
        if i == 0 {
            node.value = value.to_vec();
        }
        v.put(np, node);
    }
    // One event for the requested path: it also matches watches on the new parents.
    Ok(vec![Event::node(p, false, &perms)])
}

/// WRITE: sets the value, creating the node and its parents as needed.
pub fn write<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    q: &Quotas,
    p: &str,
    value: &[u8],
) -> Result<Vec<Event>, XsError> {
    let Some(n) = v.get(p) else {
        return create(v, caller, q, p, value);
    };
    n.perms.check(caller, WRITE)?;
    let mut n = n.clone();
    n.value = value.to_vec();
    if let Some(q) = limits(caller, q) {
        if n.size() >= q.node_size {
            return Err(XsError::NoSpc);
        }
    }
    let ev = Event::node(p, false, &n.perms);
    v.put(p, n);
    Ok(vec![ev])
}

/// MKDIR: creates the node if missing; an existing node is left as is.
pub fn mkdir<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    q: &Quotas,
    p: &str,
) -> Result<Vec<Event>, XsError> {
    match v.get(p) {
        Some(n) => {
            n.perms.check(caller, WRITE)?;
            Ok(Vec::new())
        }
        None => create(v, caller, q, p, b""),
    }
}

/// RM: removes the node and everything below it. Removing a missing node is fine if its
/// parent exists; `/` cannot be removed.
pub fn rm<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    p: &str,
) -> Result<Vec<Event>, XsError> {
    if p == "/" {
        return Err(XsError::Inval);
    }
    let parent_path = path::parent(p);
    let Some(n) = v.get(p) else {
        return match v.get(parent_path) {
            Some(_) => Ok(Vec::new()),
            None => Err(XsError::NoEnt),
        };
    };
    n.perms.check(caller, WRITE)?;
    let mut events = Vec::new();
    // Depth-first walk collecting the subtree; the root's event matches watches above it.
    let mut stack = vec![p.to_string()];
    let mut doomed = Vec::new();
    while let Some(cur) = stack.pop() {
        let Some(node) = v.get(&cur) else { continue };
        events.push(Event::node(&cur, cur != p, &node.perms));
        for c in &node.children {
            stack.push(path::join(&cur, c));
        }
        doomed.push(cur);
    }
    for d in &doomed {
        v.delete(d);
    }
    let mut parent = v.get(parent_path).ok_or(XsError::Io)?.clone();
    let name = path::basename(p);
    parent.children.retain(|c| c != name);
    v.put(parent_path, parent);
    Ok(events)
}

/// SET_PERMS on a node: needs write and ownership; only privileged callers may change the
/// owner.
pub fn set_perms<V: NodeView + ?Sized>(
    v: &mut V,
    caller: &Caller,
    q: &Quotas,
    p: &str,
    perms: Perms,
) -> Result<Vec<Event>, XsError> {
    if let Some(q) = limits(caller, q) {
        if perms.entries().len() > q.perms_per_node {
            return Err(XsError::NoSpc);
        }
    }
    let n = node_for(v, caller, p, WRITE | OWNER)?;
    if !caller.privileged && perms.owner() != n.perms.owner() {
        return Err(XsError::Perm);
    }
    let mut n = n.clone();
    let old = std::mem::replace(&mut n.perms, perms);
    let mut ev = Event::node(p, false, &n.perms);
    ev.old_perms = Some(old);
    v.put(p, n);
    Ok(vec![ev])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn dom(id: u32) -> Caller {
        Caller::domain(id, None)
    }

    #[test]
    fn write_read_dir_rm() {
        let mut s = Store::new();
        let q = Quotas::default();
        let ev = write(&mut s, &Caller::DOM0, &q, "/a/b/c", b"v").unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(read(&mut s, &Caller::DOM0, "/a/b/c").unwrap(), b"v");
        assert_eq!(read(&mut s, &Caller::DOM0, "/a/b").unwrap(), b"");
        assert_eq!(directory(&mut s, &Caller::DOM0, "/a").unwrap(), b"b\0");
        mkdir(&mut s, &Caller::DOM0, &q, "/a/b").unwrap();
        assert_eq!(read(&mut s, &Caller::DOM0, "/a/b/c").unwrap(), b"v");
        assert_eq!(rm(&mut s, &Caller::DOM0, "/a/x").unwrap(), vec![]);
        assert_eq!(rm(&mut s, &Caller::DOM0, "/q/x"), Err(XsError::NoEnt));
        let ev = rm(&mut s, &Caller::DOM0, "/a").unwrap();
        assert_eq!(ev.len(), 3);
        assert!(!ev[0].exact && ev[1].exact);
        assert_eq!(read(&mut s, &Caller::DOM0, "/a"), Err(XsError::NoEnt));
        assert_eq!(
            directory(&mut s, &Caller::DOM0, "/").unwrap(),
            b"local\0tool\0"
        );
        assert_eq!(rm(&mut s, &Caller::DOM0, "/"), Err(XsError::Inval));
    }

    #[test]
    fn directory_part_pages() {
        let mut s = Store::new();
        let q = Quotas::default();
        for i in 0..600 {
            write(&mut s, &Caller::DOM0, &q, &format!("/d/entry{i:04}"), b"").unwrap();
        }
        let full = directory(&mut s, &Caller::DOM0, "/d").unwrap();
        assert!(full.len() > PAYLOAD_MAX);
        let mut got = Vec::new();
        let mut gen = None;
        loop {
            let part = directory_part(&mut s, &Caller::DOM0, "/d", got.len()).unwrap();
            assert!(part.len() <= PAYLOAD_MAX);
            let nul = part.iter().position(|&b| b == 0).unwrap();
            let g = part[..nul].to_vec();
            assert!(gen.get_or_insert(g.clone()) == &g);
            let body = &part[nul + 1..];
            // The last part ends with an empty string: two nuls in a row.
            if body.len() <= 1 || body.ends_with(b"\0\0") {
                got.extend_from_slice(&body[..body.len().saturating_sub(1)]);
                break;
            }
            got.extend_from_slice(body);
        }
        assert_eq!(got, full);
    }

    #[test]
    fn permissions_and_ownership() {
        let mut s = Store::new();
        let q = Quotas::default();
        write(&mut s, &Caller::DOM0, &q, "/local/domain/5", b"").unwrap();
        let p = Perms::parse([&b"n5"[..], b"r7"]).unwrap();
        set_perms(&mut s, &Caller::DOM0, &q, "/local/domain/5", p).unwrap();
        // Domain 5 owns its home: it may create below it, and owns what it creates.
        write(&mut s, &dom(5), &q, "/local/domain/5/x", b"1").unwrap();
        let perms = get_perms(&mut s, &dom(5), "/local/domain/5/x").unwrap();
        assert_eq!(perms.to_wire(), b"n5\0r7\0");
        // Domain 7 may read but not write; domain 8 may do neither.
        assert_eq!(read(&mut s, &dom(7), "/local/domain/5/x").unwrap(), b"1");
        assert_eq!(
            write(&mut s, &dom(7), &q, "/local/domain/5/x", b"2"),
            Err(XsError::Acces)
        );
        assert_eq!(
            read(&mut s, &dom(8), "/local/domain/5/x"),
            Err(XsError::Acces)
        );
        assert_eq!(
            write(&mut s, &dom(8), &q, "/tool/x", b""),
            Err(XsError::Acces)
        );
        // An unprivileged owner cannot give the node away.
        let give = Perms::parse([&b"n7"[..]]).unwrap();
        assert_eq!(
            set_perms(&mut s, &dom(5), &q, "/local/domain/5/x", give),
            Err(XsError::Perm)
        );
        // A device model for domain 5 acts as domain 5.
        let dm = Caller::domain(9, Some(5));
        write(&mut s, &dm, &q, "/local/domain/5/x", b"3").unwrap();
    }

    #[test]
    fn quotas_apply_to_guests_only() {
        let mut s = Store::new();
        let q = Quotas {
            nodes_per_domain: 3,
            perms_per_node: 1,
            ..Quotas::default()
        };
        write(&mut s, &Caller::DOM0, &q, "/local/domain/5", b"").unwrap();
        set_perms(
            &mut s,
            &Caller::DOM0,
            &q,
            "/local/domain/5",
            Perms::owned_by(5),
        )
        .unwrap();
        // Domain 5 already owns its home; two more nodes fit.
        write(&mut s, &dom(5), &q, "/local/domain/5/a", b"").unwrap();
        write(&mut s, &dom(5), &q, "/local/domain/5/b", b"").unwrap();
        assert_eq!(
            write(&mut s, &dom(5), &q, "/local/domain/5/c", b""),
            Err(XsError::NoSpc)
        );
        let big = vec![b'x'; 2048];
        assert_eq!(
            write(&mut s, &dom(5), &q, "/local/domain/5/a", &big),
            Err(XsError::NoSpc)
        );
        let two = Perms::parse([&b"n5"[..], b"r1"]).unwrap();
        assert_eq!(
            set_perms(&mut s, &dom(5), &q, "/local/domain/5/a", two),
            Err(XsError::NoSpc)
        );
        write(&mut s, &Caller::DOM0, &q, "/local/domain/5/big", &big).unwrap();
    }
}
