//! Small Xenstore helpers over [`Client`]: optional reads and transactions that retry on
//! `EAGAIN` (another writer committed first).

use xenstore::client::{Client, ClientError};
use xenstore::XsError;

use crate::id::XenbusState;

/// Attempts before a transaction that keeps conflicting is given up.
const TX_ATTEMPTS: usize = 16;

/// Whether an error says the node does not exist.
pub(crate) fn is_noent(e: &ClientError) -> bool {
    matches!(e, ClientError::Xs(XsError::NoEnt))
}

/// A node's value, `None` if it does not exist.
pub(crate) fn read_opt(
    c: &mut Client,
    tx: u32,
    path: &str,
) -> Result<Option<Vec<u8>>, ClientError> {
    match c.read(tx, path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_noent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a `state` node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeState {
    /// No such node.
    Missing,
    /// Not a xenbus state.
    Garbage,
    /// A state.
    State(XenbusState),
}

/// Reads a `state` node.
pub(crate) fn read_state(c: &mut Client, tx: u32, path: &str) -> Result<NodeState, ClientError> {
    Ok(match read_opt(c, tx, path)? {
        None => NodeState::Missing,
        Some(v) => XenbusState::parse(&v).map_or(NodeState::Garbage, NodeState::State),
    })
}

/// Runs `f` in a transaction and commits it, starting over when the commit conflicts.
pub(crate) fn transact<T>(
    c: &mut Client,
    mut f: impl FnMut(&mut Client, u32) -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    for _ in 0..TX_ATTEMPTS {
        let tx = c.transaction_start()?;
        let v = match f(c, tx) {
            Ok(v) => v,
            Err(e) => {
                // The error is what matters; an abort failing too adds nothing.
                let _ = c.transaction_end(tx, false);
                return Err(e);
            }
        };
        match c.transaction_end(tx, true) {
            Ok(()) => return Ok(v),
            Err(ClientError::Xs(XsError::Again)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ClientError::Xs(XsError::Again))
}

/// Removes a node and its children; a missing node is not an error.
pub(crate) fn rm_opt(c: &mut Client, tx: u32, path: &str) -> Result<(), ClientError> {
    match c.rm(tx, path) {
        Err(e) if !is_noent(&e) => Err(e),
        _ => Ok(()),
    }
}
