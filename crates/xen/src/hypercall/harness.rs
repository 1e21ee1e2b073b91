//! A synthetic guest for exercising [`Hypervisor::hypercall`] without a VM: guest memory with a
//! guest-virtual window, a [`Platform`] that records every call, and a [`Notifier`] that records
//! deliveries. Shared by the unit tests, the seeded fuzz test and `crates/xen/fuzz`.

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{DomainInfo, E820Entry, GuestVirt, Hypervisor, Platform};
use crate::abi::errno::Errno;
use crate::abi::evtchn::Port;
use crate::abi::features::Features;
use crate::abi::sched::ShutdownReason;
use crate::evtchn::{EventChannels, EvtchnConfig, Notifier};
use crate::gnttab::{GnttabConfig, GrantTable};

/// The synthetic guest's memory type.
pub type Mem = GuestMemoryMmap<()>;

/// Guest frames backed by memory (4 MiB).
pub const MEM_FRAMES: u64 = 1024;
/// Frames that exist in memory but are not RAM (a ROM-like hole the balloon may not touch).
pub const HOLE: std::ops::Range<u64> = 0x300..0x340;
/// Guest-virtual address of guest-physical 0 (where Linux puts its direct map).
pub const GVA_OFFSET: u64 = 0xffff_8880_0000_0000;
/// The synthetic domain's id.
pub const DOMID: u16 = 5;
/// Its vCPUs.
pub const VCPUS: u32 = 2;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Guest-virtual memory mapped linearly onto guest memory: `gva = gpa + offset`, valid only
/// inside a window; one page may be read-only. Everything else is `EFAULT`.
#[derive(Debug)]
pub struct SyntheticGuest {
    mem: Mem,
    offset: u64,
    window: Mutex<(u64, u64)>,
    readonly_page: Mutex<Option<u64>>,
}

impl SyntheticGuest {
    /// A view of `mem` at `gva = gpa + offset`, the whole memory mapped.
    pub fn new(mem: Mem, offset: u64) -> SyntheticGuest {
        let len = vm_memory::GuestMemoryBackend::last_addr(&mem).0 + 1;
        SyntheticGuest {
            mem,
            offset,
            window: Mutex::new((offset, len)),
            readonly_page: Mutex::new(None),
        }
    }

    /// The guest-virtual address of guest-physical `gpa`.
    pub fn gva(&self, gpa: u64) -> u64 {
        gpa.wrapping_add(self.offset)
    }

    /// Maps only guest-physical `gpa..gpa+len`.
    pub fn set_window(&self, gpa: u64, len: u64) {
        *locked(&self.window) = (self.gva(gpa), len);
    }

    /// Makes the page holding guest-physical `gpa` read-only (`None`: all writable).
    pub fn set_readonly(&self, gpa: Option<u64>) {
        *locked(&self.readonly_page) = gpa.map(|g| g >> crate::abi::PAGE_SHIFT);
    }

    /// The guest-physical address of `gva..gva+len`, if it lies in the window.
    fn check(&self, gva: u64, len: u64) -> Result<u64, Errno> {
        let (start, wlen) = *locked(&self.window);
        let rel = gva.checked_sub(start).ok_or(Errno::EFAULT)?;
        if len > wlen || rel > wlen - len {
            return Err(Errno::EFAULT);
        }
        Ok(gva.wrapping_sub(self.offset))
    }
}

impl GuestVirt for SyntheticGuest {
    fn read(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        if buf.is_empty() {
            return Ok(());
        }
        let gpa = self.check(gva, buf.len() as u64)?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| Errno::EFAULT)
    }

    fn write(&self, gva: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let gpa = self.check(gva, data.len() as u64)?;
        if let Some(ro) = *locked(&self.readonly_page) {
            let (first, last) = (gpa >> 12, (gpa + data.len() as u64 - 1) >> 12);
            if (first..=last).contains(&ro) {
                return Err(Errno::EFAULT);
            }
        }
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| Errno::EFAULT)
    }

    fn translate(&self, gva: u64) -> Result<u64, Errno> {
        self.check(gva, 1)
    }
}

/// One [`Platform`] call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `map_shared_info(gfn)`.
    MapSharedInfo(u64),
    /// `set_vcpu_info(vcpu, gpa)`.
    SetVcpuInfo(u32, u64),
    /// `set_runstate_area(vcpu, gpa)`.
    SetRunstateArea(u32, Option<u64>),
    /// `set_callback_vector(vector)`.
    SetCallbackVector(u8),
    /// `set_vcpu_upcall_vector(vcpu, vector)`.
    SetVcpuUpcallVector(u32, u8),
    /// `set_timer_port(vcpu, port)`.
    SetTimerPort(u32, u32),
    /// `release_page(gfn)`.
    ReleasePage(u64),
    /// `populate_page(gfn)`.
    PopulatePage(u64),
    /// `shutdown(reason)`.
    Shutdown(ShutdownReason),
    /// `console_write(text)`.
    ConsoleWrite(Vec<u8>),
    /// `ipi_bound(port, vcpu)`.
    IpiBound(u32, u32),
    /// `route(send_port, to, vcpu)`.
    Route(u32, u32, u32),
    /// `port_closed(port)`.
    PortClosed(u32),
    /// `ports_reset()`.
    PortsReset,
}

