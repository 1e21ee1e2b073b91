//! The hypercall fuzz body, shared by `crates/xen/fuzz` (cargo-fuzz) and a seeded test that
//! runs in every CI build: bytes are decoded into hypercall numbers (mostly implemented ones),
//! sub-commands, argument pointers into, around and outside a guest-virtual window, and
//! plausible argument structures; invariants are checked after every call.

use std::collections::{BTreeMap, BTreeSet};

use vm_memory::{Bytes, GuestAddress};

use super::harness::{Call, Harness, HOLE, MEM_FRAMES, VCPUS};
use crate::abi::errno::Errno;
use crate::abi::evtchn::VIRQ_TIMER;
use crate::abi::hypercall as nr;
use crate::abi::{DomId, DOMID_SELF};

/// Guest-physical start of the window the guest-virtual view maps.
pub const WINDOW_GPA: u64 = 0x10_0000;
/// Its length (16 pages).
pub const WINDOW_LEN: u64 = 16 * 4096;
/// Most hypercalls one input issues.
const MAX_CALLS: u64 = 4000;
/// Hypercalls the dispatcher implements, which most calls pick.
pub const IMPLEMENTED: [u32; 9] = [
    nr::xen_version,
    nr::memory_op,
    nr::hvm_op,
    nr::event_channel_op,
    nr::grant_table_op,
    nr::sched_op,
    nr::vcpu_op,
    nr::console_io,
    nr::set_timer_op,
];

/// What a run did, so that tests can check the inputs reach deep.
#[derive(Debug, Default)]
pub struct Stats {
    /// Hypercalls issued.
    pub calls: u64,
    /// Successful (non-negative) results per hypercall number.
    pub ok_by_nr: BTreeMap<u32, u64>,
    /// Platform calls that succeeded.
    pub platform_calls: u64,
}

/// The input as a stream of little-endian integers, zero once exhausted.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }
    /// True one time in `n`.
    fn one_in(&mut self, n: u8) -> bool {
        self.u8().is_multiple_of(n)
    }
    /// Mostly our own domain, sometimes another one.
    fn dom(&mut self) -> DomId {
        match self.u8() % 6 {
            0..=2 => DOMID_SELF,
            3 => super::harness::DOMID,
            4 => 0,
            _ => self.u16(),
        }
    }
    /// Mostly RAM frames, sometimes the hole, outside memory or anything.
    fn gfn(&mut self) -> u64 {
        match self.u8() % 5 {
            0..=2 => u64::from(self.u16()) % MEM_FRAMES,
            3 => HOLE.start + u64::from(self.u8() % 64),
            _ => self.u64(),
        }
    }
    /// A small count, sometimes anything.
    fn small(&mut self, n: u8) -> u64 {
        match self.u8() % 8 {
            0 => self.u64(),
            _ => u64::from(self.u8() % n),
        }
    }
    /// A guest-virtual pointer and, when it lands in the window, its guest-physical address.
    fn ptr(&mut self, h: &Harness) -> (u64, Option<u64>) {
        let in_window = |off: u64| WINDOW_GPA + off;
        let gpa = match self.u8() % 16 {
            0..=10 => in_window((u64::from(self.u16()) % WINDOW_LEN) & !7),
            11 => in_window(WINDOW_LEN - u64::from(self.u8() % 64)),
            12 => WINDOW_GPA - u64::from(self.u8() % 64),
            13 => return (self.u64(), None),
            14 => return (0, None),
            _ => return (u64::MAX - u64::from(self.u8()), None),
        };
        let inside = (WINDOW_GPA..WINDOW_GPA + WINDOW_LEN).contains(&gpa);
        (h.gva(gpa), inside.then_some(gpa))
    }
}

/// Runs the hypercalls `data` encodes against a fresh synthetic guest. Panics if an
/// invariant breaks; never otherwise, whatever the input.
pub fn fuzz_hypercalls(data: &[u8]) -> Stats {
    run(data, |_| {})
}

