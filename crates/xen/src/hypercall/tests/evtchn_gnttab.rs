//! `event_channel_op` and `grant_table_op`: argument copies around the evtchn and gnttab
//! modules, the timer VIRQ hand-off, batch limits and the setup_table frame list.

use vm_memory::ByteValued;

use super::*;
use crate::abi::evtchn::*;
use crate::abi::gnttab::*;
use crate::abi::hypercall as nr;
use crate::abi::DOMID_SELF;
use crate::hypercall::harness::{Call, MEM_FRAMES};

fn evtchn<T: ByteValued>(h: &Harness, vcpu: u32, cmd: u32, op: T) -> (i64, T) {
    h.put(ARG, op);
    let r = h.hv.hypercall(
        vcpu,
        &h.guest,
        nr::event_channel_op,
        [u64::from(cmd), h.gva(ARG), 0, 0, 0, 0],
    );
    (r, h.get(ARG))
}

fn bind_virq(h: &Harness, virq: u32, vcpu: u32) -> (i64, Port) {
    let (r, op) = evtchn(
        h,
        0,
        EVTCHNOP_BIND_VIRQ,
        EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        },
    );
    (r, op.port)
}

#[test]
fn event_channel_copy_in_and_out() {
    let h = harness();
    let (r, op) = evtchn(
        &h,
        0,
        EVTCHNOP_ALLOC_UNBOUND,
        EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 0,
            port: 0,
        },
    );
    assert_eq!(r, 0);
    assert_ne!(op.port, 0, "the port is copied out");
    let (r, ipi) = evtchn(&h, 1, EVTCHNOP_BIND_IPI, EvtchnBindIpi { vcpu: 1, port: 0 });
    assert_eq!(r, 0);
    let (r, _) = evtchn(&h, 1, EVTCHNOP_SEND, EvtchnPort { port: ipi.port });
    assert_eq!(r, 0);
    assert_eq!(*h.notifier.delivered.lock().unwrap(), vec![(ipi.port, 1)]);
    let (r, st) = evtchn(
        &h,
        0,
        EVTCHNOP_STATUS,
        EvtchnStatus {
            dom: DOMID_SELF,
            port: ipi.port,
            ..Default::default()
        },
    );
    assert_eq!(r, 0);
    assert_eq!((st.status, st.vcpu), (EVTCHNSTAT_IPI, 1));
    // Errors of the evtchn module come through as -errno, and nothing is written back.
    let (r, back) = evtchn(&h, 0, EVTCHNOP_CLOSE, EvtchnPort { port: 4095 });
    assert_eq!((r, back.port), (err(Errno::EINVAL), 4095));
    let (r, _) = evtchn(&h, 0, EVTCHNOP_SEND, EvtchnPort { port: u32::MAX });
    assert_eq!(r, err(Errno::EINVAL));
    for cmd in [
        EVTCHNOP_INIT_CONTROL,
        EVTCHNOP_EXPAND_ARRAY,
        EVTCHNOP_SET_PRIORITY,
        15,
        u32::MAX,
    ] {
        let (r, _) = evtchn(&h, 0, cmd, [0u8; 32]);
        assert_eq!(r, err(Errno::ENOSYS), "cmd {cmd}");
    }
    // Faulting arguments, and a result that cannot be copied out.
    let r = h.call(
        nr::event_channel_op,
        [u64::from(EVTCHNOP_BIND_IPI), 0, 0, 0, 0, 0],
    );
    assert_eq!(r, err(Errno::EFAULT));
    let end = (MEM_FRAMES << 12) - 4;
    let r = h.call(
        nr::event_channel_op,
        [u64::from(EVTCHNOP_BIND_IPI), h.gva(end), 0, 0, 0, 0],
    );
    assert_eq!(r, err(Errno::EFAULT), "straddles the end");
    h.guest.set_readonly(Some(ARG));
    let (r, op) = evtchn(&h, 0, EVTCHNOP_BIND_IPI, EvtchnBindIpi { vcpu: 0, port: 0 });
    assert_eq!((r, op.port), (err(Errno::EFAULT), 0));
    h.hv.evtchn().check_invariants();
    // IPIs are handed to the platform (for in-kernel delivery). As in Xen, a bind whose
    // result cannot be copied out stays bound: the guest just never learns the port.
    assert_eq!(
        h.platform.calls(),
        vec![Call::IpiBound(ipi.port, 1), Call::IpiBound(ipi.port + 1, 0)]
    );
}

