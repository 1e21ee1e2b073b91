//! The 2-level pending and mask bits in guest memory, for what the VMM does itself rather than
//! through `KVM_XEN_HVM_EVTCHN_SEND` (chiefly `EVTCHNOP_unmask`, where a port that became
//! pending while masked must now raise the upcall).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use vm_memory::{GuestAddress, GuestMemoryBackend, VolatileMemory};

use crate::abi::evtchn::{Port, EVTCHN_2L_NR_CHANNELS};
use crate::abi::shared_info::*;

/// Why a bit could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitsError {
    /// The port is beyond the 2-level ABI.
    #[error("port {0} is beyond the 2-level ABI")]
    BadPort(Port),
    /// The page or vcpu_info is not in guest memory (or misaligned).
    #[error("guest address {0:#x} is not usable for event-channel bits")]
    BadAddress(u64),
}

/// The event bits of one guest: its shared-info page and each vCPU's `vcpu_info` address.
#[derive(Debug, Clone, Copy)]
pub struct EventBits {
    /// Guest physical address of the shared-info page.
    pub shared_info: GuestAddress,
}

fn atomic_u64<M: GuestMemoryBackend, R>(
    mem: &M,
    gpa: u64,
    f: impl FnOnce(&AtomicU64) -> R,
) -> Result<R, BitsError> {
    let s = mem
        .get_slice(GuestAddress(gpa), 8)
        .map_err(|_| BitsError::BadAddress(gpa))?;
    let a = s
        .get_atomic_ref::<AtomicU64>(0)
        .map_err(|_| BitsError::BadAddress(gpa))?;
    Ok(f(a))
}

fn atomic_u8<M: GuestMemoryBackend, R>(
    mem: &M,
    gpa: u64,
    f: impl FnOnce(&AtomicU8) -> R,
) -> Result<R, BitsError> {
    let s = mem
        .get_slice(GuestAddress(gpa), 1)
        .map_err(|_| BitsError::BadAddress(gpa))?;
    let a = s
        .get_atomic_ref::<AtomicU8>(0)
        .map_err(|_| BitsError::BadAddress(gpa))?;
    Ok(f(a))
}

impl EventBits {
    fn word(&self, base: u64, port: Port) -> Result<(u64, u64), BitsError> {
        if port >= EVTCHN_2L_NR_CHANNELS {
            return Err(BitsError::BadPort(port));
        }
        let gpa = self
            .shared_info
            .0
            .checked_add(base + u64::from(port / 64) * 8);
        Ok((
            gpa.ok_or(BitsError::BadAddress(self.shared_info.0))?,
            1u64 << (port % 64),
        ))
    }

