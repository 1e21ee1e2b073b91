//! Xen's public ABI (`xen/include/public/`), for 64-bit x86 HVM guests.
//!
//! One module per header. Argument structures are `#[repr(C)]` with the header's field order
//! and implicit padding made explicit, so that every byte is initialised and the structures can
//! be read from and written to guest memory as [`vm_memory::ByteValued`].

pub mod cpuid;
pub mod errno;
pub mod evtchn;
pub mod features;
pub mod gnttab;
pub mod hvm;
pub mod hypercall;
pub mod memory;
pub mod sched;
pub mod shared_info;
pub mod vcpu;
pub mod version;

/// A domain identifier (`domid_t`).
pub type DomId = u16;

/// "The calling domain" in any domain argument.
pub const DOMID_SELF: DomId = 0x7ff0;
/// First domain id reserved for special meanings; real domains are below it.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// The I/O pseudo-domain.
pub const DOMID_IO: DomId = 0x7ff1;
/// Xen itself.
pub const DOMID_XEN: DomId = 0x7ff2;
/// Copy-on-write pseudo-domain.
pub const DOMID_COW: DomId = 0x7ff3;
/// An invalid domain id.
pub const DOMID_INVALID: DomId = 0x7ff4;
/// Any domain.
pub const DOMID_ANY: DomId = 0x7ff5;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7fff;

/// Guest page size on x86 (`XEN_PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Marks a struct as plain old data that vm-memory may copy to and from guest memory.
macro_rules! byte_valued {
    ($($t:ty),* $(,)?) => {
        $(
            // SAFETY: the type is `#[repr(C)]`, made only of integers (or arrays of them) with
            // every padding byte spelled out as a field, so any bit pattern is a valid value and
            // no byte is uninitialised.
            unsafe impl vm_memory::ByteValued for $t {}
        )*
    };
}
pub(crate) use byte_valued;

/// Asserts in a test that each listed type has the size the C header gives it.
#[cfg(test)]
macro_rules! assert_sizes {
    ($($t:ty => $n:expr),* $(,)?) => {
        $( assert_eq!(std::mem::size_of::<$t>(), $n, stringify!($t)); )*
    };
}
#[cfg(test)]
pub(crate) use assert_sizes;