#[test]
fn timer_virq_goes_to_the_platform() {
    let h = harness();
    let (r, p0) = bind_virq(&h, VIRQ_TIMER, 0);
    assert_eq!(r, 0);
    let (r, p1) = bind_virq(&h, VIRQ_TIMER, 1);
    assert_eq!(r, 0);
    let (r, _) = bind_virq(&h, VIRQ_DEBUG, 0);
    assert_eq!(r, 0);
    assert_eq!(bind_virq(&h, VIRQ_TIMER, 0).0, err(Errno::EEXIST));
    assert_eq!(bind_virq(&h, VIRQ_TIMER, 2).0, err(Errno::ENOENT));
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::SetTimerPort(0, p0), Call::SetTimerPort(1, p1)]
    );
    // Closing the timer port stops the kernel timer; closing another port does not.
    let (r, _) = evtchn(&h, 0, EVTCHNOP_CLOSE, EvtchnPort { port: p1 });
    assert_eq!(r, 0);
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::SetTimerPort(1, 0), Call::PortClosed(p1)]
    );
    // A refused close changes nothing.
    assert_eq!(
        evtchn(&h, 0, EVTCHNOP_CLOSE, EvtchnPort { port: p1 }).0,
        err(Errno::EINVAL)
    );
    assert!(h.platform.calls().is_empty());
    let (r, p1) = bind_virq(&h, VIRQ_TIMER, 1);
    assert_eq!(r, 0);
    h.platform.take();
    // A reset of another domain is refused; of ours, clears every timer.
    assert_ne!(evtchn(&h, 0, EVTCHNOP_RESET, EvtchnReset { dom: 0 }).0, 0);
    assert!(h.platform.calls().is_empty());
    assert_eq!(
        evtchn(&h, 0, EVTCHNOP_RESET, EvtchnReset { dom: DOMID_SELF }).0,
        0
    );
    assert_eq!(
        h.platform.take_calls(),
        vec![
            Call::SetTimerPort(0, 0),
            Call::SetTimerPort(1, 0),
            Call::PortsReset
        ]
    );
    assert_eq!(h.hv.evtchn().virq_port(VIRQ_TIMER, 1), None);
    let _ = p1;
    // A timer that cannot be stopped is reported, but the close still reaches the platform.
    let (r, p0) = bind_virq(&h, VIRQ_TIMER, 0);
    assert_eq!(r, 0);
    h.platform.take();
    h.platform
        .fail_when(|c| matches!(c, Call::SetTimerPort(..)).then_some(Errno::EIO));
    let (r, _) = evtchn(&h, 0, EVTCHNOP_CLOSE, EvtchnPort { port: p0 });
    assert_eq!(r, err(Errno::EIO));
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::SetTimerPort(0, 0), Call::PortClosed(p0)]
    );
    assert_eq!(h.hv.evtchn().virq_port(VIRQ_TIMER, 0), None);
    h.platform.succeed();
    // A platform that cannot take the timer: the bind is undone, so KVM and the table agree.
    h.platform
        .fail_when(|c| matches!(c, Call::SetTimerPort(_, p) if *p != 0).then_some(Errno::EBUSY));
    assert_eq!(bind_virq(&h, VIRQ_TIMER, 0).0, err(Errno::EBUSY));
    assert_eq!(h.hv.evtchn().virq_port(VIRQ_TIMER, 0), None);
    h.platform.succeed();
    assert_eq!(bind_virq(&h, VIRQ_TIMER, 0).0, 0);
    h.hv.evtchn().check_invariants();
}

fn gnttab(h: &Harness, cmd: u32, gpa: u64, count: u64) -> i64 {
    h.call(
        nr::grant_table_op,
        [u64::from(cmd), h.gva(gpa), count, 0, 0, 0],
    )
}

#[test]
fn setup_table_writes_the_frame_list() {
    let h = harness();
    h.put(
        ARG,
        crate::abi::memory::XenAddToPhysmap {
            domid: DOMID_SELF,
            size: 0,
            space: crate::abi::memory::XENMAPSPACE_GRANT_TABLE,
            idx: 0,
            gpfn: 0x90,
        },
    );
    let add = u64::from(crate::abi::memory::XENMEM_ADD_TO_PHYSMAP);
    assert_eq!(h.call(nr::memory_op, [add, h.gva(ARG), 0, 0, 0, 0]), 0);
    let setup = |frame_list: u64, nr_frames: u32| {
        h.put(
            ARG,
            GnttabSetupTable {
                dom: DOMID_SELF,
                nr_frames,
                frame_list,
                ..Default::default()
            },
        );
    };
    h.put(BUF, [0x5555_5555_5555_5555u64; 3]);
    setup(h.gva(BUF), 2);
    assert_eq!(gnttab(&h, GNTTABOP_SETUP_TABLE, ARG, 1), 0);
    assert_eq!(h.get::<GnttabSetupTable>(ARG).status, 0);
    assert_eq!(
        h.get::<[u64; 3]>(BUF),
        [0x90, crate::gnttab::INVALID_GFN, 0x5555_5555_5555_5555]
    );
    // A status the guest reads, not an errno, for a refused table.
    setup(h.gva(BUF), 10_000);
    assert_eq!(gnttab(&h, GNTTABOP_SETUP_TABLE, ARG, 1), 0);
    assert_ne!(h.get::<GnttabSetupTable>(ARG).status, 0);
    // Faulting frame lists: unmapped, at the top of the address space, read-only.
    for list in [0, u64::MAX - 4, h.gva((MEM_FRAMES << 12) - 8)] {
        setup(list, 2);
        assert_eq!(
            gnttab(&h, GNTTABOP_SETUP_TABLE, ARG, 1),
            err(Errno::EFAULT),
            "list {list:#x}"
        );
    }
    h.guest.set_readonly(Some(BUF));
    setup(h.gva(BUF), 1);
    assert_eq!(gnttab(&h, GNTTABOP_SETUP_TABLE, ARG, 1), err(Errno::EFAULT));
}

