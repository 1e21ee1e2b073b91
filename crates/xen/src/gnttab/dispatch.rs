//! `HYPERVISOR_grant_table_op(cmd, arg, count)` on raw argument bytes.

use vm_memory::{ByteValued, GuestMemoryBackend};

use super::GrantTable;
use crate::abi::errno::Errno;
use crate::abi::gnttab::*;

/// Bytes of one argument element of `cmd`, or `None` for a command Oxen does not implement.
pub fn arg_size(cmd: u32) -> Option<usize> {
    use std::mem::size_of;
    Some(match cmd {
        GNTTABOP_SETUP_TABLE => size_of::<GnttabSetupTable>(),
        GNTTABOP_COPY => size_of::<GnttabCopy>(),
        GNTTABOP_QUERY_SIZE => size_of::<GnttabQuerySize>(),
        GNTTABOP_SET_VERSION => size_of::<GnttabSetVersion>(),
        GNTTABOP_GET_VERSION => size_of::<GnttabGetVersion>(),
        _ => return None,
    })
}

/// Runs `f` on the `T` at element `idx` of `args` (any alignment), writing it back.
fn on_elem<T: ByteValued + Default, R>(
    args: &mut [u8],
    idx: usize,
    f: impl FnOnce(&mut T) -> R,
) -> Result<R, Errno> {
    let n = std::mem::size_of::<T>();
    let bytes = idx
        .checked_mul(n)
        .and_then(|start| args.get_mut(start..start.checked_add(n)?))
        .ok_or(Errno::EFAULT)?;
    let mut v = T::default();
    v.as_mut_slice().copy_from_slice(bytes);
    let r = f(&mut v);
    bytes.copy_from_slice(v.as_slice());
    Ok(r)
}

impl<M: GuestMemoryBackend> GrantTable<M> {
    /// Runs `GNTTABOP_<cmd>` on `count` argument elements laid out in `args` (the VMM copies
    /// `count * arg_size(cmd)` bytes in, and back out on success). Xen's rules: the
    /// single-element commands want `count == 1` (`EINVAL`); a short buffer is `EFAULT`;
    /// unimplemented commands (map/unmap/transfer: HVM guests' frontends do not use them) are
    /// `ENOSYS`. `GNTTABOP_setup_table` returns the frame numbers the VMM must write to the
    /// guest's `frame_list`; every other command returns an empty list.
    pub fn hypercall(&self, cmd: u32, count: u32, args: &mut [u8]) -> Result<Vec<u64>, Errno> {
        let single = matches!(
            cmd,
            GNTTABOP_SETUP_TABLE
                | GNTTABOP_QUERY_SIZE
                | GNTTABOP_SET_VERSION
                | GNTTABOP_GET_VERSION
        );
        if single && count != 1 {
            return Err(Errno::EINVAL);
        }
        match cmd {
            GNTTABOP_SETUP_TABLE => {
                on_elem(args, 0, |op: &mut GnttabSetupTable| self.setup_table(op))
            }
            GNTTABOP_QUERY_SIZE => on_elem(args, 0, |op: &mut GnttabQuerySize| self.query_size(op))
                .map(|()| Vec::new()),
            GNTTABOP_SET_VERSION => {
                on_elem(args, 0, |op: &mut GnttabSetVersion| self.set_version(op))?
                    .map(|()| Vec::new())
            }
            GNTTABOP_GET_VERSION => {
                on_elem(args, 0, |op: &mut GnttabGetVersion| self.get_version(op))?
                    .map(|()| Vec::new())
            }
            GNTTABOP_COPY => {
                for idx in 0..count as usize {
                    on_elem(args, idx, |op: &mut GnttabCopy| self.guest_copy(op))?;
                }
                Ok(Vec::new())
            }
            _ => Err(Errno::ENOSYS),
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{ByteValued, Bytes, GuestAddress};

    use super::*;
    use crate::abi::DOMID_SELF;
    use crate::gnttab::tests::{put_v1, table, GUEST};

    #[test]
    fn dispatch_single_element_commands() {
        let (t, _) = table();
        let mut q = GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        };
        assert!(t
            .hypercall(GNTTABOP_QUERY_SIZE, 1, q.as_mut_slice())
            .unwrap()
            .is_empty());
        assert_eq!((q.nr_frames, q.max_nr_frames), (1, 64));
        assert_eq!(
            t.hypercall(GNTTABOP_QUERY_SIZE, 2, q.as_mut_slice()),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            t.hypercall(GNTTABOP_QUERY_SIZE, 1, &mut q.as_mut_slice()[..15]),
            Err(Errno::EFAULT)
        );

        let mut s = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: 2,
            ..Default::default()
        };
        let frames = t
            .hypercall(GNTTABOP_SETUP_TABLE, 1, s.as_mut_slice())
            .unwrap();
        assert_eq!(
            frames,
            vec![super::super::tests::GT_GFN, crate::gnttab::INVALID_GFN]
        );
        assert_eq!(s.status, 0);

        let mut v = GnttabSetVersion { version: 7 };
        assert_eq!(
            t.hypercall(GNTTABOP_SET_VERSION, 1, v.as_mut_slice()),
            Err(Errno::EINVAL)
        );
        let mut g = GnttabGetVersion {
            dom: 99,
            ..Default::default()
        };
        assert_eq!(
            t.hypercall(GNTTABOP_GET_VERSION, 1, g.as_mut_slice()),
            Err(Errno::ESRCH)
        );
        g.dom = DOMID_SELF;
        t.hypercall(GNTTABOP_GET_VERSION, 1, g.as_mut_slice())
            .unwrap();
        assert_eq!(g.version, 1);

        for cmd in [
            GNTTABOP_MAP_GRANT_REF,
            GNTTABOP_UNMAP_GRANT_REF,
            GNTTABOP_TRANSFER,
            11,
            u32::MAX,
        ] {
            assert_eq!(
                t.hypercall(cmd, 1, &mut [0u8; 64]),
                Err(Errno::ENOSYS),
                "cmd {cmd}"
            );
            assert_eq!(arg_size(cmd), None);
        }
        assert_eq!(arg_size(GNTTABOP_COPY), Some(40));
    }

