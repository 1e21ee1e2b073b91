//! The data path of Oxen's PV network backend: Xen's netif protocol
//! (xen/include/public/io/netif.h) as Linux's `xen-netfront` speaks it, between a guest's
//! tx/rx rings and frames in a Linux tap's `IFF_VNET_HDR` format.
//!
//! This crate knows nothing of Xenstore, event channels or taps; the caller wires those:
//!
//! 1. From the frontend's Xenstore keys, map `tx-ring-ref`/`rx-ring-ref` to guest pages
//!    (`xen_ring::GuestRingPages`) and build a [`TxQueue`] and an [`RxQueue`] with the
//!    domain's grant table and the frontend's [`RxFeatures`] (`request-rx-copy` must be 1:
//!    this backend only copies). Set the tap's offloads to [`RxFeatures::tap_offloads`].
//! 2. When the tx event channel fires: [`TxQueue::process_tx`] hands each packet to a sink;
//!    write [`TxPacket::virtio_net_hdr`] followed by [`TxPacket::data`] to the tap; raise the
//!    channel if [`TxOutcome::notify`].
//! 3. For each frame read from the tap: [`RxQueue::deliver_rx`]; on [`RxOutcome::NoSlots`]
//!    keep the frame and stop reading the tap until the rx event channel fires.
//! 4. Any `Err(NetifError)` is a protocol violation: disconnect that vif.
//!
//! Everything read from the rings is copied before use and checked; a malformed packet is
//! answered with `NETIF_RSP_ERROR` and counted in the metrics, never a panic.
#![deny(missing_docs)]

pub mod abi;
mod chain;
mod metrics;
pub mod offload;
mod packet;
mod rx;
mod tx;

#[cfg(test)]
mod tests;

pub use metrics::{NetifError, RxDrop, RxMetrics, TxDrop, TxMetrics};
pub use offload::{OffloadError, VirtioNetHdr};
pub use packet::{Gso, GsoKind, TxPacket};
pub use rx::{RxFeatures, RxOutcome, RxQueue, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};
pub use tx::{TxOutcome, TxQueue};
