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

/// A device on the port-I/O bus. `offset` is relative to the device's base port.
pub trait PioDevice: Send {
    /// Handles a guest read of `data.len()` bytes.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// Handles a guest write.
    fn write(&mut self, offset: u16, data: &[u8]);
}