/// [`fuzz_hypercalls`] with `extra` checks after every call.
pub fn run(data: &[u8], extra: impl Fn(&Harness)) -> Stats {
    let h = Harness::default();
    let mut input = Input { data, pos: 0 };
    let mut stats = Stats::default();
    h.guest.set_window(WINDOW_GPA, WINDOW_LEN);
    let ro = input.u8();
    if ro < 192 {
        h.guest
            .set_readonly(Some(WINDOW_GPA + u64::from(ro % 16) * 4096));
    }
    if input.one_in(4) {
        // Some platform calls fail; a timer is never refused when being stopped.
        h.platform.fail_when(|c| match c {
            Call::ReleasePage(g) | Call::PopulatePage(g) if g % 7 == 3 => Some(Errno::ENOMEM),
            Call::SetTimerPort(_, p) if p % 5 == 4 => Some(Errno::EBUSY),
            Call::MapSharedInfo(g) if g % 3 == 0 => Some(Errno::EIO),
            _ => None,
        });
    }
    // The window starts out with the input's bytes (mixed), the rest of memory with a pattern.
    let fill: Vec<u8> = (0..WINDOW_LEN as usize)
        .map(|i| data.get(i % data.len().max(1)).copied().unwrap_or(0) ^ (i as u8).wrapping_mul(31))
        .collect();
    h.put_bytes(WINDOW_GPA, &fill);
    let mut snapshot = Snapshot(None);
    let initial_pages = h.hv.current_pages();
    let mut released = BTreeSet::new();
    let mut timers = [0u32; VCPUS as usize];

    while !input.done() && stats.calls < MAX_CALLS {
        let sel = input.u8();
        let nr = match sel {
            0..=223 => IMPLEMENTED[usize::from(sel) % IMPLEMENTED.len()],
            224..=239 => input.u16().into(),
            _ => u32::from(sel & 63),
        };
        let cmd = match input.u8() {
            c @ 0..=199 => u64::from(c % 32),
            _ => input.u64(),
        };
        let vcpu = u32::from(input.u8()) % VCPUS;
        let (ptr, gpa) = input.ptr(&h);
        let args = match nr {
            nr::vcpu_op => [cmd, input.small(3), ptr, 0, 0, 0],
            nr::console_io => [cmd % 3, input.small(200), ptr, 0, 0, 0],
            nr::grant_table_op => [cmd % 12, ptr, input.small(4), 0, 0, 0],
            nr::memory_op if input.one_in(4) => [cmd | (input.small(4) << 6), ptr, 0, 0, 0, 0],
            _ => [cmd, ptr, input.u64(), 0, 0, 0],
        };
        if let Some(gpa) = gpa {
            if !input.one_in(4) {
                plant(&h, &mut input, nr, args, gpa);
            }
        }
        // Grant copies and grant frame placement write guest memory by physical address.
        let writes_anywhere = matches!(
            (nr, args[0] as u32),
            (nr::grant_table_op, crate::abi::gnttab::GNTTABOP_COPY)
                | (nr::memory_op, crate::abi::memory::XENMEM_ADD_TO_PHYSMAP)
        );
        if writes_anywhere {
            snapshot.check(&h);
        }
        let r = h.hv.hypercall(vcpu, &h.guest, nr, args);
        stats.calls += 1;
        check_result(r, nr, args);
        if r >= 0 {
            *stats.ok_by_nr.entry(nr).or_default() += 1;
        }
        for (call, res) in h.platform.take() {
            if res.is_err() {
                continue;
            }
            stats.platform_calls += 1;
            check_platform_call(&h, &call, &mut released, &mut timers);
        }
        assert_eq!(h.hv.current_pages(), initial_pages - released.len() as u64);
        assert!(released.len() as u64 <= initial_pages);
        for (v, &port) in timers.iter().enumerate() {
            let bound = h.hv.evtchn().virq_port(VIRQ_TIMER, v as u32);
            assert_eq!(bound.map_or(0, |b| b.0), port, "timer port of vCPU {v}");
        }
        if writes_anywhere {
            snapshot.refresh(&h);
        } else if stats.calls % 64 == 0 {
            snapshot.check(&h);
        }
        extra(&h);
    }
    snapshot.check(&h);
    stats
}

