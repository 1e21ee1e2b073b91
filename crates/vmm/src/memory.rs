//! Guest RAM in a memfd, so that other processes (backends, save/restore, migration) can map the
//! same pages by passing the file descriptor.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::FromRawFd;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::{Error, Result};

/// The guest's RAM and the memfd behind it.
#[derive(Debug)]
pub struct GuestRam {
    /// The mapping the VMM uses.
    pub mem: GuestMemoryMmap,
    /// The memfd; region `i` starts at the sum of the sizes before it.
    pub file: File,
    /// Bytes of RAM (the regions after it are device memory such as Xen's special pages).
    ram_bytes: u64,
    /// `(guest address, length, file offset)` of every region.
    layout: Vec<(u64, u64, u64)>,
}

impl GuestRam {
    /// Creates `bytes` of RAM laid out per [`arch::layout::ram_regions`]. Pages are allocated
    /// by the kernel on first touch.
    pub fn new(bytes: u64) -> Result<Self> {
        Self::with_device_memory(bytes, &[])
    }

    /// Like [`GuestRam::new`], plus `(guest address, length)` regions of device memory (in
    /// the same memfd, after the RAM) that are not RAM to the guest.
    pub fn with_device_memory(bytes: u64, device: &[(u64, u64)]) -> Result<Self> {
        let name: &CStr = c"oxen-guest-ram";
        // SAFETY: `name` is a valid NUL-terminated string; the returned fd is checked below and
        // owned by the File from then on.
        let fd = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(Error::Memory(format!(
                "memfd_create: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        let total = bytes + device.iter().map(|d| d.1).sum::<u64>();
        file.set_len(total).map_err(|e| {
            Error::Memory(format!("sizing the guest RAM file to {bytes} bytes: {e}"))
        })?;
        let mut offset = 0u64;
        let mut ranges = Vec::new();
        let mut layout = Vec::new();
        let regions = arch::layout::ram_regions(bytes)
            .into_iter()
            .chain(device.iter().map(|&(a, l)| (GuestAddress(a), l)));
        for (start, len) in regions {
            layout.push((start.0, len, offset));
            let clone = file
                .try_clone()
                .map_err(|e| Error::Memory(format!("dup of the RAM memfd: {e}")))?;
            ranges.push((start, len as usize, Some(FileOffset::new(clone, offset))));
            offset += len;
        }
        let mem = GuestMemoryMmap::from_ranges_with_files(ranges)
            .map_err(|e| Error::Memory(format!("mapping {} MiB of guest RAM: {e}", bytes >> 20)))?;
        Ok(GuestRam {
            mem,
            file,
            ram_bytes: bytes,
            layout,
        })
    }

    /// Offset in the memfd of guest-physical `gpa`, if any region holds it.
    pub fn file_offset(&self, gpa: u64) -> Option<u64> {
        self.layout
            .iter()
            .find(|(start, len, _)| (*start..start + len).contains(&gpa))
            .map(|(start, _, off)| off + (gpa - start))
    }

    /// Gives `len` bytes at `gpa` back to the host (ballooning): they read as zero after.
    pub fn discard(&self, gpa: u64, len: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let off = self
            .file_offset(gpa)
            .filter(|_| self.contains(gpa, len))
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: fallocate only changes the file's allocation; the mapping stays valid and
        // the punched range reads back as zeros.
        let r = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                len as libc::off_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Registers every region with KVM as a memory slot.
    pub fn register(&self, vm: &VmFd) -> Result<()> {
        for (slot, region) in self.mem.iter().enumerate() {
            let host = self
                .mem
                .get_host_address(region.start_addr())
                .map_err(|e| Error::Memory(format!("host address of region {slot}: {e}")))?;
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: the region is a live mapping of `region.len()` bytes owned by `self.mem`,
            // which the VM outlives only after its vCPUs have stopped (see `Vm` field order).
            unsafe { vm.set_user_memory_region(r) }.map_err(|e| Error::Kvm {
                what: "KVM_SET_USER_MEMORY_REGION",
                source: e,
            })?;
        }
        Ok(())
    }

    /// Total RAM in bytes (device memory not included).
    pub fn size(&self) -> u64 {
        self.ram_bytes
    }

    /// Whether `addr..addr+len` is RAM.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        len == 0
            || self.mem.address_in_range(GuestAddress(addr))
                && self.mem.address_in_range(GuestAddress(addr + len - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;
    use vm_memory::Bytes;

    #[test]
    fn writes_land_in_the_memfd_at_region_offsets() {
        let ram = GuestRam::new(16 << 20).unwrap();
        assert_eq!(ram.size(), 16 << 20);
        ram.mem
            .write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        let mut b = [0u8; 4];
        ram.file.read_exact_at(&mut b, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        assert!(ram.contains(0, 16 << 20));
        assert!(!ram.contains((16 << 20) - 1, 2));
    }

    #[test]
    fn device_memory_follows_ram_in_the_file_and_discard_zeroes() {
        let ram = GuestRam::with_device_memory(16 << 20, &[(0xfeff_0000, 0x10000)]).unwrap();
        assert_eq!(ram.size(), 16 << 20);
        assert_eq!(ram.file_offset(0xfeff_1000), Some((16 << 20) + 0x1000));
        assert_eq!(ram.file_offset(0xfef0_0000), None);
        ram.mem.write_obj(9u8, GuestAddress(0xfeff_1000)).unwrap();
        let mut b = [0u8; 1];
        ram.file.read_exact_at(&mut b, (16 << 20) + 0x1000).unwrap();
        assert_eq!(b[0], 9);
        ram.mem.write_obj(5u64, GuestAddress(0x20_0000)).unwrap();
        ram.discard(0x20_0000, 0x1000).unwrap();
        assert_eq!(ram.mem.read_obj::<u64>(GuestAddress(0x20_0000)).unwrap(), 0);
        assert!(ram.discard(16 << 20, 0x1000).is_err());
    }

    #[test]
    fn high_memory_goes_above_4g() {
        // 3 GiB + 16 MiB, mostly never touched.
        let bytes = (3u64 << 30) + (16 << 20);
        let ram = GuestRam::new(bytes).unwrap();
        assert!(ram.contains(1 << 32, 16 << 20));
        assert!(!ram.contains(0xc000_0000, 1));
        ram.mem.write_obj(7u8, GuestAddress(1 << 32)).unwrap();
        let mut b = [0u8; 1];
        ram.file.read_exact_at(&mut b, 3 << 30).unwrap();
        assert_eq!(b[0], 7);
    }
}
