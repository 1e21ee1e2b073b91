//! How clients reach Xenstore: the local Unix socket and domains' shared rings.

pub mod ring;
pub mod unix;