/// Memory outside the window as it was: all zero until a call that may write there, then a
/// copy, compared with `memcmp` and refreshed with `memcpy` (one allocation per run at most:
/// fresh copies would cost more than the hypercalls).
struct Snapshot(Option<Vec<u8>>);

impl Snapshot {
    const START: usize = WINDOW_GPA as usize;
    const END: usize = (WINDOW_GPA + WINDOW_LEN) as usize;

    fn refresh(&mut self, h: &Harness) {
        h.with_memory(|m| {
            let (lo, hi) = (&m[..Self::START], &m[Self::END..]);
            match &mut self.0 {
                Some(v) => {
                    v[..Self::START].copy_from_slice(lo);
                    v[Self::START..].copy_from_slice(hi);
                }
                None => self.0 = Some([lo, hi].concat()),
            }
        })
    }

    fn check(&self, h: &Harness) {
        const ZERO: [u8; 4096] = [0; 4096];
        let same = h.with_memory(|m| {
            let (lo, hi) = (&m[..Self::START], &m[Self::END..]);
            match &self.0 {
                Some(v) => v[..Self::START] == *lo && v[Self::START..] == *hi,
                None => lo
                    .chunks(4096)
                    .chain(hi.chunks(4096))
                    .all(|c| c == &ZERO[..c.len()]),
            }
        });
        assert!(same, "memory outside the window changed");
    }
}

/// Results are 0, a count or value within reason, or a Xen errno.
fn check_result(r: i64, nr: u32, args: [u64; 6]) {
    let errno_ok = (-200..0).contains(&r) && Errno(-r as i32).name().is_some();
    assert!(
        (0..=1 << 26).contains(&r) || errno_ok,
        "hypercall {nr} {args:x?} returned {r}"
    );
    if !IMPLEMENTED.contains(&nr) {
        assert_eq!(r, -i64::from(Errno::ENOSYS.0), "hypercall {nr}");
    }
}

/// Each successful platform call is one the guest was allowed to cause.
fn check_platform_call(h: &Harness, call: &Call, released: &mut BTreeSet<u64>, timers: &mut [u32]) {
    let ram = |g: u64| h.hv.info().ram.iter().any(|r| r.contains(&g));
    match *call {
        Call::ReleasePage(g) => {
            assert!(ram(g), "released non-RAM frame {g:#x}");
            assert!(released.insert(g), "frame {g:#x} released twice");
        }
        Call::PopulatePage(g) => assert!(released.remove(&g), "populated present frame {g:#x}"),
        Call::SetTimerPort(v, p) => timers[v as usize] = p,
        Call::MapSharedInfo(g) => assert!(ram(g)),
        Call::SetVcpuInfo(v, gpa) => {
            assert!(v < VCPUS);
            assert!(
                ram(gpa >> 12) && (gpa & 0xfff) <= 4096 - 64,
                "vcpu_info at {gpa:#x}"
            );
        }
        Call::SetRunstateArea(v, gpa) => {
            assert!(v < VCPUS);
            if let Some(gpa) = gpa {
                assert!(ram(gpa >> 12) && ram((gpa + 47) >> 12));
            }
        }
        Call::SetCallbackVector(v) => assert!(v == 0 || v >= 0x10),
        Call::SetVcpuUpcallVector(v, vec) => assert!(v < VCPUS && vec >= 0x10),
        Call::ConsoleWrite(ref t) => assert!(t.len() <= 4096),
        Call::IpiBound(p, v) => {
            assert!(v < VCPUS);
            let mut st = crate::abi::evtchn::EvtchnStatus {
                dom: DOMID_SELF,
                port: p,
                ..Default::default()
            };
            // Still an IPI to `v` unless a later call in the same batch changed it.
            if h.hv.evtchn().status(&mut st).is_ok()
                && st.status == crate::abi::evtchn::EVTCHNSTAT_IPI
            {
                assert_eq!(st.vcpu, v);
            }
        }
        Call::Route(from, to, v) => {
            assert!(v < VCPUS && from != to);
        }
        Call::Shutdown(_) | Call::PortClosed(_) | Call::PortsReset => {}
    }
}

