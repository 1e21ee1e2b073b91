//! Hypercall arguments are guest-virtual addresses of the calling vCPU: translate page by
//! page with `KVM_TRANSLATE`, then copy from or to guest memory.

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen::abi::errno::Errno;
use xen::hypercall::GuestVirt;

const PAGE: u64 = 4096;

/// The calling vCPU's view of memory during one hypercall.
#[derive(Debug)]
pub struct VcpuMemory<'a> {
    vcpu: &'a VcpuFd,
    mem: &'a GuestMemoryMmap,
}

impl<'a> VcpuMemory<'a> {
    /// Memory as `vcpu` currently maps it.
    pub fn new(vcpu: &'a VcpuFd, mem: &'a GuestMemoryMmap) -> Self {
        VcpuMemory { vcpu, mem }
    }

    fn gpa(&self, gva: u64, write: bool) -> Result<u64, Errno> {
        let t = self.vcpu.translate_gva(gva).map_err(|_| Errno::EFAULT)?;
        if t.valid == 0 || (write && t.writeable == 0) {
            return Err(Errno::EFAULT);
        }
        Ok(t.physical_address)
    }

    /// Splits `gva..gva+len` at page boundaries: `(gva, offset in buffer, length)`.
    fn chunks(gva: u64, len: usize) -> Result<Vec<(u64, usize, usize)>, Errno> {
        let end = gva.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        let mut out = Vec::new();
        let mut at = gva;
        while at < end {
            let n = (PAGE - at % PAGE).min(end - at);
            out.push((at, (at - gva) as usize, n as usize));
            at += n;
        }
        Ok(out)
    }
}

impl GuestVirt for VcpuMemory<'_> {
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        for (va, off, n) in Self::chunks(gva, buf.len())? {
            let gpa = self.gpa(va, false)?;
            self.mem
                .read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| Errno::EFAULT)?;
        }
        Ok(())
    }

    fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno> {
        // Translate everything first so a fault leaves guest memory untouched.
        let parts = Self::chunks(gva, data.len())?
            .into_iter()
            .map(|(va, off, n)| Ok((self.gpa(va, true)?, off, n)))
            .collect::<Result<Vec<_>, Errno>>()?;
        for (gpa, off, n) in parts {
            self.mem
                .write_slice(&data[off..off + n], GuestAddress(gpa))
                .map_err(|_| Errno::EFAULT)?;
        }
        Ok(())
    }

    fn translate(&self, gva: u64) -> Result<u64, Errno> {
        self.gpa(gva, true)
    }
}

#[cfg(test)]
mod tests {
    use super::VcpuMemory;

    #[test]
    fn chunks_split_at_page_boundaries() {
        assert_eq!(
            VcpuMemory::chunks(0xff8, 16).unwrap(),
            vec![(0xff8, 0, 8), (0x1000, 8, 8)]
        );
        assert_eq!(VcpuMemory::chunks(0x1000, 0).unwrap(), vec![]);
        assert!(VcpuMemory::chunks(u64::MAX - 2, 8).is_err());
    }
}
