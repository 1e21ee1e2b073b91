//! `xen_version`, `console_io`, `set_timer_op` and unknown hypercall numbers.

use super::*;
use crate::abi::features::*;
use crate::abi::hypercall as nr;
use crate::abi::version::*;
use crate::hypercall::harness::Call;
use crate::hypercall::misc::{CONSOLEIO_READ, CONSOLEIO_WRITE};

fn version(h: &Harness, cmd: u32, gpa: u64) -> i64 {
    h.call(nr::xen_version, [u64::from(cmd), h.gva(gpa), 0, 0, 0, 0])
}

fn cstr(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().position(|&b| b == 0).expect("terminated")]
}

#[test]
fn xen_version_numbers_and_strings() {
    let h = harness();
    assert_eq!(version(&h, XENVER_VERSION, 0), 0x0004_0013);
    assert_eq!(version(&h, XENVER_PAGESIZE, 0), 4096);

    h.put(ARG, [0xffu8; XEN_EXTRAVERSION_LEN]);
    assert_eq!(version(&h, XENVER_EXTRAVERSION, ARG), 0);
    let extra: [u8; XEN_EXTRAVERSION_LEN] = h.get(ARG);
    assert_eq!(cstr(&extra), b".0-oxen");
    assert!(extra[7..].iter().all(|&b| b == 0), "the rest is zeroed");

    assert_eq!(version(&h, XENVER_CAPABILITIES, ARG), 0);
    let caps = h.bytes(ARG, 64);
    assert_eq!(cstr(&caps), b"hvm-4.19-x86_64");

    assert_eq!(version(&h, XENVER_CHANGESET, ARG), 0);
    let cs = h.bytes(ARG, XEN_CHANGESET_INFO_LEN);
    assert_eq!(cstr(&cs), b"oxen");

    assert_eq!(version(&h, XENVER_COMPILE_INFO, ARG), 0);
    let ci: XenCompileInfo = h.get(ARG);
    assert_eq!(cstr(&ci.compiler), b"rustc");
    assert_eq!(cstr(&ci.compile_by), b"oxen");

    h.put(ARG, u64::MAX);
    assert_eq!(version(&h, XENVER_PLATFORM_PARAMETERS, ARG), 0);
    assert_eq!(h.get::<u64>(ARG), 0, "no hypervisor hole");

    h.put(ARG, [0xffu8; XEN_DOMAIN_HANDLE_LEN]);
    assert_eq!(version(&h, XENVER_GUEST_HANDLE, ARG), 0);
    assert_eq!(h.get::<[u8; 16]>(ARG), [0; 16]);
    assert!(h.platform.calls().is_empty());
}

#[test]
fn xen_version_features_submaps() {
    let h = harness();
    for (idx, want) in [(0, Features::hvm_guest().submap(0)), (1, 0), (u32::MAX, 0)] {
        h.put(
            ARG,
            XenFeatureInfo {
                submap_idx: idx,
                submap: 0xdead_beef,
            },
        );
        assert_eq!(version(&h, XENVER_GET_FEATURES, ARG), 0);
        let got: XenFeatureInfo = h.get(ARG);
        assert_eq!(got.submap_idx, idx, "index left alone");
        assert_eq!(got.submap, want, "submap {idx}");
    }
    let f = Features::hvm_guest().submap(0);
    assert_ne!(f & (1 << XENFEAT_HVM_CALLBACK_VECTOR), 0);
    assert_eq!(f & (1 << XENFEAT_DOM0), 0);
}