/// Decides which calls fail, and how.
pub type FailRule = Box<dyn Fn(&Call) -> Option<Errno> + Send + Sync>;

/// A [`Platform`] that records every call with its outcome and fails those a rule picks.
#[derive(Default)]
pub struct RecordingPlatform {
    calls: Mutex<Vec<(Call, Result<(), Errno>)>>,
    fail: Mutex<Option<FailRule>>,
}

impl std::fmt::Debug for RecordingPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingPlatform")
            .field("calls", &locked(&self.calls).len())
            .finish()
    }
}

impl RecordingPlatform {
    /// Fails the calls `rule` picks from now on.
    pub fn fail_when(&self, rule: impl Fn(&Call) -> Option<Errno> + Send + Sync + 'static) {
        *locked(&self.fail) = Some(Box::new(rule));
    }

    /// Stops failing calls.
    pub fn succeed(&self) {
        *locked(&self.fail) = None;
    }

    /// Calls made so far (failed ones included).
    pub fn calls(&self) -> Vec<Call> {
        locked(&self.calls).iter().map(|(c, _)| c.clone()).collect()
    }

    /// Takes the calls made so far, with their outcomes.
    pub fn take(&self) -> Vec<(Call, Result<(), Errno>)> {
        std::mem::take(&mut *locked(&self.calls))
    }

    /// Takes the calls made so far (failed ones included).
    pub fn take_calls(&self) -> Vec<Call> {
        self.take().into_iter().map(|(c, _)| c).collect()
    }

    fn record(&self, call: Call) -> Result<(), Errno> {
        let r = match &*locked(&self.fail) {
            Some(rule) => rule(&call).map_or(Ok(()), Err),
            None => Ok(()),
        };
        locked(&self.calls).push((call, r));
        r
    }
}

impl Platform for RecordingPlatform {
    fn map_shared_info(&self, gfn: u64) -> Result<(), Errno> {
        self.record(Call::MapSharedInfo(gfn))
    }
    fn set_vcpu_info(&self, vcpu: u32, gpa: u64) -> Result<(), Errno> {
        self.record(Call::SetVcpuInfo(vcpu, gpa))
    }
    fn set_runstate_area(&self, vcpu: u32, gpa: Option<u64>) -> Result<(), Errno> {
        self.record(Call::SetRunstateArea(vcpu, gpa))
    }
    fn set_callback_vector(&self, vector: u8) -> Result<(), Errno> {
        self.record(Call::SetCallbackVector(vector))
    }
    fn set_vcpu_upcall_vector(&self, vcpu: u32, vector: u8) -> Result<(), Errno> {
        self.record(Call::SetVcpuUpcallVector(vcpu, vector))
    }
    fn set_timer_port(&self, vcpu: u32, port: u32) -> Result<(), Errno> {
        self.record(Call::SetTimerPort(vcpu, port))
    }
    fn release_page(&self, gfn: u64) -> Result<(), Errno> {
        self.record(Call::ReleasePage(gfn))
    }
    fn populate_page(&self, gfn: u64) -> Result<(), Errno> {
        self.record(Call::PopulatePage(gfn))
    }
    fn shutdown(&self, reason: ShutdownReason) {
        // Infallible: recorded, the rule is not asked.
        locked(&self.calls).push((Call::Shutdown(reason), Ok(())));
    }
    fn console_write(&self, text: &[u8]) {
        locked(&self.calls).push((Call::ConsoleWrite(text.to_vec()), Ok(())));
    }
    fn ipi_bound(&self, port: u32, vcpu: u32) {
        locked(&self.calls).push((Call::IpiBound(port, vcpu), Ok(())));
    }
    fn route(&self, send_port: u32, to: u32, vcpu: u32) {
        locked(&self.calls).push((Call::Route(send_port, to, vcpu), Ok(())));
    }
    fn port_closed(&self, port: u32) {
        locked(&self.calls).push((Call::PortClosed(port), Ok(())));
    }
    fn ports_reset(&self) {
        locked(&self.calls).push((Call::PortsReset, Ok(())));
    }
}

/// A [`Notifier`] that records deliveries and unmasks.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    /// `(port, vcpu)` of every delivery.
    pub delivered: Mutex<Vec<(Port, u32)>>,
    /// `(port, vcpu)` of every unmask that found the port pending.
    pub unmasked: Mutex<Vec<(Port, u32)>>,
}

