//! The x86_64 platform a guest sees at boot: where things live in guest-physical memory, the
//! e820 map, CPUID, the registers of a vCPU entering Linux's 64-bit boot protocol, and the ACPI
//! tables that describe CPUs, interrupt controllers and power control.
//!
//! Nothing here runs a guest; the `vmm` crate calls these to set one up.
#![deny(missing_docs)]

pub mod acpi;
pub mod cpuid;
pub mod layout;
pub mod regs;

/// Errors while setting up the guest platform.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A KVM ioctl failed.
    #[error("{what}: {source}")]
    Kvm {
        /// Which step failed.
        what: &'static str,
        /// The KVM error.
        source: kvm_ioctls::Error,
    },
    /// Writing a boot structure into guest memory failed.
    #[error("writing {what} into guest memory at {addr:#x}: {source}")]
    GuestMemory {
        /// Which structure.
        what: &'static str,
        /// Guest-physical address.
        addr: u64,
        /// The memory error.
        source: vm_memory::GuestMemoryError,
    },
    /// The CPUID table could not be built.
    #[error("CPUID: {0}")]
    Cpuid(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}