#[test]
fn xen_version_unknown_and_faulting_buffers() {
    let h = harness();
    for cmd in [
        XENVER_COMMANDLINE,
        XENVER_BUILD_ID,
        11,
        0x8000_0000,
        u32::MAX,
    ] {
        assert_eq!(version(&h, cmd, ARG), err(Errno::ENOSYS), "cmd {cmd}");
    }
    // Outside the window, straddling its end, and on a read-only page.
    let end = crate::hypercall::harness::MEM_FRAMES << 12;
    for cmd in [
        XENVER_EXTRAVERSION,
        XENVER_CAPABILITIES,
        XENVER_CHANGESET,
        XENVER_COMPILE_INFO,
        XENVER_PLATFORM_PARAMETERS,
        XENVER_GET_FEATURES,
        XENVER_GUEST_HANDLE,
    ] {
        for gva in [0, u64::MAX - 3, h.gva(end - 4), h.gva(end)] {
            let r = h.call(nr::xen_version, [u64::from(cmd), gva, 0, 0, 0, 0]);
            assert_eq!(r, err(Errno::EFAULT), "cmd {cmd} at {gva:#x}");
        }
        h.guest.set_readonly(Some(ARG));
        assert_eq!(
            version(&h, cmd, ARG),
            err(Errno::EFAULT),
            "cmd {cmd} read-only"
        );
        h.guest.set_readonly(None);
    }
    // Numbers need no buffer.
    assert_eq!(
        h.call(nr::xen_version, [0, u64::MAX, 0, 0, 0, 0]),
        0x0004_0013
    );
}

#[test]
fn console_write_passes_bytes_and_clamps() {
    let h = harness();
    h.put(BUF, *b"hello, xen console\n");
    let r = h.call(
        nr::console_io,
        [u64::from(CONSOLEIO_WRITE), 19, h.gva(BUF), 0, 0, 0],
    );
    assert_eq!(r, 19);
    assert_eq!(
        h.platform.calls(),
        vec![Call::ConsoleWrite(b"hello, xen console\n".to_vec())]
    );
    h.platform.take();

    // A count beyond one chunk is clamped; the return value says how much was taken.
    let big = vec![b'x'; 10_000];
    vm_memory::Bytes::write_slice(&h.mem, &big, vm_memory::GuestAddress(BUF)).unwrap();
    for count in [10_000, u64::MAX] {
        let r = h.call(nr::console_io, [0, count, h.gva(BUF), 0, 0, 0]);
        assert_eq!(r, 4096, "count {count}");
    }
    let calls = h.platform.take();
    assert_eq!(calls.len(), 2);
    assert!(matches!(&calls[0].0, Call::ConsoleWrite(t) if t.len() == 4096));

    // Zero bytes: nothing to read, even from nowhere.
    assert_eq!(h.call(nr::console_io, [0, 0, 0, 0, 0, 0]), 0);
    // A buffer running off the mapped memory is refused whole.
    let end = crate::hypercall::harness::MEM_FRAMES << 12;
    let r = h.call(nr::console_io, [0, 100, h.gva(end - 50), 0, 0, 0]);
    assert_eq!(r, err(Errno::EFAULT));
    assert_eq!(
        h.call(nr::console_io, [0, 1, 0, 0, 0, 0]),
        err(Errno::EFAULT)
    );
    assert!(h
        .platform
        .calls()
        .iter()
        .all(|c| c == &Call::ConsoleWrite(vec![])));
}

#[test]
fn console_read_and_bad_commands() {
    let h = harness();
    let r = h.call(
        nr::console_io,
        [u64::from(CONSOLEIO_READ), 100, h.gva(BUF), 0, 0, 0],
    );
    assert_eq!(r, 0, "nothing to read");
    for cmd in [2, 3, u64::from(u32::MAX)] {
        let r = h.call(nr::console_io, [cmd, 1, h.gva(BUF), 0, 0, 0]);
        assert_eq!(r, err(Errno::EINVAL), "cmd {cmd}");
    }
    assert!(h.platform.calls().is_empty());
}

#[test]
fn set_timer_op_and_unknown_hypercalls() {
    let h = harness();
    assert_eq!(h.call(nr::set_timer_op, [u64::MAX, 0, 0, 0, 0, 0]), 0);
    assert_eq!(h.call(nr::set_timer_op, [0; 6]), 0);
    for n in [
        nr::set_trap_table,
        nr::mmu_update,
        nr::multicall,
        nr::physdev_op,
        nr::domctl,
        nr::sysctl,
        nr::callback_op,
        11,
        nr::MAX_HYPERCALL,
        128,
        u32::MAX,
    ] {
        assert_eq!(
            h.call(n, [h.gva(ARG); 6]),
            err(Errno::ENOSYS),
            "hypercall {n}"
        );
    }
    assert!(h.platform.calls().is_empty());
}
