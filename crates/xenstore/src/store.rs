//! The node tree: every node keyed by its absolute path, with its value, permissions, ordered
//! child names and a generation count that changes whenever the node (or its child list) does.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::path;
use crate::perms::Perms;

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The value, arbitrary bytes.
    pub value: Vec<u8>,
    /// Who may do what.
    pub perms: Perms,
    /// Child leaf names in creation order.
    pub children: Vec<String>,
    /// Generation count: unique across the store, bumped on every change to this node.
    pub generation: u64,
}

impl Node {
    /// An empty node with the given permissions.
    pub fn new(perms: Perms) -> Self {
        Node {
            value: Vec::new(),
            perms,
            children: Vec::new(),
            generation: 0,
        }
    }

    /// Accounted size, compared with the node-size quota (a header, the permission entries,
    /// the value and the child names, as Xen counts it).
    pub fn size(&self) -> usize {
        16 + self.perms.entries().len() * 8
            + self.value.len()
            + self.children.iter().map(|c| c.len() + 1).sum::<usize>()
    }
}

/// Access to nodes, either the committed store or a transaction's view of it. The tree
/// operations in [`crate::ops`] are written once against this trait.
pub trait NodeView {
    /// The node at `path`, if it exists in this view.
    fn get(&mut self, path: &str) -> Option<&Node>;
    /// Creates or replaces the node at `path`.
    fn put(&mut self, path: &str, node: Node);
    /// Removes the node at `path` (not its children, nor its parent's child entry).
    fn delete(&mut self, path: &str);
    /// How many nodes `domid` owns in this view (for the per-domain node quota).
    fn owned_by(&self, domid: u32) -> usize;
}

/// The committed tree.
#[derive(Debug)]
pub struct Store {
    nodes: HashMap<String, Node>,
    next_generation: u64,
    owned: HashMap<u32, usize>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// A store with the nodes Xen starts with: `/`, `/local`, `/local/domain` and `/tool`,
    /// all owned by dom0 with no access for others.
    pub fn new() -> Self {
        let mut s = Store {
            nodes: HashMap::new(),
            next_generation: 1,
            owned: HashMap::new(),
        };
        s.put("/", Node::new(Perms::owned_by(0)));
        for p in ["/local", "/local/domain", "/tool"] {
            let mut parent = s.nodes[path::parent(p)].clone();
            parent.children.push(path::basename(p).to_string());
            s.put(path::parent(p), parent);
            s.put(p, Node::new(Perms::owned_by(0)));
        }
        s
    }

    /// Builds a store from saved nodes (see [`crate::persist`]).
    pub fn from_nodes(nodes: Vec<(String, Node)>, next_generation: u64) -> Self {
        let mut s = Store {
            nodes: HashMap::new(),
            next_generation,
            owned: HashMap::new(),
        };
        for (p, n) in nodes {
            *s.owned.entry(n.perms.owner()).or_default() += 1;
            s.next_generation = s.next_generation.max(n.generation + 1);
            s.nodes.insert(p, n);
        }
        s
    }

    /// Looks a node up without recording anything.
    pub fn lookup(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Every node, for saving.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the store is empty (never true: `/` always exists).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The next generation count to be handed out.
    pub fn next_generation(&self) -> u64 {
        self.next_generation
    }

    /// Hands out a fresh generation count (also used to stamp transactions).
    pub fn bump_generation(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    fn account(&mut self, owner: u32, add: bool) {
        let c = self.owned.entry(owner).or_default();
        if add {
            *c += 1;
        } else {
            *c = c.saturating_sub(1);
        }
    }
}

impl NodeView for Store {
    fn get(&mut self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    fn put(&mut self, path: &str, mut node: Node) {
        node.generation = self.bump_generation();
        let new_owner = node.perms.owner();
        let old_owner = self.nodes.get(path).map(|n| n.perms.owner());
        match self.nodes.get_mut(path) {
            Some(slot) => *slot = node,
            None => {
                self.nodes.insert(path.to_string(), node);
            }
        }
        if old_owner != Some(new_owner) {
            if let Some(o) = old_owner {
                self.account(o, false);
            }
            self.account(new_owner, true);
        }
    }

    fn delete(&mut self, path: &str) {
        if let Some(n) = self.nodes.remove(path) {
            self.account(n.perms.owner(), false);
        }
    }

    fn owned_by(&self, domid: u32) -> usize {
        self.owned.get(&domid).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_tree_and_generations() {
        let mut s = Store::new();
        assert_eq!(s.lookup("/").unwrap().children, vec!["local", "tool"]);
        assert_eq!(s.lookup("/local").unwrap().children, vec!["domain"]);
        let g1 = s.get("/tool").unwrap().generation;
        let n = s.get("/tool").unwrap().clone();
        s.put("/tool", n);
        assert!(s.get("/tool").unwrap().generation > g1);
        assert_eq!(s.owned_by(0), 4);
        s.delete("/tool");
        assert_eq!(s.owned_by(0), 3);
    }
}
