//! PCI configuration space through the legacy type-1 mechanism (ports 0xcf8 address, 0xcfc
//! data) on bus 0, and the configuration header every function shares: identity registers,
//! the command register, and BARs with the sizing protocol (write all ones, read the size mask).

use std::sync::{Arc, Mutex};

use crate::bus::SharedDevice;
use crate::{fill_le, le_value, PioDevice};

/// Port of the configuration address register.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// Port of the configuration data register.
pub const CONFIG_DATA: u16 = 0xcfc;

/// One PCI function's configuration space.
pub trait PciFunction: Send {
    /// Reads the 32-bit register at `reg` (a multiple of 4 below 256).
    fn read_config(&self, reg: u8) -> u32;
    /// Writes the 32-bit register at `reg` with the byte lanes `mask` selects.
    fn write_config(&mut self, reg: u8, value: u32, mask: u32);
}

/// A BAR a function decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    /// Port I/O: base and size (a power of two, at least 4).
    Io(u16, u16),
    /// 32-bit memory: base, size (a power of two, at least 16) and whether prefetchable.
    Mem32(u32, u32, bool),
}

impl Bar {
    fn size(self) -> u32 {
        match self {
            Bar::Io(_, s) => u32::from(s),
            Bar::Mem32(_, s, _) => s,
        }
    }

    fn flags(self) -> u32 {
        match self {
            Bar::Io(..) => 1,
            Bar::Mem32(_, _, pf) => u32::from(pf) << 3,
        }
    }
}

/// A type-0 header with fixed identity and up to six BARs placed by the VMM, as firmware
/// would. The guest may move nothing but the command register: a BAR written with a new base
/// keeps its firmware base (the VMM's memory slots sit there), only the sizing reads change.
#[derive(Debug, Clone)]
pub struct Header {
    regs: [u32; 16],
    bars: [Option<Bar>; 6],
    sizing: [bool; 6],
}

/// Identity of a function.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class, subclass and programming interface (24 bits).
    pub class: u32,
    /// Revision.
    pub revision: u8,
    /// Subsystem vendor and subsystem ID.
    pub subsystem: (u16, u16),
}

impl Header {
    /// A header for `id` with `bars`.
    pub fn new(id: Identity, bars: [Option<Bar>; 6]) -> Header {
        let mut regs = [0u32; 16];
        regs[0] = u32::from(id.vendor) | (u32::from(id.device) << 16);
        regs[2] = u32::from(id.revision) | (id.class << 8);
        regs[11] = u32::from(id.subsystem.0) | (u32::from(id.subsystem.1) << 16);
        Header {
            regs,
            bars,
            sizing: [false; 6],
        }
    }

    /// The BARs.
    pub fn bars(&self) -> &[Option<Bar>; 6] {
        &self.bars
    }

    /// The command register (bit 0: I/O decode, bit 1: memory decode).
    pub fn command(&self) -> u16 {
        self.regs[1] as u16
    }
}

impl PciFunction for Header {
    fn read_config(&self, reg: u8) -> u32 {
        let idx = usize::from(reg / 4);
        match idx {
            4..=9 => {
                let b = idx - 4;
                match self.bars[b] {
                    Some(bar) if self.sizing[b] => !(bar.size() - 1) | bar.flags(),
                    Some(Bar::Io(base, _)) => u32::from(base) | 1,
                    Some(Bar::Mem32(base, _, pf)) => base | (u32::from(pf) << 3),
                    None => 0,
                }
            }
            0..=15 => self.regs[idx],
            // Capabilities and device-specific space: none.
            _ => 0,
        }
    }

    fn write_config(&mut self, reg: u8, value: u32, mask: u32) {
        let idx = usize::from(reg / 4);
        match idx {
            // Command: I/O, memory, bus master, and interrupt disable are kept; status bits
            // are write-one-to-clear and none is ever set.
            1 => {
                let writable = 0x0407 & mask;
                self.regs[1] = (self.regs[1] & !writable) | (value & writable);
            }
            4..=9 => {
                let b = idx - 4;
                if self.bars[b].is_some() && mask == u32::MAX {
                    self.sizing[b] = value == u32::MAX;
                }
            }
            // Cache line size and latency timer: accepted, meaningless here.
            3 => {
                let writable = 0x0000_ffff & mask;
                self.regs[3] = (self.regs[3] & !writable) | (value & writable);
            }
            // Interrupt line: the guest's note to itself.
            15 => {
                let writable = 0xff & mask;
                self.regs[15] = (self.regs[15] & !writable) | (value & writable);
            }
            _ => {}
        }
    }
}