    /// Whether `port` is pending.
    pub fn is_pending<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        port: Port,
    ) -> Result<bool, BitsError> {
        let (gpa, bit) = self.word(SHINFO_EVTCHN_PENDING, port)?;
        atomic_u64(mem, gpa, |a| a.load(Ordering::SeqCst) & bit != 0)
    }

    /// Whether `port` is masked.
    pub fn is_masked<M: GuestMemoryBackend>(&self, mem: &M, port: Port) -> Result<bool, BitsError> {
        let (gpa, bit) = self.word(SHINFO_EVTCHN_MASK, port)?;
        atomic_u64(mem, gpa, |a| a.load(Ordering::SeqCst) & bit != 0)
    }

    /// Flags `port`'s word in the vCPU's selector and the vCPU's upcall as pending. Returns
    /// whether the upcall was not pending before (the vCPU needs a kick).
    fn raise<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        vcpu_info: GuestAddress,
        port: Port,
    ) -> Result<bool, BitsError> {
        let sel = vcpu_info
            .0
            .checked_add(VCPU_INFO_PENDING_SEL)
            .ok_or(BitsError::BadAddress(vcpu_info.0))?;
        let word_bit = 1u64 << (port / 64);
        let was = atomic_u64(mem, sel, |a| a.fetch_or(word_bit, Ordering::SeqCst))?;
        if was & word_bit != 0 {
            return Ok(false);
        }
        let up = atomic_u8(mem, vcpu_info.0 + VCPU_INFO_UPCALL_PENDING, |a| {
            a.swap(1, Ordering::SeqCst)
        })?;
        Ok(up == 0)
    }

    /// Sets `port` pending, as Xen's 2-level `set_pending`; returns whether the vCPU owning
    /// `vcpu_info` must be kicked to take the upcall.
    pub fn set_pending<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        vcpu_info: GuestAddress,
        port: Port,
    ) -> Result<bool, BitsError> {
        let (gpa, bit) = self.word(SHINFO_EVTCHN_PENDING, port)?;
        if atomic_u64(mem, gpa, |a| a.fetch_or(bit, Ordering::SeqCst))? & bit != 0 {
            return Ok(false);
        }
        if self.is_masked(mem, port)? {
            return Ok(false);
        }
        self.raise(mem, vcpu_info, port)
    }

    /// Clears `port`'s mask bit (`EVTCHNOP_unmask`); if the port is pending, raises it on the
    /// vCPU owning `vcpu_info`. Returns whether that vCPU must be kicked.
    pub fn unmask<M: GuestMemoryBackend>(
        &self,
        mem: &M,
        vcpu_info: GuestAddress,
        port: Port,
    ) -> Result<bool, BitsError> {
        let (gpa, bit) = self.word(SHINFO_EVTCHN_MASK, port)?;
        let was = atomic_u64(mem, gpa, |a| a.fetch_and(!bit, Ordering::SeqCst))?;
        if was & bit == 0 || !self.is_pending(mem, port)? {
            return Ok(false);
        }
        self.raise(mem, vcpu_info, port)
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryMmap};

    use super::*;

    const SHINFO: u64 = 0x1000;
    const VCPU1: u64 = SHINFO + 64;

    fn setup() -> (GuestMemoryMmap<()>, EventBits) {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap();
        (
            mem,
            EventBits {
                shared_info: GuestAddress(SHINFO),
            },
        )
    }

    fn info(mem: &GuestMemoryMmap<()>) -> VcpuInfo {
        mem.read_obj(GuestAddress(VCPU1)).unwrap()
    }

    #[test]
    fn pending_raises_selector_and_upcall_once() {
        let (mem, bits) = setup();
        assert!(bits.set_pending(&mem, GuestAddress(VCPU1), 130).unwrap());
        assert!(bits.is_pending(&mem, 130).unwrap());
        let i = info(&mem);
        assert_eq!((i.evtchn_upcall_pending, i.evtchn_pending_sel), (1, 1 << 2));
        assert!(
            !bits.set_pending(&mem, GuestAddress(VCPU1), 130).unwrap(),
            "already pending"
        );
        assert!(
            !bits.set_pending(&mem, GuestAddress(VCPU1), 131).unwrap(),
            "same word"
        );
        assert!(
            !bits.set_pending(&mem, GuestAddress(VCPU1), 5).unwrap(),
            "upcall already due"
        );
        assert_eq!(info(&mem).evtchn_pending_sel, (1 << 2) | 1);
    }

    #[test]
    fn masked_ports_wait_for_unmask() {
        let (mem, bits) = setup();
        mem.write_obj(1u64 << 7, GuestAddress(SHINFO + SHINFO_EVTCHN_MASK + 8))
            .unwrap();
        assert!(bits.is_masked(&mem, 71).unwrap());
        assert!(!bits.set_pending(&mem, GuestAddress(VCPU1), 71).unwrap());
        assert_eq!(info(&mem), VcpuInfo::default(), "no upcall while masked");
        assert!(bits.unmask(&mem, GuestAddress(VCPU1), 71).unwrap());
        assert!(!bits.is_masked(&mem, 71).unwrap());
        assert_eq!(info(&mem).evtchn_pending_sel, 1 << 1);
        assert!(
            !bits.unmask(&mem, GuestAddress(VCPU1), 71).unwrap(),
            "not masked any more"
        );
        assert!(
            !bits.unmask(&mem, GuestAddress(VCPU1), 72).unwrap(),
            "not pending"
        );
    }

    #[test]
    fn hostile_ports_and_addresses() {
        let (mem, bits) = setup();
        for port in [4096, u32::MAX] {
            assert_eq!(
                bits.set_pending(&mem, GuestAddress(VCPU1), port),
                Err(BitsError::BadPort(port))
            );
            assert_eq!(
                bits.unmask(&mem, GuestAddress(VCPU1), port),
                Err(BitsError::BadPort(port))
            );
        }
        assert!(
            bits.set_pending(&mem, GuestAddress(0x10_0000), 1).is_err(),
            "vcpu_info outside RAM"
        );
        assert!(
            bits.set_pending(&mem, GuestAddress(VCPU1 + 3), 2).is_err(),
            "misaligned vcpu_info"
        );
        let far = EventBits {
            shared_info: GuestAddress(u64::MAX - 10),
        };
        assert!(far.is_pending(&mem, 1).is_err());
        let outside = EventBits {
            shared_info: GuestAddress(0x10_0000),
        };
        assert!(outside.is_masked(&mem, 4095).is_err());
    }
}
