//! The Xen HVM guest interface, as a library a KVM-based VMM drives.
//!
//! * [`abi`]: the constants and `#[repr(C)]` argument structures of Xen's public headers
//!   (64-bit x86 guest layout), each checked against the header's size.
//! * [`evtchn`]: a domain's event channels (2-level ABI), with the VMM's device backends as
//!   the peer domain of interdomain channels.
//! * [`gnttab`]: the guest's grant table living in guest memory, and the backend side that
//!   maps and copies granted pages with Xen's access checks.
//!
//! Nothing here talks to KVM: deliveries leave through [`evtchn::Notifier`] and guest memory is
//! reached through `vm-memory`, so every rule is unit-tested without a VM.
#![deny(missing_docs)]

pub mod abi;
pub mod evtchn;
pub mod gnttab;
pub mod hypercall;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod prng;
