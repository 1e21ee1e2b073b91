//! Xen's platform device, as Linux's `xen-platform-pci` driver expects it: PCI 5853:0001 with
//! an I/O BAR and a memory BAR whose pages the guest fills with grant-table frames, plus the
//! "unplug" ports at 0x10 through which the guest checks the platform and asks for emulated
//! disks and NICs to go away (Oxen emulates none).

use crate::pci::{Bar, Header, Identity};
use crate::{debug_ratelimited, fill_le, le_value, PioDevice};

/// PCI slot of the platform device (where Xen's toolstack puts it).
pub const SLOT: u8 = 2;
/// Base of the I/O BAR.
pub const IO_BAR: u16 = 0xc000;
/// Size of the I/O BAR.
pub const IO_BAR_LEN: u16 = 0x100;
/// Ports of the unplug protocol.
pub const UNPLUG_PORT: u16 = 0x10;
/// Ports the unplug device claims.
pub const UNPLUG_LEN: u16 = 4;
/// `XEN_IOPORT_MAGIC_VAL`.
const MAGIC: u16 = 0x49d2;
/// Protocol version Oxen speaks.
const PROTOCOL: u8 = 1;

/// The PCI header of the platform device; `grant_bar` is its memory BAR (base, size).
pub fn header(grant_bar: (u32, u32)) -> Header {
    Header::new(
        Identity {
            vendor: 0x5853,
            device: 0x0001,
            class: 0xff_80_00,
            revision: 1,
            subsystem: (0x5853, 0x0001),
        },
        [
            Some(Bar::Io(IO_BAR, IO_BAR_LEN)),
            Some(Bar::Mem32(grant_bar.0, grant_bar.1, true)),
            None,
            None,
            None,
            None,
        ],
    )
}

/// The unplug protocol at ports 0x10..0x13.
#[derive(Debug, Default)]
pub struct Unplug {
    /// Product number and build the guest reported.
    pub guest: Option<(u16, u32)>,
    /// Unplug mask the guest asked for.
    pub unplugged: u16,
}

impl PioDevice for Unplug {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let v: u32 = match (offset, data.len()) {
            (0, 2) => u32::from(MAGIC),
            (2, 1) => u32::from(PROTOCOL),
            _ => u32::MAX,
        };
        fill_le(data, v);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let v = le_value(data);
        match (offset, data.len()) {
            // Unplug request (16 bit at 0x10) or build number (32 bit at 0x10).
            (0, 2) => self.unplugged |= v as u16,
            (0, 4) => {
                let product = self.guest.map(|g| g.0).unwrap_or(0);
                self.guest = Some((product, v));
            }
            (2, 2) => self.guest = Some((v as u16, self.guest.map(|g| g.1).unwrap_or(0))),
            _ => debug_ratelimited!(5, offset, len = data.len(), "unknown Xen platform write"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciFunction;

    #[test]
    fn linux_platform_check_sequence() {
        let mut u = Unplug::default();
        let mut w = [0u8; 2];
        u.read(0, &mut w);
        assert_eq!(u16::from_le_bytes(w), MAGIC);
        let mut b = [0u8; 1];
        u.read(2, &mut b);
        assert_eq!(b[0], PROTOCOL);
        u.write(2, &3u16.to_le_bytes());
        u.write(0, &0x0006_0c00u32.to_le_bytes());
        // Still the magic afterwards: the guest is not blacklisted.
        u.read(0, &mut w);
        assert_eq!(u16::from_le_bytes(w), MAGIC);
        u.write(0, &3u16.to_le_bytes());
        assert_eq!(u.guest, Some((3, 0x0006_0c00)));
        assert_eq!(u.unplugged, 3);
    }

    #[test]
    fn header_has_the_platform_identity_and_bars() {
        let h = header((0xf000_0000, 16 << 20));
        assert_eq!(h.read_config(0), 0x0001_5853);
        assert_eq!(h.read_config(8) >> 8, 0xff_80_00);
        assert_eq!(h.read_config(0x10), u32::from(IO_BAR) | 1);
        assert_eq!(h.read_config(0x14), 0xf000_0008);
    }
}
