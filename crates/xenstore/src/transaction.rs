//! Transactions: a private overlay of changed nodes over the committed store. Every node a
//! transaction looks at is remembered with the generation count it had; at commit, if any of
//! them changed meanwhile the commit fails with `EAGAIN` (conflict detection by node, as in
//! Xen's C xenstored), otherwise the overlay is applied and the queued watch events fire.

use std::collections::HashMap;

use crate::store::{Node, NodeView, Store};
use crate::watch::Event;
use crate::wire::XsError;

/// One open transaction.
#[derive(Debug, Default)]
pub struct Transaction {
    /// Generation of each committed node (`None`: absent) when first seen.
    accessed: HashMap<String, Option<u64>>,
    /// Committed nodes as first seen: later reads see this copy, not newer commits, so the
    /// transaction works on a consistent snapshot of what it has looked at.
    seen: HashMap<String, Option<Node>>,
    /// Nodes written (`Some`) or deleted (`None`) by the transaction.
    overlay: HashMap<String, Option<Node>>,
    /// Change of each domain's node count caused by the transaction.
    owned_delta: HashMap<u32, isize>,
    /// Watch events to fire once committed.
    pub(crate) events: Vec<Event>,
}

impl Transaction {
    /// A fresh transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct nodes the transaction has changed.
    pub fn changed_nodes(&self) -> usize {
        self.overlay.len()
    }

    /// Applies the transaction to `store`, or fails with `EAGAIN` if a node it used changed.
    /// Returns the watch events to fire.
    pub fn commit(self, store: &mut Store) -> Result<Vec<Event>, XsError> {
        for (p, g) in &self.accessed {
            if store.lookup(p).map(|n| n.generation) != *g {
                return Err(XsError::Again);
            }
        }
        for (p, n) in self.overlay {
            match n {
                Some(n) => store.put(&p, n),
                None => store.delete(&p),
            }
        }
        Ok(self.events)
    }
}

/// A transaction's view of the store: reads see the transaction's own changes first.
#[derive(Debug)]
pub struct TxView<'a> {
    /// The committed store (never changed through this view).
    pub store: &'a Store,
    /// The transaction.
    pub tx: &'a mut Transaction,
}

impl TxView<'_> {
    fn remember(&mut self, path: &str) {
        if !self.tx.accessed.contains_key(path) && !self.tx.overlay.contains_key(path) {
            let n = self.store.lookup(path);
            self.tx
                .accessed
                .insert(path.to_string(), n.map(|n| n.generation));
            self.tx.seen.insert(path.to_string(), n.cloned());
        }
    }

    fn current(&self, path: &str) -> Option<&Node> {
        match self.tx.overlay.get(path).or_else(|| self.tx.seen.get(path)) {
            Some(n) => n.as_ref(),
            None => self.store.lookup(path),
        }
    }

    fn current_owner(&self, path: &str) -> Option<u32> {
        self.current(path).map(|n| n.perms.owner())
    }

    fn shift(&mut self, owner: u32, by: isize) {
        *self.tx.owned_delta.entry(owner).or_default() += by;
    }
}

impl NodeView for TxView<'_> {
    fn get(&mut self, path: &str) -> Option<&Node> {
        self.remember(path);
        self.current(path)
    }

    fn put(&mut self, path: &str, node: Node) {
        self.remember(path);
        let old = self.current_owner(path);
        let new = node.perms.owner();
        if old != Some(new) {
            if let Some(o) = old {
                self.shift(o, -1);
            }
            self.shift(new, 1);
        }
        self.tx.overlay.insert(path.to_string(), Some(node));
    }

    fn delete(&mut self, path: &str) {
        self.remember(path);
        if let Some(o) = self.current_owner(path) {
            self.shift(o, -1);
        }
        self.tx.overlay.insert(path.to_string(), None);
    }

    fn owned_by(&self, domid: u32) -> usize {
        let base = self.store.owned_by(domid) as isize;
        let d = self.tx.owned_delta.get(&domid).copied().unwrap_or(0);
        (base + d).max(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perms::Perms;

    #[test]
    fn overlay_isolation_and_conflict() {
        let mut store = Store::new();
        store.put(
            "/tool",
            Node {
                value: b"a".to_vec(),
                ..Node::new(Perms::owned_by(0))
            },
        );
        let mut tx = Transaction::new();
        {
            let mut v = TxView {
                store: &store,
                tx: &mut tx,
            };
            let mut n = v.get("/tool").unwrap().clone();
            n.value = b"b".to_vec();
            v.put("/tool", n);
            assert_eq!(v.get("/tool").unwrap().value, b"b");
        }
        assert_eq!(store.lookup("/tool").unwrap().value, b"a");
        tx.commit(&mut store).unwrap();
        assert_eq!(store.lookup("/tool").unwrap().value, b"b");

        // A change behind the transaction's back is not seen, and makes it fail.
        let mut tx = Transaction::new();
        TxView {
            store: &store,
            tx: &mut tx,
        }
        .get("/tool");
        let mut n = store.lookup("/tool").unwrap().clone();
        n.value = b"c".to_vec();
        store.put("/tool", n);
        assert_eq!(
            TxView {
                store: &store,
                tx: &mut tx
            }
            .get("/tool")
            .unwrap()
            .value,
            b"b"
        );
        assert_eq!(tx.commit(&mut store).unwrap_err(), XsError::Again);
    }
}
