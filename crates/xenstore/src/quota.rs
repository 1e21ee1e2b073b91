//! Limits applied to unprivileged domains (dom0 and the local socket are exempt), with the
//! defaults of Xen's C xenstored.

use serde::{Deserialize, Serialize};

/// The quota settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Nodes one domain may own (`ENOSPC` past it).
    pub nodes_per_domain: usize,
    /// Accounted size of one node (`ENOSPC` at or past it).
    pub node_size: usize,
    /// Watches one connection may hold (`E2BIG` past it).
    pub watches_per_domain: usize,
    /// Transactions one connection may have open (`ENOSPC` past it).
    pub transactions_per_domain: usize,
    /// Permission entries per node (`ENOSPC` past it).
    pub perms_per_node: usize,
    /// Nodes one transaction may change (`ENOSPC` past it).
    pub nodes_per_transaction: usize,
    /// Requests a domain may have outstanding: a ring is not read further until replies
    /// drain below this.
    pub outstanding_requests: usize,
    /// Bytes of unsent replies and events a connection may accumulate before it is
    /// disconnected (a client that stops reading).
    pub output_bytes: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            nodes_per_domain: 1000,
            node_size: 2048,
            watches_per_domain: 128,
            transactions_per_domain: 10,
            perms_per_node: 5,
            nodes_per_transaction: 1024,
            outstanding_requests: 20,
            output_bytes: 1 << 20,
        }
    }
}

impl Quotas {
    /// Names accepted by `GET_QUOTA`/`SET_QUOTA`, as Xen spells them.
    pub const NAMES: [&'static str; 7] = [
        "nodes",
        "watches",
        "transactions",
        "node-size",
        "permissions",
        "transaction-nodes",
        "outstanding",
    ];

    /// A quota's value by name.
    pub fn get(&self, name: &str) -> Option<usize> {
        Some(match name {
            "nodes" => self.nodes_per_domain,
            "watches" => self.watches_per_domain,
            "transactions" => self.transactions_per_domain,
            "node-size" => self.node_size,
            "permissions" => self.perms_per_node,
            "transaction-nodes" => self.nodes_per_transaction,
            "outstanding" => self.outstanding_requests,
            _ => return None,
        })
    }

    /// Sets a quota by name; `false` if the name is unknown.
    pub fn set(&mut self, name: &str, v: usize) -> bool {
        let slot = match name {
            "nodes" => &mut self.nodes_per_domain,
            "watches" => &mut self.watches_per_domain,
            "transactions" => &mut self.transactions_per_domain,
            "node-size" => &mut self.node_size,
            "permissions" => &mut self.perms_per_node,
            "transaction-nodes" => &mut self.nodes_per_transaction,
            "outstanding" => &mut self.outstanding_requests,
            _ => return false,
        };
        // Xen treats 0 as "no limit".
        *slot = if v == 0 { usize::MAX } else { v };
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let mut q = Quotas::default();
        for n in Quotas::NAMES {
            assert!(q.get(n).is_some());
            assert!(q.set(n, 7));
            assert_eq!(q.get(n), Some(7));
        }
        assert!(!q.set("bogus", 1));
        q.set("nodes", 0);
        assert_eq!(q.nodes_per_domain, usize::MAX);
    }
}
