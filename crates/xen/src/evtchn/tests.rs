use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::abi::evtchn::*;
use crate::abi::DOMID_SELF;

const GUEST: DomId = 5;

/// Records every delivery and unmask.
#[derive(Default)]
struct Recorder {
    delivered: Mutex<Vec<(Port, u32)>>,
    unmasked: Mutex<Vec<(Port, u32)>>,
}

impl Notifier for Recorder {
    fn deliver(&self, port: Port, vcpu: u32) {
        self.delivered.lock().unwrap().push((port, vcpu));
    }
    fn unmask(&self, port: Port, vcpu: u32) {
        self.unmasked.lock().unwrap().push((port, vcpu));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(Port, u32)> {
        std::mem::take(&mut *self.delivered.lock().unwrap())
    }
}

fn setup(nr_vcpus: u32) -> (EventChannels, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let ch = EventChannels::new(EvtchnConfig::new(GUEST, nr_vcpus), rec.clone()).unwrap();
    (ch, rec)
}

fn alloc(ch: &EventChannels, remote: DomId) -> Port {
    let mut op = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    ch.alloc_unbound(&mut op).unwrap();
    op.port
}

fn status(ch: &EventChannels, port: Port) -> Result<EvtchnStatus, Errno> {
    let mut op = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    ch.status(&mut op).map(|()| op)
}

fn ipi(ch: &EventChannels, vcpu: u32) -> Result<Port, Errno> {
    let mut op = EvtchnBindIpi { vcpu, port: 0 };
    ch.bind_ipi(&mut op).map(|()| op.port)
}

fn virq(ch: &EventChannels, virq: u32, vcpu: u32) -> Result<Port, Errno> {
    let mut op = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    ch.bind_virq(&mut op).map(|()| op.port)
}

/// A backend handler counting notifications.
fn counter() -> (Arc<AtomicU32>, Arc<dyn BackendHandler>) {
    let n = Arc::new(AtomicU32::new(0));
    let n2 = n.clone();
    (
        n,
        Arc::new(move |_port: Port| {
            n2.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

#[test]
fn config_is_validated() {
    let rec: Arc<dyn Notifier> = Arc::new(Recorder::default());
    let mut cfg = EvtchnConfig::new(0, 1);
    assert_eq!(
        EventChannels::new(cfg, rec.clone()).unwrap_err(),
        ConfigError::SameDomain(0)
    );
    cfg.domid = DOMID_SELF;
    assert_eq!(
        EventChannels::new(cfg, rec.clone()).unwrap_err(),
        ConfigError::ReservedDomid(DOMID_SELF)
    );
    cfg.domid = 1;
    cfg.max_ports = 4097;
    assert_eq!(
        EventChannels::new(cfg, rec.clone()).unwrap_err(),
        ConfigError::BadLimit(4097)
    );
    cfg.max_ports = 4096;
    cfg.nr_vcpus = 0;
    assert_eq!(
        EventChannels::new(cfg, rec.clone()).unwrap_err(),
        ConfigError::NoVcpus
    );
    cfg.nr_vcpus = 1;
    let ch = EventChannels::new(cfg, rec).unwrap();
    assert_eq!(ch.domid(), 1);
    assert!(format!("{ch:?}").contains("guest_ports_in_use: 0"));
}

#[test]
fn alloc_unbound_starts_at_port_one_and_reports_status() {
    let (ch, _) = setup(2);
    assert_eq!(alloc(&ch, 0), 1, "port 0 is reserved");
    assert_eq!(alloc(&ch, DOMID_SELF), 2);
    let s = status(&ch, 1).unwrap();
    assert_eq!(
        (s.status, s.remote_dom(), s.vcpu),
        (EVTCHNSTAT_UNBOUND, 0, 0)
    );
    let s = status(&ch, 2).unwrap();
    assert_eq!(
        s.remote_dom(),
        GUEST,
        "DOMID_SELF as remote means the caller"
    );
    assert_eq!(status(&ch, 0).unwrap().status, EVTCHNSTAT_CLOSED);
    assert_eq!(
        status(&ch, 3).unwrap().status,
        EVTCHNSTAT_CLOSED,
        "free port in a bucket"
    );
}

#[test]
fn alloc_unbound_in_another_domain_is_refused() {
    let (ch, _) = setup(1);
    let mut op = EvtchnAllocUnbound {
        dom: 0,
        remote_dom: GUEST,
        port: 0,
    };
    assert_eq!(
        ch.alloc_unbound(&mut op),
        Err(Errno::EPERM),
        "the backend domain"
    );
    op.dom = 77;
    assert_eq!(
        ch.alloc_unbound(&mut op),
        Err(Errno::ESRCH),
        "no such domain"
    );
    op.dom = GUEST;
    assert_eq!(
        ch.alloc_unbound(&mut op),
        Ok(()),
        "own id works like DOMID_SELF"
    );
}

#[test]
fn port_space_runs_out_with_enospc() {
    let rec: Arc<dyn Notifier> = Arc::new(Recorder::default());
    let cfg = EvtchnConfig {
        max_ports: 130,
        ..EvtchnConfig::new(GUEST, 1)
    };
    let ch = EventChannels::new(cfg, rec).unwrap();
    for expect in 1..130 {
        assert_eq!(alloc(&ch, 0), expect);
    }
    let mut op = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 0,
        port: 0,
    };
    assert_eq!(ch.alloc_unbound(&mut op), Err(Errno::ENOSPC));
    assert_eq!(ipi(&ch, 0), Err(Errno::ENOSPC));
    assert_eq!(virq(&ch, VIRQ_TIMER, 0), Err(Errno::ENOSPC));
    ch.close(64).unwrap();
    assert_eq!(alloc(&ch, 0), 64, "the lowest free port is reused");
    assert_eq!(status(&ch, 130), Err(Errno::EINVAL), "beyond the limit");
}

#[test]
fn full_2l_table_holds_4095_ports() {
    let (ch, _) = setup(1);
    for _ in 1..EVTCHN_2L_NR_CHANNELS {
        alloc(&ch, 0);
    }
    let mut op = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: 0,
        port: 0,
    };
    assert_eq!(ch.alloc_unbound(&mut op), Err(Errno::ENOSPC));
    assert_eq!(status(&ch, 4095).unwrap().status, EVTCHNSTAT_UNBOUND);
    assert_eq!(status(&ch, 4096), Err(Errno::EINVAL));
}

#[test]
fn hostile_ports_are_einval() {
    let (ch, _) = setup(1);
    for port in [64, 4095, 4096, 1 << 20, u32::MAX] {
        assert_eq!(ch.close(port), Err(Errno::EINVAL), "close {port}");
        assert_eq!(ch.send(port), Err(Errno::EINVAL), "send {port}");
        assert_eq!(ch.unmask(port), Err(Errno::EINVAL), "unmask {port}");
        assert_eq!(
            ch.bind_vcpu(port, 0),
            Err(Errno::EINVAL),
            "bind_vcpu {port}"
        );
        assert_eq!(status(&ch, port), Err(Errno::EINVAL), "status {port}");
    }
}

#[test]
fn close_twice_and_close_reserved_are_einval() {
    let (ch, _) = setup(1);
    let p = alloc(&ch, 0);
    assert_eq!(ch.close(p), Ok(()));
    assert_eq!(ch.close(p), Err(Errno::EINVAL));
    assert_eq!(ch.close(0), Err(Errno::EINVAL), "port 0 is reserved");
    assert_eq!(ch.close(5), Err(Errno::EINVAL), "never allocated");
    assert_eq!(status(&ch, p).unwrap().status, EVTCHNSTAT_CLOSED);
}

#[test]
fn ipi_delivers_to_its_vcpu() {
    let (ch, rec) = setup(4);
    let p = ipi(&ch, 3).unwrap();
    let s = status(&ch, p).unwrap();
    assert_eq!((s.status, s.vcpu), (EVTCHNSTAT_IPI, 3));
    ch.send(p).unwrap();
    assert_eq!(rec.take(), vec![(p, 3)]);
    assert_eq!(ipi(&ch, 4), Err(Errno::ENOENT), "no such vCPU");
    assert_eq!(ipi(&ch, u32::MAX), Err(Errno::ENOENT));
    assert_eq!(ch.bind_vcpu(p, 1), Err(Errno::EINVAL), "IPIs cannot move");
}

#[test]
fn virq_binding_rules() {
    let (ch, rec) = setup(2);
    let t0 = virq(&ch, VIRQ_TIMER, 0).unwrap();
    let t1 = virq(&ch, VIRQ_TIMER, 1).unwrap();
    assert_ne!(t0, t1);
    assert_eq!(
        virq(&ch, VIRQ_TIMER, 1),
        Err(Errno::EEXIST),
        "bound twice on one vCPU"
    );
    assert_eq!(virq(&ch, VIRQ_TIMER, 2), Err(Errno::ENOENT));
    assert_eq!(virq(&ch, NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(virq(&ch, u32::MAX, 0), Err(Errno::EINVAL));
    assert_eq!(
        virq(&ch, VIRQ_CONSOLE, 0),
        Err(Errno::EBUSY),
        "global VIRQ is dom0's"
    );
    assert_eq!(
        virq(&ch, VIRQ_CONSOLE, 1),
        Err(Errno::EINVAL),
        "global VIRQ on vCPU 1"
    );
    assert_eq!(
        virq(&ch, VIRQ_ARGO, 1),
        Err(Errno::EINVAL),
        "per-domain VIRQ on vCPU 1"
    );
    let argo = virq(&ch, VIRQ_ARGO, 0).unwrap();
    assert_eq!(virq(&ch, VIRQ_ARGO, 0), Err(Errno::EEXIST));

    let s = status(&ch, t1).unwrap();
    assert_eq!(
        (s.status, s.virq(), s.vcpu),
        (EVTCHNSTAT_VIRQ, VIRQ_TIMER, 1)
    );
    assert_eq!(
        ch.send(t0),
        Err(Errno::EINVAL),
        "guests cannot send on a VIRQ"
    );

    assert_eq!(ch.virq_port(VIRQ_TIMER, 1), Some((t1, 1)));
    assert_eq!(
        ch.virq_port(VIRQ_ARGO, 1),
        Some((argo, 0)),
        "per-domain: vCPU 0's binding"
    );
    assert_eq!(ch.virq_port(VIRQ_DEBUG, 0), None);
    assert_eq!(ch.virq_port(u32::MAX, u32::MAX), None);
    assert!(ch.send_virq(VIRQ_TIMER, 1));
    assert!(ch.send_virq(VIRQ_TIMER, 0));
    assert!(!ch.send_virq(VIRQ_DEBUG, 0), "not bound");
    assert!(!ch.send_virq(VIRQ_TIMER, 9), "no such vCPU");
    assert!(!ch.send_virq(u32::MAX, 0));
    assert_eq!(rec.take(), vec![(t1, 1), (t0, 0)]);

    // A per-vCPU VIRQ stays on its vCPU; a per-domain one may move.
    assert_eq!(ch.bind_vcpu(t0, 1), Err(Errno::EINVAL));
    ch.bind_vcpu(argo, 1).unwrap();
    assert!(ch.send_virq(VIRQ_ARGO, 0));
    assert_eq!(rec.take(), vec![(argo, 1)]);

    // Closing frees the VIRQ for a new binding.
    ch.close(t1).unwrap();
    assert!(!ch.send_virq(VIRQ_TIMER, 1));
    assert_eq!(virq(&ch, VIRQ_TIMER, 1), Ok(t1));
    ch.close(argo).unwrap();
    assert_eq!(virq(&ch, VIRQ_ARGO, 0), Ok(argo));
}

#[test]
fn loopback_interdomain_within_the_guest() {
    let (ch, rec) = setup(2);
    let a = alloc(&ch, DOMID_SELF);
    let mut op = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        ..Default::default()
    };
    ch.bind_interdomain(&mut op).unwrap();
    let b = op.local_port;
    assert_eq!(
        rec.take(),
        vec![(b, 0)],
        "a new interdomain port starts raised"
    );
    let s = status(&ch, a).unwrap();
    assert_eq!(
        (s.status, s.remote_dom(), s.remote_port()),
        (EVTCHNSTAT_INTERDOMAIN, GUEST, b)
    );
    ch.bind_vcpu(a, 1).unwrap();
    ch.send(b).unwrap();
    ch.send(a).unwrap();
    assert_eq!(rec.take(), vec![(a, 1), (b, 0)]);
    // Binding an already-connected port again fails.
    let mut again = EvtchnBindInterdomain {
        remote_dom: GUEST,
        remote_port: a,
        ..Default::default()
    };
    assert_eq!(ch.bind_interdomain(&mut again), Err(Errno::EINVAL));
    // Closing one end leaves the other unbound, waiting for us again.
    ch.close(b).unwrap();
    let s = status(&ch, a).unwrap();
    assert_eq!((s.status, s.remote_dom()), (EVTCHNSTAT_UNBOUND, GUEST));
    ch.send(a).unwrap();
    assert!(
        rec.take().is_empty(),
        "sends on an unbound port are dropped"
    );
}

#[test]
fn bind_interdomain_checks_the_remote_port() {
    let (ch, _) = setup(1);
    let for_other = alloc(&ch, 9);
    let mut op = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: for_other,
        ..Default::default()
    };
    assert_eq!(
        ch.bind_interdomain(&mut op),
        Err(Errno::EINVAL),
        "port waits for dom9"
    );
    op.remote_port = u32::MAX;
    assert_eq!(ch.bind_interdomain(&mut op), Err(Errno::EINVAL));
    op.remote_port = 0;
    assert_eq!(
        ch.bind_interdomain(&mut op),
        Err(Errno::EINVAL),
        "reserved port"
    );
    op.remote_dom = 1234;
    assert_eq!(ch.bind_interdomain(&mut op), Err(Errno::ESRCH));
    op.remote_dom = 0;
    op.remote_port = 1;
    assert_eq!(
        ch.bind_interdomain(&mut op),
        Err(Errno::EINVAL),
        "no backend port 1"
    );
    // Failed binds must not leak the port they allocated.
    assert_eq!(alloc(&ch, 0), 2);
}

#[test]
fn backend_binds_guest_port_and_both_sides_notify() {
    let (ch, rec) = setup(2);
    let gport = alloc(&ch, 0);
    ch.bind_vcpu(gport, 1).unwrap();
    let (count, handler) = counter();
    let h = ch.backend_bind(gport, handler).unwrap();
    assert_eq!(h.guest_port(), Some(gport));
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "new backend port starts raised"
    );
    let s = status(&ch, gport).unwrap();
    assert_eq!(
        (s.status, s.remote_dom(), s.remote_port()),
        (EVTCHNSTAT_INTERDOMAIN, 0, h.port())
    );
    assert_eq!(s.vcpu, 1, "binding keeps the guest port's vCPU");

    ch.send(gport).unwrap();
    ch.send(gport).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    h.notify().unwrap();
    assert_eq!(rec.take(), vec![(gport, 1)]);

    // The guest closes its end: the backend port is unbound, its sends dropped.
    ch.close(gport).unwrap();
    assert_eq!(h.guest_port(), None);
    h.notify().unwrap();
    assert!(rec.take().is_empty());
    // The guest re-binds to the backend's (now unbound) port.
    let mut op = EvtchnBindInterdomain {
        remote_dom: 0,
        remote_port: h.port(),
        ..Default::default()
    };
    ch.bind_interdomain(&mut op).unwrap();
    assert_eq!(h.guest_port(), Some(op.local_port));
    rec.take();
    h.notify().unwrap();
    assert_eq!(rec.take(), vec![(op.local_port, 0)]);
    // Dropping the handle closes the backend end: the guest port waits for dom0 again.
    drop(h);
    let s = status(&ch, op.local_port).unwrap();
    assert_eq!((s.status, s.remote_dom()), (EVTCHNSTAT_UNBOUND, 0));
}

#[test]
fn backend_cannot_bind_ports_not_offered_to_it() {
    let (ch, _) = setup(1);
    let (_, handler) = counter();
    let for_self = alloc(&ch, DOMID_SELF);
    assert_eq!(
        ch.backend_bind(for_self, handler.clone()).unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        ch.backend_bind(0, handler.clone()).unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        ch.backend_bind(u32::MAX, handler.clone()).unwrap_err(),
        Errno::EINVAL
    );
    let p = ipi(&ch, 0).unwrap();
    assert_eq!(
        ch.backend_bind(p, handler.clone()).unwrap_err(),
        Errno::EINVAL
    );
    let g = alloc(&ch, 0);
    let h = ch.backend_bind(g, handler.clone()).unwrap();
    assert_eq!(
        ch.backend_bind(g, handler).unwrap_err(),
        Errno::EINVAL,
        "bound twice"
    );
    h.close().unwrap();
}

#[test]
fn backend_alloc_unbound_and_toolstack_ports() {
    let (ch, rec) = setup(1);
    let (count, handler) = counter();
    let h = ch.backend_alloc_unbound(handler).unwrap();
    assert_eq!(h.guest_port(), None);
    h.notify().unwrap();
    assert!(rec.take().is_empty());
    let mut op = EvtchnBindInterdomain {
        remote_dom: 0,
        remote_port: h.port(),
        ..Default::default()
    };
    ch.bind_interdomain(&mut op).unwrap();
    ch.send(op.local_port).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // The toolstack's Xenstore port: unbound in the guest, for dom0.
    let store = ch.host_alloc_unbound(0).unwrap();
    assert_eq!(status(&ch, store).unwrap().remote_dom(), 0);
    let (store_count, store_handler) = counter();
    let sh = ch.backend_bind(store, store_handler).unwrap();
    ch.send(store).unwrap();
    assert_eq!(
        store_count.load(Ordering::SeqCst),
        2,
        "initial raise plus the send"
    );
    sh.close().unwrap();
}

#[test]
fn handlers_may_call_back_into_the_channels() {
    let (ch, rec) = setup(1);
    let gport = alloc(&ch, 0);
    let slot: Arc<Mutex<Option<BackendHandle>>> = Arc::new(Mutex::new(None));
    let slot2 = slot.clone();
    // An echo backend: answers every guest event at once, from inside the callback.
    let handler = Arc::new(move |_p: Port| {
        if let Some(h) = slot2.lock().unwrap().as_ref() {
            h.notify().unwrap();
        }
    });
    let h = ch.backend_bind(gport, handler).unwrap();
    *slot.lock().unwrap() = Some(h);
    ch.send(gport).unwrap();
    assert_eq!(rec.take(), vec![(gport, 0)]);
    slot.lock().unwrap().take();
}

#[test]
fn bind_vcpu_rules() {
    let (ch, _) = setup(2);
    let p = alloc(&ch, 0);
    assert_eq!(ch.bind_vcpu(p, 2), Err(Errno::ENOENT));
    assert_eq!(
        ch.bind_vcpu(u32::MAX, 2),
        Err(Errno::ENOENT),
        "vCPU is checked first"
    );
    assert_eq!(ch.bind_vcpu(p, 1), Ok(()));
    assert_eq!(status(&ch, p).unwrap().vcpu, 1);
    assert_eq!(ch.bind_vcpu(0, 1), Err(Errno::EINVAL), "reserved port");
    assert_eq!(ch.bind_vcpu(40, 1), Err(Errno::EINVAL), "free port");
    ch.close(p).unwrap();
    assert_eq!(status(&ch, p).unwrap().vcpu, 0, "closing resets the vCPU");
}

#[test]
fn unmask_goes_to_the_notifier() {
    let (ch, rec) = setup(2);
    let p = ipi(&ch, 1).unwrap();
    ch.unmask(p).unwrap();
    ch.unmask(7).unwrap();
    assert_eq!(*rec.unmasked.lock().unwrap(), vec![(p, 1), (7, 0)]);
}

#[test]
fn reset_closes_everything() {
    let (ch, rec) = setup(2);
    let a = alloc(&ch, 0);
    let (count, handler) = counter();
    let h = ch.backend_bind(a, handler).unwrap();
    let t = virq(&ch, VIRQ_TIMER, 1).unwrap();
    let i = ipi(&ch, 0).unwrap();
    assert_eq!(ch.reset(1234), Err(Errno::ESRCH));
    assert_eq!(ch.reset(0), Err(Errno::EPERM));
    ch.reset(DOMID_SELF).unwrap();
    for p in [a, t, i] {
        assert_eq!(status(&ch, p).unwrap().status, EVTCHNSTAT_CLOSED);
    }
    assert!(!ch.send_virq(VIRQ_TIMER, 1));
    assert_eq!(
        virq(&ch, VIRQ_TIMER, 1),
        Ok(1),
        "VIRQ free again, lowest port reused"
    );
    h.notify().unwrap();
    assert!(
        rec.take().is_empty(),
        "backend end is unbound after the reset"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn status_of_other_domains() {
    let (ch, _) = setup(1);
    let mut op = EvtchnStatus {
        dom: 0,
        port: 1,
        ..Default::default()
    };
    assert_eq!(ch.status(&mut op), Err(Errno::EPERM));
    op.dom = 42;
    assert_eq!(ch.status(&mut op), Err(Errno::ESRCH));
    op.dom = GUEST;
    op.u = [9, 9];
    ch.status(&mut op).unwrap();
    assert_eq!(
        (op.status, op.u),
        (EVTCHNSTAT_CLOSED, [0, 0]),
        "stale union is cleared"
    );
}

#[test]
fn pirqs_are_refused() {
    let (ch, _) = setup(1);
    let mut op = EvtchnBindPirq {
        pirq: 0,
        flags: BIND_PIRQ_WILL_SHARE,
        port: 0,
    };
    assert_eq!(ch.bind_pirq(&mut op), Err(Errno::EINVAL));
}

#[test]
fn raw_hypercall_dispatch() {
    use vm_memory::ByteValued;
    let (ch, rec) = setup(2);
    let mut op = EvtchnBindIpi { vcpu: 1, port: 0 };
    ch.hypercall(EVTCHNOP_BIND_IPI, op.as_mut_slice()).unwrap();
    assert_eq!(op.port, 1);
    let mut send = EvtchnPort { port: 1 };
    ch.hypercall(EVTCHNOP_SEND, send.as_mut_slice()).unwrap();
    assert_eq!(rec.take(), vec![(1, 1)]);
    // An unaligned buffer with trailing bytes works; a short one is EFAULT.
    let mut buf = [0u8; 1 + 24 + 3];
    let mut st = EvtchnStatus {
        dom: DOMID_SELF,
        port: 1,
        ..Default::default()
    };
    buf[1..25].copy_from_slice(st.as_slice());
    ch.hypercall(EVTCHNOP_STATUS, &mut buf[1..]).unwrap();
    st.as_mut_slice().copy_from_slice(&buf[1..25]);
    assert_eq!((st.status, st.vcpu), (EVTCHNSTAT_IPI, 1));
    assert_eq!(
        ch.hypercall(EVTCHNOP_STATUS, &mut buf[..23]),
        Err(Errno::EFAULT)
    );
    let mut big = [0u8; 64];
    for cmd in [
        EVTCHNOP_INIT_CONTROL,
        EVTCHNOP_EXPAND_ARRAY,
        EVTCHNOP_SET_PRIORITY,
        15,
        u32::MAX,
    ] {
        assert_eq!(ch.hypercall(cmd, &mut big), Err(Errno::ENOSYS), "cmd {cmd}");
        assert_eq!(arg_size(cmd), None);
    }
    assert_eq!(arg_size(EVTCHNOP_STATUS), Some(24));
    assert_eq!(arg_size(EVTCHNOP_RESET_CONT), Some(2));
    // A failed op leaves the caller's buffer untouched.
    let mut bad = EvtchnAllocUnbound {
        dom: 99,
        remote_dom: 0,
        port: 0xdead,
    };
    assert_eq!(
        ch.hypercall(EVTCHNOP_ALLOC_UNBOUND, bad.as_mut_slice()),
        Err(Errno::ESRCH)
    );
    assert_eq!(bad.port, 0xdead);
}
