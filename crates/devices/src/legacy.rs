//! Small platform devices: the i8042 reset line, ACPI PM1 registers (poweroff), the 0xcf9 reset
//! register and the pvpanic port. Each turns a guest request into a [`GuestEvent`].

use vm_superio::{I8042Device, Trigger};

use crate::{warn_ratelimited, EventSink, GuestEvent, PioDevice};

/// Base port of the i8042 (data at +0, command/status at +4).
pub const I8042_PORT: u16 = 0x60;

/// Sends one event when triggered.
#[derive(Debug)]
pub struct EventTrigger {
    sink: EventSink,
    event: GuestEvent,
}

impl Trigger for EventTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.sink.send(self.event);
        Ok(())
    }
}

/// The keyboard controller, kept only for its reset command (0xfe to port 0x64).
#[derive(Debug)]
pub struct I8042(I8042Device<EventTrigger>);

impl I8042 {
    /// An i8042 whose reset command sends [`GuestEvent::Reset`].
    pub fn new(sink: EventSink) -> Self {
        I8042(I8042Device::new(EventTrigger {
            sink,
            event: GuestEvent::Reset,
        }))
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.0.read(off);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Some(&v), Ok(off)) = (data.first(), u8::try_from(offset)) {
            let _ = self.0.write(off, v);
        }
    }
}

/// ACPI PM1a event (status, enable) and control registers.
#[derive(Debug)]
pub struct AcpiPm {
    sink: EventSink,
    s5_type: u16,
    enable: u16,
    control: u16,
}

/// Length of the PM1a register block (event 4 bytes, then control 2 bytes).
pub const ACPI_PM_LEN: u16 = 6;
const PM1_ENABLE: u16 = 2;
const PM1_CONTROL: u16 = 4;
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;

impl AcpiPm {
    /// PM registers; `s5_type` is the SLP_TYP that `\_S5` advertises.
    pub fn new(sink: EventSink, s5_type: u8) -> Self {
        AcpiPm {
            sink,
            s5_type: u16::from(s5_type),
            enable: 0,
            control: SCI_EN,
        }
    }

    fn sleep_type(control: u16) -> u16 {
        (control >> 10) & 7
    }
}

fn read_le(reg: u16, offset_in_reg: u16, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        let shift = (offset_in_reg as usize + i) * 8;
        *b = if shift < 16 { (reg >> shift) as u8 } else { 0 };
    }
}

fn write_le(reg: &mut u16, offset_in_reg: u16, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        let shift = (offset_in_reg as usize + i) * 8;
        if shift < 16 {
            *reg = (*reg & !(0xff << shift)) | (u16::from(*b) << shift);
        }
    }
}

