//! `hvm_op`: parameters, the callback vector, per-vCPU upcall vectors.

use super::*;
use crate::abi::hvm::*;
use crate::abi::hypercall as nr;
use crate::abi::DOMID_SELF;
use crate::hypercall::harness::Call;

fn param(h: &Harness, cmd: u32, domid: u16, index: u32, value: u64) -> i64 {
    h.put(
        ARG,
        XenHvmParam {
            domid,
            _pad: 0,
            index,
            value,
        },
    );
    h.call(nr::hvm_op, [u64::from(cmd), h.gva(ARG), 0, 0, 0, 0])
}

fn get(h: &Harness, index: u32) -> Result<u64, i64> {
    match param(h, HVMOP_GET_PARAM, DOMID_SELF, index, 0xdead) {
        0 => Ok(h.get::<XenHvmParam>(ARG).value),
        e => Err(e),
    }
}

#[test]
fn get_and_set_params() {
    let h = harness();
    h.hv.set_param(HVM_PARAM_STORE_PFN, 0xfeffc).unwrap();
    h.hv.set_param(HVM_PARAM_STORE_EVTCHN, 1).unwrap();
    assert_eq!(get(&h, HVM_PARAM_STORE_PFN), Ok(0xfeffc));
    assert_eq!(get(&h, HVM_PARAM_STORE_EVTCHN), Ok(1));
    assert_eq!(get(&h, HVM_PARAM_TIMER_MODE), Ok(0));
    assert_eq!(
        param(&h, HVMOP_SET_PARAM, DOMID_SELF, HVM_PARAM_TIMER_MODE, 2),
        0
    );
    assert_eq!(get(&h, HVM_PARAM_TIMER_MODE), Ok(2));
    assert_eq!(param(&h, HVMOP_SET_PARAM, 5, HVM_PARAM_TIMER_MODE, 3), 0);
    assert_eq!(h.hv.param(HVM_PARAM_TIMER_MODE), Some(3));

    for index in [HVM_NR_PARAMS, HVM_NR_PARAMS + 1, u32::MAX] {
        assert_eq!(get(&h, index), Err(err(Errno::EINVAL)), "get {index}");
        let r = param(&h, HVMOP_SET_PARAM, DOMID_SELF, index, 1);
        assert_eq!(r, err(Errno::EINVAL), "set {index}");
    }
    assert_eq!(h.hv.set_param(HVM_NR_PARAMS, 1), Err(Errno::EINVAL));
    for dom in [0, 6, crate::abi::DOMID_IO] {
        assert_eq!(param(&h, HVMOP_GET_PARAM, dom, 1, 0), err(Errno::ESRCH));
        assert_eq!(param(&h, HVMOP_SET_PARAM, dom, 10, 0), err(Errno::ESRCH));
    }
    // The toolstack's parameters are read-only to the guest.
    for index in [
        HVM_PARAM_STORE_PFN,
        HVM_PARAM_STORE_EVTCHN,
        HVM_PARAM_CONSOLE_PFN,
        HVM_PARAM_CONSOLE_EVTCHN,
        HVM_PARAM_IOREQ_PFN,
        HVM_PARAM_BUFIOREQ_PFN,
        HVM_PARAM_IDENT_PT,
        HVM_PARAM_DM_DOMAIN,
    ] {
        let r = param(&h, HVMOP_SET_PARAM, DOMID_SELF, index, 0x1234);
        assert_eq!(r, err(Errno::EPERM), "param {index}");
    }
    assert_eq!(get(&h, HVM_PARAM_STORE_PFN), Ok(0xfeffc));
    assert!(h.platform.calls().is_empty());

    // Faulting arguments: unreadable, and (for get) unwritable.
    assert_eq!(
        h.call(nr::hvm_op, [u64::from(HVMOP_GET_PARAM), 0, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    h.guest.set_readonly(Some(ARG));
    assert_eq!(get(&h, HVM_PARAM_STORE_PFN), Err(err(Errno::EFAULT)));
    assert_eq!(
        param(&h, HVMOP_SET_PARAM, DOMID_SELF, HVM_PARAM_TIMER_MODE, 1),
        0,
        "set only reads"
    );
}

#[test]
fn callback_via() {
    let h = harness();
    let set = |v: u64| param(&h, HVMOP_SET_PARAM, DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, v);
    let vector = |v: u64| (u64::from(HVM_PARAM_CALLBACK_TYPE_VECTOR) << 56) | v;
    assert_eq!(set(vector(0xf3)), 0);
    assert_eq!(h.hv.param(HVM_PARAM_CALLBACK_IRQ), Some(vector(0xf3)));
    assert_eq!(set(0), 0);
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::SetCallbackVector(0xf3), Call::SetCallbackVector(0)]
    );
    assert_eq!(set(vector(0x0f)), err(Errno::EINVAL), "an exception vector");
    assert_eq!(set(vector(0)), err(Errno::EINVAL));
    assert_eq!(set(28), err(Errno::ENOSYS), "GSI");
    assert_eq!(
        set((1 << 56) | (3 << 16) | 1),
        err(Errno::ENOSYS),
        "PCI INTx"
    );
    assert_eq!(set(7 << 56), err(Errno::EINVAL), "unknown type");
    assert_eq!(set(u64::MAX), err(Errno::EINVAL));
    assert!(h.platform.calls().is_empty());
    assert_eq!(
        h.hv.param(HVM_PARAM_CALLBACK_IRQ),
        Some(0),
        "refused values are not kept"
    );
    h.platform.fail_when(|_| Some(Errno::EBUSY));
    assert_eq!(set(vector(0xf3)), err(Errno::EBUSY));
    assert_eq!(h.hv.param(HVM_PARAM_CALLBACK_IRQ), Some(0));
}

#[test]
fn gsi_1_accepted_once_per_vcpu_vectors_exist() {
    // Linux with XEN_HVM_CPUID_UPCALL_VECTOR registers a vector per vCPU, then writes
    // CALLBACK_IRQ = GSI 1 so the toolstack sees an enlightened guest; refusing it makes the
    // CPU bring-up fail.
    let h = harness();
    let set = |v: u64| param(&h, HVMOP_SET_PARAM, DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, v);
    assert_eq!(set(1), err(Errno::ENOSYS), "no per-vCPU vector yet");
    h.put(
        ARG,
        XenHvmEvtchnUpcallVector {
            vcpu: 0,
            vector: 0xf3,
            _pad: [0; 3],
        },
    );
    let r = h.call(
        nr::hvm_op,
        [
            u64::from(HVMOP_SET_EVTCHN_UPCALL_VECTOR),
            h.gva(ARG),
            0,
            0,
            0,
            0,
        ],
    );
    assert_eq!(r, 0);
    assert_eq!(set(1), 0);
    assert_eq!(h.hv.param(HVM_PARAM_CALLBACK_IRQ), Some(1));
    assert_eq!(
        h.platform.take_calls(),
        vec![Call::SetVcpuUpcallVector(0, 0xf3)],
        "GSI 1 changes no delivery"
    );
}

#[test]
fn upcall_vector_pagetable_dying_and_unknown() {
    let h = harness();
    let up = |vcpu: u32, vector: u8| {
        h.put(
            ARG,
            XenHvmEvtchnUpcallVector {
                vcpu,
                vector,
                _pad: [0; 3],
            },
        );
        h.call(
            nr::hvm_op,
            [
                u64::from(HVMOP_SET_EVTCHN_UPCALL_VECTOR),
                h.gva(ARG),
                0,
                0,
                0,
                0,
            ],
        )
    };
    assert_eq!(up(1, 0xf3), 0);
    assert_eq!(h.platform.calls(), vec![Call::SetVcpuUpcallVector(1, 0xf3)]);
    assert_eq!(up(0, 0x0f), err(Errno::EINVAL));
    assert_eq!(up(0, 0), err(Errno::EINVAL));
    assert_eq!(up(2, 0xf3), err(Errno::ENOENT));
    assert_eq!(up(u32::MAX, 0xf3), err(Errno::ENOENT));
    assert_eq!(h.platform.calls().len(), 1);
    let r = h.call(
        nr::hvm_op,
        [u64::from(HVMOP_SET_EVTCHN_UPCALL_VECTOR), 0, 0, 0, 0, 0],
    );
    assert_eq!(r, err(Errno::EFAULT));

    assert_eq!(
        h.call(
            nr::hvm_op,
            [u64::from(HVMOP_PAGETABLE_DYING), 0, 0, 0, 0, 0]
        ),
        0
    );
    for cmd in [
        HVMOP_SET_PCI_INTX_LEVEL,
        HVMOP_FLUSH_TLBS,
        HVMOP_GET_TIME,
        HVMOP_GET_MEM_TYPE,
        HVMOP_ALTP2M,
        u32::MAX,
    ] {
        let r = h.call(nr::hvm_op, [u64::from(cmd), h.gva(ARG), 0, 0, 0, 0]);
        assert_eq!(r, err(Errno::ENOSYS), "cmd {cmd}");
    }
}
