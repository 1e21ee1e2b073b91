//! The legacy PC devices a Linux guest needs at boot, each behind the narrow [`PioDevice`]
//! trait on a port-I/O [`bus::IoBus`]: the 16550 serial port, the i8042 reset line, the ACPI
//! PM1 registers, the reset-control register and the pvpanic port.
//!
//! Devices report what the guest asked for (power off, reset, panic) as a [`GuestEvent`] to an
//! [`EventSink`]; the VMM decides what to do with it.
#![deny(missing_docs)]

pub mod bus;
pub mod legacy;
pub mod pci;
pub mod ratelimit;
pub mod serial;
pub mod xen_platform;

use std::sync::Arc;

/// Something the guest asked the platform for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestEvent {
    /// ACPI S5: power off.
    Poweroff,
    /// A platform reset (reset register, keyboard controller or triple fault).
    Reset,
    /// The guest kernel reported a panic.
    Panic,
}

/// Receives guest events; shared by every device and vCPU.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(GuestEvent) + Send + Sync>);

impl EventSink {
    /// A sink calling `f` for every event.
    pub fn new(f: impl Fn(GuestEvent) + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(f))
    }

    /// Reports `event`.
    pub fn send(&self, event: GuestEvent) {
        (self.0)(event)
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// The value of a port write of up to 4 bytes (little-endian; longer writes keep 4).
pub(crate) fn le_value(data: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    let n = data.len().min(4);
    raw[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(raw)
}

/// Answers a port read of up to 4 bytes with the low bytes of `value`.
pub(crate) fn fill_le(data: &mut [u8], value: u32) {
    let n = data.len().min(4);
    data[..n].copy_from_slice(&value.to_le_bytes()[..n]);
}

/// A device on the port-I/O bus. `offset` is relative to the device's base port.
pub trait PioDevice: Send {
    /// Handles a guest read of `data.len()` bytes.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// Handles a guest write.
    fn write(&mut self, offset: u16, data: &[u8]);
}