    #[test]
    fn dispatch_copy_batches() {
        let (t, mem) = table();
        mem.write_slice(b"granted!", GuestAddress(0x20 * 4096))
            .unwrap();
        put_v1(&mem, 3, GTF_PERMIT_ACCESS, GUEST, 0x20);
        let ok = GnttabCopy {
            source: GnttabCopyPtr {
                u: 3,
                domid: DOMID_SELF,
                offset: 0,
                _pad: 0,
            },
            dest: GnttabCopyPtr {
                u: 0x21,
                domid: DOMID_SELF,
                offset: 8,
                _pad: 0,
            },
            len: 8,
            flags: GNTCOPY_SOURCE_GREF,
            ..Default::default()
        };
        let bad = GnttabCopy { len: 4090, ..ok };
        // Three elements, unaligned in the buffer.
        let mut buf = [0u8; 1 + 3 * 40];
        for (i, e) in [ok, bad, ok].iter().enumerate() {
            buf[1 + i * 40..1 + (i + 1) * 40].copy_from_slice(e.as_slice());
        }
        t.hypercall(GNTTABOP_COPY, 3, &mut buf[1..]).unwrap();
        let status = |i: usize| i16::from_le_bytes([buf[1 + i * 40 + 36], buf[1 + i * 40 + 37]]);
        assert_eq!(
            (status(0), status(1), status(2)),
            (0, GntStatus::bad_copy_arg.0, 0)
        );
        let mut out = [0u8; 8];
        mem.read_slice(&mut out, GuestAddress(0x21 * 4096 + 8))
            .unwrap();
        assert_eq!(&out, b"granted!");
        assert_eq!(
            t.hypercall(GNTTABOP_COPY, 4, &mut buf[1..]),
            Err(Errno::EFAULT),
            "short buffer"
        );
        assert_eq!(
            t.hypercall(GNTTABOP_COPY, u32::MAX, &mut buf[1..]),
            Err(Errno::EFAULT)
        );
        assert!(t.hypercall(GNTTABOP_COPY, 0, &mut []).unwrap().is_empty());
    }
}
