//! Hypercall handler tests against synthetic guest memory and a recording platform
//! ([`super::harness`]): every handler and sub-command, with normal and hostile arguments.

mod evtchn_gnttab;
mod hvm;
mod memory;
mod misc;
mod random;
mod sched_vcpu;

use super::harness::Harness;
use crate::abi::errno::Errno;

/// Guest-physical address of the argument structures the tests pass.
const ARG: u64 = 0x10_0000;
/// A second buffer (lists, strings) the arguments point at.
const BUF: u64 = 0x12_0000;

/// The RAX value of a failed hypercall.
fn err(e: Errno) -> i64 {
    -i64::from(e.0)
}

fn harness() -> Harness {
    Harness::default()
}
