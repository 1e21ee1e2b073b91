//! The port-I/O bus: maps port ranges to devices. Shared by all vCPU threads; each device has
//! its own lock, so two vCPUs touching different devices never wait on each other.

use std::sync::{Arc, Mutex};

use crate::{debug_ratelimited, PioDevice};

/// A shared, lockable device.
pub type SharedDevice = Arc<Mutex<dyn PioDevice>>;

/// Error adding a device.
#[derive(Debug, PartialEq, Eq)]
pub struct Overlap {
    /// Base port of the new range.
    pub base: u16,
    /// Length of the new range.
    pub len: u16,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "I/O ports {:#x}+{} overlap a device already on the bus",
            self.base, self.len
        )
    }
}

impl std::error::Error for Overlap {}

/// Port ranges sorted by base.
#[derive(Default)]
pub struct IoBus {
    ranges: Vec<(u16, u16, SharedDevice)>,
}

impl std::fmt::Debug for IoBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r: Vec<_> = self.ranges.iter().map(|(b, l, _)| (*b, *l)).collect();
        f.debug_struct("IoBus").field("ranges", &r).finish()
    }
}

impl IoBus {
    /// Adds `dev` at ports `base..base+len`.
    pub fn insert(&mut self, base: u16, len: u16, dev: SharedDevice) -> Result<(), Overlap> {
        let end = u32::from(base) + u32::from(len);
        if len == 0
            || end > 0x10000
            || self.ranges.iter().any(|(b, l, _)| {
                u32::from(*b) < end && u32::from(base) < u32::from(*b) + u32::from(*l)
            })
        {
            return Err(Overlap { base, len });
        }
        let pos = self.ranges.partition_point(|(b, _, _)| *b < base);
        self.ranges.insert(pos, (base, len, dev));
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(u16, &SharedDevice)> {
        let i = self
            .ranges
            .partition_point(|(b, _, _)| *b <= port)
            .checked_sub(1)?;
        let (b, l, d) = &self.ranges[i];
        (u32::from(port) < u32::from(*b) + u32::from(*l)).then_some((port - b, d))
    }

    /// A guest read; unclaimed ports read as all ones, like an empty ISA bus.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((off, dev)) => lock(dev).read(off, data),
            None => {
                data.fill(0xff);
                debug_ratelimited!(
                    5,
                    port = format_args!("{port:#x}"),
                    len = data.len(),
                    "read of unclaimed I/O port"
                );
            }
        }
    }

    /// A guest write; writes to unclaimed ports are dropped.
    pub fn write(&self, port: u16, data: &[u8]) {
        match self.find(port) {
            Some((off, dev)) => lock(dev).write(off, data),
            None => {
                debug_ratelimited!(
                    5,
                    port = format_args!("{port:#x}"),
                    len = data.len(),
                    "write to unclaimed I/O port"
                );
            }
        }
    }
}

/// Locks a device even if a previous holder panicked: device state is plain data, and one bad
/// access must not take the whole VM down.
pub fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn PioDevice + 'static> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u16, Vec<u8>)>);

    impl PioDevice for Recorder {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_with_relative_offsets() {
        let mut bus = IoBus::default();
        let a = Arc::new(Mutex::new(Recorder::default()));
        let b = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        bus.insert(0x60, 5, b.clone()).unwrap();
        let mut buf = [0u8; 1];
        bus.read(0x3fd, &mut buf);
        assert_eq!(buf, [5]);
        bus.write(0x64, &[0xfe]);
        bus.write(0x3f8, b"x");
        assert_eq!(b.lock().unwrap().0, vec![(4, vec![0xfe])]);
        assert_eq!(a.lock().unwrap().0, vec![(0, vec![b'x'])]);
    }

    #[test]
    fn unclaimed_ports_read_all_ones() {
        let bus = IoBus::default();
        let mut buf = [0u8; 4];
        bus.read(0x1234, &mut buf);
        assert_eq!(buf, [0xff; 4]);
        bus.write(0xffff, &[1]);
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let mut bus = IoBus::default();
        let d = || -> SharedDevice { Arc::new(Mutex::new(Recorder::default())) };
        bus.insert(0x600, 6, d()).unwrap();
        assert_eq!(
            bus.insert(0x605, 2, d()),
            Err(Overlap {
                base: 0x605,
                len: 2
            })
        );
        assert!(bus.insert(0x5ff, 2, d()).is_err());
        assert!(bus.insert(0xffff, 2, d()).is_err());
        assert!(bus.insert(0x10, 0, d()).is_err());
        bus.insert(0x606, 1, d()).unwrap();
        bus.insert(0x5fe, 2, d()).unwrap();
    }
}