/// Writes a plausible argument structure for `nr`/`args` at `gpa` (in the window), as the
/// guest would have before the call, so that calls get past the first validity checks.
fn plant(h: &Harness, input: &mut Input<'_>, nr: u32, args: [u64; 6], gpa: u64) {
    use crate::abi::{evtchn as ev, gnttab as gt, hvm, memory as m, vcpu as vc};
    let mut b = [0u8; 64];
    let put = |b: &mut [u8; 64], off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    let cmd = args[0] as u32;
    match (nr, cmd) {
        (nr::memory_op, _) => match cmd & 0x3f {
            m::XENMEM_ADD_TO_PHYSMAP => {
                put(&mut b, 0, &input.dom().to_le_bytes());
                put(&mut b, 4, &u32::from(input.u8() % 3).to_le_bytes());
                let idx = input.small(8) | (u64::from(input.one_in(4)) << 31);
                put(&mut b, 8, &idx.to_le_bytes());
                put(&mut b, 16, &input.gfn().to_le_bytes());
            }
            m::XENMEM_MEMORY_MAP => {
                put(&mut b, 0, &(input.small(6) as u32).to_le_bytes());
                put(&mut b, 8, &input.ptr(h).0.to_le_bytes());
            }
            m::XENMEM_CURRENT_RESERVATION | m::XENMEM_MAXIMUM_RESERVATION => {
                put(&mut b, 0, &input.dom().to_le_bytes())
            }
            m::XENMEM_DECREASE_RESERVATION
            | m::XENMEM_POPULATE_PHYSMAP
            | m::XENMEM_INCREASE_RESERVATION => {
                let (list, list_gpa) = input.ptr(h);
                put(&mut b, 0, &list.to_le_bytes());
                put(&mut b, 8, &input.small(8).to_le_bytes());
                put(&mut b, 16, &(input.small(3) as u32).to_le_bytes());
                put(&mut b, 24, &input.dom().to_le_bytes());
                if let Some(l) = list_gpa {
                    for i in 0..u64::from(input.u8() % 8) {
                        let g = input.gfn();
                        if l + 8 * i + 8 <= WINDOW_GPA + WINDOW_LEN {
                            h.put(l + 8 * i, g);
                        }
                    }
                }
            }
            _ => {}
        },
        (nr::hvm_op, hvm::HVMOP_GET_PARAM | hvm::HVMOP_SET_PARAM) => {
            put(&mut b, 0, &input.dom().to_le_bytes());
            put(&mut b, 4, &u32::from(input.u8() % 45).to_le_bytes());
            let value = match input.u8() % 4 {
                0 => (2 << 56) | u64::from(input.u8()),
                1 => u64::from(input.u8()),
                _ => input.u64(),
            };
            put(&mut b, 8, &value.to_le_bytes());
        }
        (nr::hvm_op, hvm::HVMOP_SET_EVTCHN_UPCALL_VECTOR) => {
            put(&mut b, 0, &(input.small(3) as u32).to_le_bytes());
            put(&mut b, 4, &[input.u8()]);
        }
        (nr::event_channel_op, _) => {
            let port = (input.small(24) as u32).to_le_bytes();
            let small = (input.small(3) as u32).to_le_bytes();
            match cmd {
                ev::EVTCHNOP_ALLOC_UNBOUND => {
                    put(&mut b, 0, &input.dom().to_le_bytes());
                    put(&mut b, 2, &input.dom().to_le_bytes());
                }
                ev::EVTCHNOP_BIND_INTERDOMAIN | ev::EVTCHNOP_STATUS => {
                    put(&mut b, 0, &input.dom().to_le_bytes());
                    put(&mut b, 4, &port);
                }
                ev::EVTCHNOP_BIND_VIRQ => {
                    let virq = if input.one_in(2) {
                        0
                    } else {
                        input.small(26) as u32
                    };
                    put(&mut b, 0, &virq.to_le_bytes());
                    put(&mut b, 4, &small);
                }
                ev::EVTCHNOP_BIND_IPI => put(&mut b, 0, &small),
                ev::EVTCHNOP_BIND_VCPU => {
                    put(&mut b, 0, &port);
                    put(&mut b, 4, &small);
                }
                ev::EVTCHNOP_RESET | ev::EVTCHNOP_RESET_CONT => {
                    put(&mut b, 0, &input.dom().to_le_bytes())
                }
                _ => put(&mut b, 0, &port),
            }
        }
        (nr::grant_table_op, gt::GNTTABOP_COPY) => {
            // Copies between low frames and grant references of the guest's own table.
            let mut copies = Vec::new();
            for _ in 0..args[2].min(4) {
                let mut end = [0u8; 16];
                let u = if input.one_in(2) {
                    input.small(16)
                } else {
                    input.small(64)
                };
                end[..8].copy_from_slice(&u.to_le_bytes());
                end[8..10].copy_from_slice(&input.dom().to_le_bytes());
                end[10..12].copy_from_slice(&(input.u16() % 4200).to_le_bytes());
                copies.push(end);
            }
            let mut at = gpa;
            for pair in copies.chunks(2) {
                let mut c = [0u8; 40];
                c[..16].copy_from_slice(&pair[0]);
                c[16..32].copy_from_slice(pair.get(1).unwrap_or(&pair[0]));
                c[32..34].copy_from_slice(&(input.u16() % 300).to_le_bytes());
                c[34..36].copy_from_slice(&u16::from(input.u8() % 4).to_le_bytes());
                if at + 40 <= WINDOW_GPA + WINDOW_LEN {
                    h.put_bytes(at, &c);
                }
                at += 40;
            }
            return;
        }
        (nr::grant_table_op, _) => {
            put(&mut b, 0, &input.dom().to_le_bytes());
            let n = (input.small(5) as u32).to_le_bytes();
            put(&mut b, 4, &n);
            if cmd == gt::GNTTABOP_SET_VERSION {
                put(&mut b, 0, &n);
            }
            put(&mut b, 16, &input.ptr(h).0.to_le_bytes());
        }
        (nr::sched_op, _) => {
            put(&mut b, 0, &input.dom().to_le_bytes());
            let reason = (input.small(8) as u32).to_le_bytes();
            put(&mut b, 4, &reason);
            if cmd != crate::abi::sched::SCHEDOP_REMOTE_SHUTDOWN {
                put(&mut b, 0, &reason);
            }
        }
        (nr::vcpu_op, vc::VCPUOP_REGISTER_VCPU_INFO) => {
            put(&mut b, 0, &input.gfn().to_le_bytes());
            put(&mut b, 8, &u32::from(input.u16() % 4200).to_le_bytes());
            put(&mut b, 12, &u32::from(input.one_in(8)).to_le_bytes());
        }
        (nr::vcpu_op, vc::VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA) => {
            put(&mut b, 0, &input.ptr(h).0.to_le_bytes());
        }
        (nr::xen_version, crate::abi::version::XENVER_GET_FEATURES) => {
            put(&mut b, 0, &(input.small(3) as u32).to_le_bytes());
        }
        _ => return,
    }
    let len = (WINDOW_GPA + WINDOW_LEN - gpa).min(64) as usize;
    // Planted directly: the guest wrote it before, whatever the page's current protection.
    let _ = h.mem.write_slice(&b[..len], GuestAddress(gpa));
}