impl Notifier for RecordingNotifier {
    fn deliver(&self, port: Port, vcpu: u32) {
        locked(&self.delivered).push((port, vcpu));
    }
    fn unmask(&self, port: Port, vcpu: u32) {
        locked(&self.unmasked).push((port, vcpu));
    }
}

/// The synthetic domain's facts: RAM in frames `0..MEM_FRAMES` except [`HOLE`].
pub fn domain_info() -> DomainInfo {
    let ram = vec![0..HOLE.start, HOLE.end..MEM_FRAMES];
    let e820 = vec![
        E820Entry {
            addr: 0,
            size: HOLE.start << 12,
            kind: 1,
        },
        E820Entry {
            addr: HOLE.start << 12,
            size: (HOLE.end - HOLE.start) << 12,
            kind: 2,
        },
        E820Entry {
            addr: HOLE.end << 12,
            size: (MEM_FRAMES - HOLE.end) << 12,
            kind: 1,
        },
    ];
    DomainInfo {
        domid: DOMID,
        max_vcpus: VCPUS,
        version: (4, 19),
        features: Features::hvm_guest(),
        e820,
        max_pages: MEM_FRAMES - (HOLE.end - HOLE.start),
        ram,
    }
}

/// A hypervisor over synthetic memory, with its recorders.
pub struct Harness {
    /// The hypervisor under test.
    pub hv: Hypervisor<Mem>,
    /// The calling vCPUs' view of memory.
    pub guest: SyntheticGuest,
    /// Records platform calls.
    pub platform: Arc<RecordingPlatform>,
    /// Records event deliveries.
    pub notifier: Arc<RecordingNotifier>,
    /// Guest memory (guest-physical).
    pub mem: Mem,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("hv", &self.hv).finish()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(domain_info())
    }
}

impl Harness {
    /// A zeroed guest of [`MEM_FRAMES`] frames with the facts `info`.
    pub fn new(info: DomainInfo) -> Harness {
        let mem = Mem::from_ranges(&[(GuestAddress(0), (MEM_FRAMES << 12) as usize)])
            .expect("4 MiB of anonymous memory");
        let notifier = Arc::new(RecordingNotifier::default());
        let evtchn = EventChannels::new(
            EvtchnConfig::new(info.domid, info.max_vcpus),
            notifier.clone(),
        )
        .expect("valid event channel config");
        let gnttab = GrantTable::new(GnttabConfig::new(info.domid), mem.clone())
            .expect("valid grant table config");
        let platform = Arc::new(RecordingPlatform::default());
        let hv = Hypervisor::new(info, evtchn, gnttab, platform.clone());
        Harness {
            hv,
            guest: SyntheticGuest::new(mem.clone(), GVA_OFFSET),
            platform,
            notifier,
            mem,
        }
    }

    /// Hypercall `nr` from vCPU 0.
    pub fn call(&self, nr: u32, args: [u64; 6]) -> i64 {
        self.hv.hypercall(0, &self.guest, nr, args)
    }

    /// The guest-virtual address of guest-physical `gpa`.
    pub fn gva(&self, gpa: u64) -> u64 {
        self.guest.gva(gpa)
    }

    /// Writes `v` at guest-physical `gpa` (as the guest would, bypassing the window).
    pub fn put<T: vm_memory::ByteValued>(&self, gpa: u64, v: T) {
        self.mem
            .write_obj(v, GuestAddress(gpa))
            .expect("gpa inside the synthetic memory");
    }

    /// Writes `data` at guest-physical `gpa`.
    pub fn put_bytes(&self, gpa: u64, data: &[u8]) {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .expect("gpa inside the synthetic memory");
    }

    /// Reads `len` bytes at guest-physical `gpa`.
    pub fn bytes(&self, gpa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .read_slice(&mut v, GuestAddress(gpa))
            .expect("gpa inside the synthetic memory");
        v
    }

    /// Runs `f` on the whole guest memory as plain bytes (fast snapshots for the fuzzer).
    pub fn with_memory<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let len = (MEM_FRAMES << 12) as usize;
        let slice = vm_memory::GuestMemoryBackend::get_slice(&self.mem, GuestAddress(0), len)
            .expect("one region covers the synthetic memory");
        // SAFETY: the region is `len` bytes of mapped anonymous memory that lives as long as
        // `self.mem`, which outlives this call; nothing writes it while `f` runs, because the
        // harness is driven from this thread only and `f` gets no way to reach the memory
        // mutably.
        let bytes = unsafe { std::slice::from_raw_parts(slice.ptr_guard().as_ptr(), len) };
        f(bytes)
    }

    /// Reads a `T` at guest-physical `gpa`.
    pub fn get<T: vm_memory::ByteValued>(&self, gpa: u64) -> T {
        self.mem
            .read_obj(GuestAddress(gpa))
            .expect("gpa inside the synthetic memory")
    }
}
