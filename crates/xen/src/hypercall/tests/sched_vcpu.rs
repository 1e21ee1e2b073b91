//! `sched_op` and `vcpu_op`.

use super::*;
use crate::abi::hypercall as nr;
use crate::abi::sched::*;
use crate::abi::vcpu::*;
use crate::abi::DOMID_SELF;
use crate::hypercall::harness::{Call, HOLE, MEM_FRAMES};

fn sched(h: &Harness, cmd: u32, gpa: u64) -> i64 {
    h.call(nr::sched_op, [u64::from(cmd), h.gva(gpa), 0, 0, 0, 0])
}

#[test]
fn yield_block_poll() {
    let h = harness();
    assert_eq!(
        h.call(nr::sched_op, [u64::from(SCHEDOP_YIELD), 0, 0, 0, 0, 0]),
        0
    );
    assert_eq!(
        h.call(nr::sched_op, [u64::from(SCHEDOP_BLOCK), 0, 0, 0, 0, 0]),
        0
    );
    h.put(
        ARG,
        SchedPoll {
            ports: h.gva(BUF),
            nr_ports: 1,
            _pad: 0,
            timeout: 0,
        },
    );
    assert_eq!(sched(&h, SCHEDOP_POLL, ARG), 0);
    assert_eq!(
        h.call(nr::sched_op, [u64::from(SCHEDOP_POLL), 0, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    for cmd in [SCHEDOP_WATCHDOG, SCHEDOP_PIN_OVERRIDE, 8, u32::MAX] {
        assert_eq!(sched(&h, cmd, ARG), err(Errno::ENOSYS), "cmd {cmd}");
    }
    assert!(h.platform.calls().is_empty());
}

#[test]
fn shutdown_reasons() {
    let h = harness();
    for code in 0..=SHUTDOWN_MAX {
        h.put(ARG, SchedShutdown { reason: code });
        assert_eq!(sched(&h, SCHEDOP_SHUTDOWN, ARG), 0);
        let want = ShutdownReason::from_code(code).unwrap();
        assert_eq!(want as u32, code);
        assert_eq!(h.platform.take().pop().unwrap().0, Call::Shutdown(want));
        // shutdown_code only records the reason.
        assert_eq!(sched(&h, SCHEDOP_SHUTDOWN_CODE, ARG), 0);
        assert!(h.platform.calls().is_empty());
    }
    for bad in [SHUTDOWN_MAX + 1, 255, u32::MAX] {
        h.put(ARG, SchedShutdown { reason: bad });
        assert_eq!(sched(&h, SCHEDOP_SHUTDOWN, ARG), err(Errno::EINVAL));
        assert_eq!(sched(&h, SCHEDOP_SHUTDOWN_CODE, ARG), err(Errno::EINVAL));
    }
    assert_eq!(
        h.call(nr::sched_op, [u64::from(SCHEDOP_SHUTDOWN), 0, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    assert!(h.platform.calls().is_empty());
}

#[test]
fn remote_shutdown() {
    let h = harness();
    let remote = |dom: u16, reason: u32| {
        h.put(
            ARG,
            SchedRemoteShutdown {
                domain_id: dom,
                _pad: 0,
                reason,
            },
        );
        sched(&h, SCHEDOP_REMOTE_SHUTDOWN, ARG)
    };
    assert_eq!(remote(0, 0), err(Errno::ESRCH));
    assert_eq!(remote(6, 1), err(Errno::ESRCH));
    assert_eq!(remote(DOMID_SELF, 9), err(Errno::EINVAL));
    assert!(h.platform.calls().is_empty());
    assert_eq!(remote(5, 1), 0);
    assert_eq!(remote(DOMID_SELF, 0), 0);
    assert_eq!(
        h.platform.calls(),
        vec![
            Call::Shutdown(ShutdownReason::Reboot),
            Call::Shutdown(ShutdownReason::Poweroff)
        ]
    );
}

fn vcpu_op(h: &Harness, cmd: u32, vcpu: u64, gpa: u64) -> i64 {
    h.call(nr::vcpu_op, [u64::from(cmd), vcpu, h.gva(gpa), 0, 0, 0])
}

#[test]
fn register_vcpu_info() {
    let h = harness();
    let reg = |vcpu: u64, mfn: u64, offset: u32, rsvd: u32| {
        h.put(ARG, VcpuRegisterVcpuInfo { mfn, offset, rsvd });
        vcpu_op(&h, VCPUOP_REGISTER_VCPU_INFO, vcpu, ARG)
    };
    assert_eq!(reg(0, 0x80, 0x40, 0), 0);
    assert_eq!(reg(1, 0x80, 4096 - 64, 0), 0, "ends at the page end");
    assert_eq!(
        h.platform.calls(),
        vec![Call::SetVcpuInfo(0, 0x80040), Call::SetVcpuInfo(1, 0x80fc0)]
    );
    h.platform.take();
    assert_eq!(
        reg(0, 0x80, 4096 - 63, 0),
        err(Errno::EINVAL),
        "crosses a page"
    );
    assert_eq!(reg(0, 0x80, u32::MAX, 0), err(Errno::EINVAL));
    assert_eq!(reg(0, 0x80, 0, 1), err(Errno::EINVAL), "rsvd");
    assert_eq!(reg(0, HOLE.start, 0, 0), err(Errno::EINVAL), "not RAM");
    assert_eq!(reg(0, MEM_FRAMES, 0, 0), err(Errno::EINVAL));
    assert_eq!(reg(0, u64::MAX, 0, 0), err(Errno::EINVAL), "overflows");
    assert_eq!(
        reg(0, u64::MAX >> 12, 4032, 0),
        err(Errno::EINVAL),
        "top of the address space"
    );
    assert_eq!(reg(2, 0x80, 0, 0), err(Errno::ENOENT));
    assert_eq!(reg(u64::from(u32::MAX), 0x80, 0, 0), err(Errno::ENOENT));
    assert!(h.platform.calls().is_empty());
    assert_eq!(
        h.call(
            nr::vcpu_op,
            [u64::from(VCPUOP_REGISTER_VCPU_INFO), 0, 0, 0, 0, 0]
        ),
        err(Errno::EFAULT)
    );
    h.platform.fail_when(|_| Some(Errno::ENOMEM));
    assert_eq!(reg(0, 0x80, 0, 0), err(Errno::ENOMEM));
}

#[test]
fn runstate_area() {
    let h = harness();
    let reg = |vcpu: u64, addr: u64| {
        h.put(ARG, VcpuRegisterMemoryArea { addr });
        vcpu_op(&h, VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, vcpu, ARG)
    };
    assert_eq!(reg(1, h.gva(0x5000)), 0);
    assert_eq!(reg(0, 0), 0, "address 0 stops the updates");
    assert_eq!(
        h.platform.calls(),
        vec![
            Call::SetRunstateArea(1, Some(0x5000)),
            Call::SetRunstateArea(0, None)
        ]
    );
    h.platform.take();
    assert_eq!(reg(0, 0x1000), err(Errno::EFAULT), "unmapped");
    assert_eq!(
        reg(0, h.gva(HOLE.start << 12)),
        err(Errno::EFAULT),
        "not RAM"
    );
    assert_eq!(
        reg(0, h.gva((MEM_FRAMES << 12) - 8)),
        err(Errno::EFAULT),
        "runs off RAM"
    );
    assert_eq!(reg(0, u64::MAX), err(Errno::EFAULT));
    assert_eq!(reg(0, u64::MAX - 47), err(Errno::EFAULT));
    assert_eq!(reg(2, h.gva(0x5000)), err(Errno::ENOENT));
    // The area's tail must be mapped as well.
    h.guest.set_window(ARG - 0x1000, 0x1000 + 8);
    assert_eq!(reg(0, h.gva(ARG - 48)), 0);
    assert_eq!(reg(0, h.gva(ARG + 8 - 47)), err(Errno::EFAULT));
    h.platform.take();
    assert!(h.platform.calls().is_empty());
}

#[test]
fn timers_is_up_and_unknown() {
    let h = harness();
    assert_eq!(vcpu_op(&h, VCPUOP_IS_UP, 0, 0), 1);
    assert_eq!(vcpu_op(&h, VCPUOP_IS_UP, 1, 0), 1);
    assert_eq!(vcpu_op(&h, VCPUOP_IS_UP, 2, 0), err(Errno::ENOENT));
    assert_eq!(vcpu_op(&h, VCPUOP_STOP_PERIODIC_TIMER, 1, 0), 0);
    h.put(
        ARG,
        VcpuSetSingleshotTimer {
            timeout_abs_ns: 1_000_000,
            flags: VCPU_SSHOTTMR_FUTURE,
            _pad: 0,
        },
    );
    // KVM runs the timers once VIRQ_TIMER is bound; before that Linux falls back.
    assert_eq!(
        vcpu_op(&h, VCPUOP_SET_SINGLESHOT_TIMER, 0, ARG),
        err(Errno::EINVAL)
    );
    assert_eq!(
        vcpu_op(&h, VCPUOP_STOP_SINGLESHOT_TIMER, 0, ARG),
        err(Errno::EINVAL)
    );
    for cmd in [
        VCPUOP_INITIALISE,
        VCPUOP_UP,
        VCPUOP_DOWN,
        VCPUOP_GET_RUNSTATE_INFO,
        VCPUOP_SET_PERIODIC_TIMER,
        VCPUOP_SEND_NMI,
        VCPUOP_GET_PHYSID,
        VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA,
        VCPUOP_REGISTER_RUNSTATE_PHYS_AREA,
        u32::MAX,
    ] {
        assert_eq!(vcpu_op(&h, cmd, 0, ARG), err(Errno::ENOSYS), "cmd {cmd}");
    }
    assert!(h.platform.calls().is_empty());
}