/// The host bridge at 00:00.0 (Linux checks for one before trusting type-1 access).
pub fn host_bridge() -> Header {
    Header::new(
        Identity {
            // Intel's 440FX host bridge id, which every OS recognises.
            vendor: 0x8086,
            device: 0x1237,
            class: 0x06_00_00,
            revision: 2,
            subsystem: (0, 0),
        },
        [None; 6],
    )
}

/// Bus 0's configuration space behind ports 0xcf8..0xcff.
#[derive(Default)]
pub struct PciConfigIo {
    address: u32,
    /// `(device number, function)`; function 0 of each device only.
    functions: Vec<(u8, Box<dyn PciFunction>)>,
}

impl std::fmt::Debug for PciConfigIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots: Vec<u8> = self.functions.iter().map(|(d, _)| *d).collect();
        f.debug_struct("PciConfigIo")
            .field("address", &self.address)
            .field("slots", &slots)
            .finish()
    }
}

impl PciConfigIo {
    /// Places `f` as function 0 of device `slot` (0..32) on bus 0.
    pub fn add(&mut self, slot: u8, f: Box<dyn PciFunction>) {
        self.functions.push((slot & 0x1f, f));
    }

    /// The function the address register selects, and the register.
    fn selected(&mut self) -> Option<(&mut Box<dyn PciFunction>, u8)> {
        let a = self.address;
        let enabled = a & 0x8000_0000 != 0;
        let bus = (a >> 16) & 0xff;
        let slot = ((a >> 11) & 0x1f) as u8;
        let func = (a >> 8) & 0x7;
        if !enabled || bus != 0 || func != 0 {
            return None;
        }
        let reg = (a & 0xfc) as u8;
        self.functions
            .iter_mut()
            .find(|(s, _)| *s == slot)
            .map(|(_, f)| (f, reg))
    }
}

/// One of the two port ranges of [`PciConfigIo`] (0xcf9 between them is the reset register).
struct PciPort {
    io: Arc<Mutex<PciConfigIo>>,
    base: u16,
}

impl PioDevice for PciPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        io.read(self.base + offset, data);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        io.write(self.base + offset, data);
    }
}

impl PciConfigIo {
    /// The `(port, length, device)` ranges to put on the I/O bus: the address register at
    /// 0xcf8 (32-bit accesses) and the data register at 0xcfc..0xcff, leaving 0xcf9 to the
    /// reset control register as on a PC.
    pub fn into_ports(self) -> [(u16, u16, SharedDevice); 2] {
        let io = Arc::new(Mutex::new(self));
        [
            (
                CONFIG_ADDRESS,
                1,
                Arc::new(Mutex::new(PciPort {
                    io: io.clone(),
                    base: 0,
                })),
            ),
            (
                CONFIG_DATA,
                4,
                Arc::new(Mutex::new(PciPort { io, base: 4 })),
            ),
        ]
    }
}

impl PioDevice for PciConfigIo {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = match offset {
            0..=3 => self.address >> (8 * offset),
            4..=7 => match self.selected() {
                Some((f, reg)) => f.read_config(reg) >> (8 * (offset - 4)),
                // No device: all ones, which is how a guest learns the slot is empty.
                None => u32::MAX,
            },
            _ => u32::MAX,
        };
        fill_le(data, value);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let value = le_value(data);
        match (offset, data.len()) {
            (0, 4) => self.address = value,
            (4..=7, 1 | 2 | 4) => {
                let shift = 8 * u32::from(offset - 4);
                let lanes = if data.len() == 4 {
                    u32::MAX
                } else {
                    ((1u32 << (8 * data.len())) - 1) << shift
                };
                if let Some((f, reg)) = self.selected() {
                    f.write_config(reg, value << shift, lanes);
                }
            }
            // Byte writes to 0xcf8..0xcfb are the old mechanism #2 probe: ignore them.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_read(io: &mut PciConfigIo, slot: u8, reg: u8) -> u32 {
        let addr = 0x8000_0000 | (u32::from(slot) << 11) | u32::from(reg);
        io.write(0, &addr.to_le_bytes());
        let mut d = [0u8; 4];
        io.read(4, &mut d);
        u32::from_le_bytes(d)
    }