#[test]
fn grant_table_counts_and_limits() {
    let h = harness();
    h.put(
        ARG,
        GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        },
    );
    assert_eq!(gnttab(&h, GNTTABOP_QUERY_SIZE, ARG, 1), 0);
    assert_eq!(h.get::<GnttabQuerySize>(ARG).max_nr_frames, 64);
    for cmd in [
        GNTTABOP_SETUP_TABLE,
        GNTTABOP_QUERY_SIZE,
        GNTTABOP_SET_VERSION,
        GNTTABOP_GET_VERSION,
    ] {
        assert_eq!(gnttab(&h, cmd, ARG, 2), err(Errno::EINVAL), "cmd {cmd}");
        assert_eq!(gnttab(&h, cmd, ARG, 0), err(Errno::EINVAL), "cmd {cmd}");
    }
    h.put(
        ARG,
        GnttabGetVersion {
            dom: DOMID_SELF,
            ..Default::default()
        },
    );
    assert_eq!(gnttab(&h, GNTTABOP_GET_VERSION, ARG, 1), 0);
    assert_eq!(h.get::<GnttabGetVersion>(ARG).version, 1);
    h.put(ARG, GnttabSetVersion { version: 3 });
    assert_eq!(gnttab(&h, GNTTABOP_SET_VERSION, ARG, 1), err(Errno::EINVAL));
    // Copies: zero elements is fine, the batch limit is E2BIG, beyond 32 bits EINVAL.
    assert_eq!(gnttab(&h, GNTTABOP_COPY, ARG, 0), 0);
    assert_eq!(
        h.call(
            nr::grant_table_op,
            [u64::from(GNTTABOP_COPY), 0, 0, 0, 0, 0]
        ),
        0
    );
    assert_eq!(gnttab(&h, GNTTABOP_COPY, ARG, 1025), err(Errno::E2BIG));
    assert_eq!(
        gnttab(&h, GNTTABOP_COPY, ARG, u64::from(u32::MAX)),
        err(Errno::E2BIG)
    );
    assert_eq!(gnttab(&h, GNTTABOP_COPY, ARG, 1 << 32), err(Errno::EINVAL));
    assert_eq!(gnttab(&h, GNTTABOP_COPY, ARG, u64::MAX), err(Errno::EINVAL));
    // A full batch whose elements run off the mapped memory faults before any copy.
    let end = (MEM_FRAMES << 12) - 40 * 10;
    assert_eq!(gnttab(&h, GNTTABOP_COPY, end, 11), err(Errno::EFAULT));
    let bad = GnttabCopy {
        len: 8,
        status: 0x77,
        ..Default::default()
    };
    for i in 0..10 {
        h.put(end + 40 * i, bad);
    }
    assert_eq!(gnttab(&h, GNTTABOP_COPY, end, 10), 0);
    for i in 0..10 {
        assert!(h.get::<GnttabCopy>(end + 40 * i).status < 0, "element {i}");
    }
    for cmd in [
        GNTTABOP_MAP_GRANT_REF,
        GNTTABOP_UNMAP_GRANT_REF,
        GNTTABOP_TRANSFER,
        11,
        u32::MAX,
    ] {
        assert_eq!(gnttab(&h, cmd, ARG, 1), err(Errno::ENOSYS), "cmd {cmd}");
    }
    assert_eq!(h.hv.gnttab().entries_in_use(), 0);
    assert!(h.platform.calls().is_empty());
}

#[test]
fn loopback_channels_are_routed_in_the_kernel_and_follow_their_vcpu() {
    let h = harness();
    let domid = h.hv.info().domid;
    let (r, a) = evtchn(
        &h,
        0,
        EVTCHNOP_ALLOC_UNBOUND,
        EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: DOMID_SELF,
            port: 0,
        },
    );
    assert_eq!(r, 0);
    let (r, b) = evtchn(
        &h,
        0,
        EVTCHNOP_BIND_INTERDOMAIN,
        EvtchnBindInterdomain {
            remote_dom: domid,
            _pad: 0,
            remote_port: a.port,
            local_port: 0,
        },
    );
    assert_eq!(r, 0);
    let b = b.local_port;
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::Route(b, a.port, 0), Call::Route(a.port, b, 0)]
    );
    // Moving one end to vCPU 1 moves the route that raises it.
    let (r, _) = evtchn(
        &h,
        0,
        EVTCHNOP_BIND_VCPU,
        EvtchnBindVcpu { port: b, vcpu: 1 },
    );
    assert_eq!(r, 0);
    assert_eq!(h.platform.take_calls(), vec![Call::Route(a.port, b, 1)]);
    // Closing one end removes both routes.
    let (r, _) = evtchn(&h, 0, EVTCHNOP_CLOSE, EvtchnPort { port: a.port });
    assert_eq!(r, 0);
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::PortClosed(a.port), Call::PortClosed(b)]
    );
    h.hv.evtchn().check_invariants();
}
