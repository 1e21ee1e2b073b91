//! Small Xenstore helpers over [`Client`]: optional reads and removals (transactions that
//! retry on `EAGAIN` are [`Client::transact`]).

use xenstore::client::{Client, ClientError};
use xenstore::XsError;

use crate::id::XenbusState;

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

/// Removes a node and its children; a missing node is not an error.
pub(crate) fn rm_opt(c: &mut Client, tx: u32, path: &str) -> Result<(), ClientError> {
    match c.rm(tx, path) {
        Err(e) if !is_noent(&e) => Err(e),
        _ => Ok(()),
    }
}