    fn cfg_write(io: &mut PciConfigIo, slot: u8, reg: u8, v: u32) {
        let addr = 0x8000_0000 | (u32::from(slot) << 11) | u32::from(reg);
        io.write(0, &addr.to_le_bytes());
        io.write(4, &v.to_le_bytes());
    }

    fn bus() -> PciConfigIo {
        let mut io = PciConfigIo::default();
        io.add(0, Box::new(host_bridge()));
        let id = Identity {
            vendor: 0x5853,
            device: 1,
            class: 0xff_80_00,
            revision: 1,
            subsystem: (0x5853, 1),
        };
        io.add(
            2,
            Box::new(Header::new(
                id,
                [
                    Some(Bar::Io(0xc000, 0x100)),
                    Some(Bar::Mem32(0xf000_0000, 16 << 20, true)),
                    None,
                    None,
                    None,
                    None,
                ],
            )),
        );
        io
    }

    #[test]
    fn identity_and_empty_slots() {
        let mut io = bus();
        assert_eq!(cfg_read(&mut io, 0, 0), 0x1237_8086);
        assert_eq!(cfg_read(&mut io, 0, 8) >> 8, 0x06_00_00);
        assert_eq!(cfg_read(&mut io, 2, 0), 0x0001_5853);
        assert_eq!(cfg_read(&mut io, 2, 0x2c), 0x0001_5853);
        assert_eq!(cfg_read(&mut io, 5, 0), u32::MAX);
        // Disabled address: all ones.
        io.write(0, &0x0000_1000u32.to_le_bytes());
        let mut d = [0u8; 4];
        io.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), u32::MAX);
    }

    #[test]
    fn bar_sizing_and_fixed_bases() {
        let mut io = bus();
        assert_eq!(cfg_read(&mut io, 2, 0x10), 0xc001);
        assert_eq!(cfg_read(&mut io, 2, 0x14), 0xf000_0008);
        cfg_write(&mut io, 2, 0x14, u32::MAX);
        assert_eq!(cfg_read(&mut io, 2, 0x14), 0xff00_0008);
        cfg_write(&mut io, 2, 0x10, u32::MAX);
        assert_eq!(cfg_read(&mut io, 2, 0x10), 0xffff_ff01);
        // Restoring the base ends sizing; a different base is not taken.
        cfg_write(&mut io, 2, 0x14, 0xe000_0000);
        assert_eq!(cfg_read(&mut io, 2, 0x14), 0xf000_0008);
        assert_eq!(cfg_read(&mut io, 2, 0x18), 0);
        cfg_write(&mut io, 2, 0x18, u32::MAX);
        assert_eq!(cfg_read(&mut io, 2, 0x18), 0);
    }

    #[test]
    fn command_register_and_partial_writes() {
        let mut io = bus();
        cfg_write(&mut io, 2, 4, 0xffff_ffff);
        assert_eq!(cfg_read(&mut io, 2, 4) & 0xffff, 0x0407);
        // A 16-bit write to the command register alone.
        let addr = 0x8000_0000u32 | (2 << 11) | 4;
        io.write(0, &addr.to_le_bytes());
        io.write(4, &0x0002u16.to_le_bytes());
        assert_eq!(cfg_read(&mut io, 2, 4) & 0xffff, 0x0002);
        // Byte read of the class code's top byte.
        io.write(0, &(0x8000_0000u32 | (2 << 11) | 8).to_le_bytes());
        let mut b = [0u8; 1];
        io.read(7, &mut b);
        assert_eq!(b[0], 0xff);
        // Identity is read-only.
        cfg_write(&mut io, 2, 0, 0);
        assert_eq!(cfg_read(&mut io, 2, 0), 0x0001_5853);
    }
}