impl PioDevice for AcpiPm {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match offset {
            0..=1 => data.fill(0), // No status bits are ever set.
            2..=3 => read_le(self.enable, offset - PM1_ENABLE, data),
            4..=5 => read_le(self.control, offset - PM1_CONTROL, data),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        tracing::debug!(offset, ?data, "ACPI PM1 write");
        match offset {
            0..=1 => {} // Write-one-to-clear status: nothing to clear.
            2..=3 => write_le(&mut self.enable, offset - PM1_ENABLE, data),
            4..=5 => {
                write_le(&mut self.control, offset - PM1_CONTROL, data);
                if self.control & SLP_EN != 0 {
                    let typ = Self::sleep_type(self.control);
                    self.control &= !SLP_EN;
                    if typ == self.s5_type {
                        self.sink.send(GuestEvent::Poweroff);
                    } else {
                        warn_ratelimited!(
                            5,
                            sleep_type = typ,
                            "guest asked for an ACPI sleep state that is not offered"
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

/// The PC reset-control register at 0xcf9: bit 2 resets the machine.
#[derive(Debug)]
pub struct ResetControl {
    sink: EventSink,
    value: u8,
}

impl ResetControl {
    /// A reset register sending [`GuestEvent::Reset`].
    pub fn new(sink: EventSink) -> Self {
        ResetControl { sink, value: 0 }
    }
}

impl PioDevice for ResetControl {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = self.value;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        const RESET_CPU: u8 = 1 << 2;
        if let Some(&v) = data.first() {
            self.value = v & !RESET_CPU;
            if v & RESET_CPU != 0 {
                self.sink.send(GuestEvent::Reset);
            }
        }
    }
}

/// The pvpanic I/O port: reads give the supported events, a write of bit 0 reports a panic.
#[derive(Debug)]
pub struct PvPanic {
    sink: EventSink,
}

const PVPANIC_PANICKED: u8 = 1;
const PVPANIC_CRASH_LOADED: u8 = 2;

impl PvPanic {
    /// A pvpanic port sending [`GuestEvent::Panic`].
    pub fn new(sink: EventSink) -> Self {
        PvPanic { sink }
    }
}

impl PioDevice for PvPanic {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
        }
    }

    fn write(&mut self, _offset: u16, data: &[u8]) {
        match data.first() {
            Some(v) if v & PVPANIC_PANICKED != 0 => self.sink.send(GuestEvent::Panic),
            Some(v) if v & PVPANIC_CRASH_LOADED != 0 => {
                tracing::info!("guest is loading a crash kernel")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (EventSink, Arc<Mutex<Vec<GuestEvent>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (EventSink::new(move |e| l.lock().unwrap().push(e)), log)
    }

    #[test]
    fn i8042_reset_command() {
        let (sink, log) = recorder();
        let mut k = I8042::new(sink);
        k.write(4, &[0xfe]);
        assert_eq!(*log.lock().unwrap(), vec![GuestEvent::Reset]);
        let mut d = [0xffu8];
        k.read(4, &mut d);
        assert_eq!(d[0] & 1, 0, "output buffer empty");
    }

    #[test]
    fn pm1_s5_powers_off_and_registers_read_back() {
        let (sink, log) = recorder();
        let mut pm = AcpiPm::new(sink, 5);
        let mut d = [0u8; 2];
        pm.read(PM1_CONTROL, &mut d);
        assert_eq!(
            u16::from_le_bytes(d) & SCI_EN,
            SCI_EN,
            "always in ACPI mode"
        );
        pm.write(PM1_ENABLE, &0x0120u16.to_le_bytes());
        pm.read(PM1_ENABLE, &mut d);
        assert_eq!(u16::from_le_bytes(d), 0x0120);
        // S3 is not offered: no event.
        pm.write(PM1_CONTROL, &(SLP_EN | (3 << 10) | SCI_EN).to_le_bytes());
        assert!(log.lock().unwrap().is_empty());
        // Byte-wise write of S5 with SLP_EN in the high byte.
        pm.write(PM1_CONTROL + 1, &[((SLP_EN | (5 << 10)) >> 8) as u8]);
        assert_eq!(*log.lock().unwrap(), vec![GuestEvent::Poweroff]);
        pm.read(PM1_CONTROL, &mut d);
        assert_eq!(u16::from_le_bytes(d) & SLP_EN, 0, "SLP_EN reads back as 0");
        let mut wide = [0u8; 1];
        pm.read(9, &mut wide);
        assert_eq!(wide, [0xff]);
    }

    #[test]
    fn reset_register_bit_2() {
        let (sink, log) = recorder();
        let mut r = ResetControl::new(sink);
        r.write(0, &[0x2]);
        assert!(log.lock().unwrap().is_empty());
        r.write(0, &[0x6]);
        assert_eq!(*log.lock().unwrap(), vec![GuestEvent::Reset]);
        let mut d = [0u8];
        r.read(0, &mut d);
        assert_eq!(d, [0x2]);
    }

    #[test]
    fn pvpanic_reports_panic_only_for_panicked_bit() {
        let (sink, log) = recorder();
        let mut p = PvPanic::new(sink);
        let mut d = [0u8];
        p.read(0, &mut d);
        assert_eq!(d, [3]);
        p.write(0, &[PVPANIC_CRASH_LOADED]);
        p.write(0, &[]);
        assert!(log.lock().unwrap().is_empty());
        p.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(*log.lock().unwrap(), vec![GuestEvent::Panic]);
    }
}
