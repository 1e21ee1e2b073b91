//! Fuzz-style tests: seeded random hypercall arguments and operation sequences thrown at the
//! modules, checking that nothing panics and the invariants hold after every step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::abi::evtchn::*;
use crate::abi::DOMID_SELF;
use crate::evtchn::{BackendHandle, EventChannels, EvtchnConfig, Notifier};
use crate::prng::Prng;

#[derive(Default)]
struct CountingNotifier {
    events: AtomicU64,
}

impl Notifier for CountingNotifier {
    fn deliver(&self, port: Port, vcpu: u32) {
        assert!(
            port > 0 && port < EVTCHN_2L_NR_CHANNELS && vcpu < 4,
            "{port} {vcpu}"
        );
        self.events.fetch_add(1, Ordering::Relaxed);
    }
    fn unmask(&self, port: Port, vcpu: u32) {
        assert!(port < EVTCHN_2L_NR_CHANNELS && vcpu < 4, "{port} {vcpu}");
    }
}

/// Fills an argument with random bytes, then (usually) plants plausible values so that the
/// sequence reaches deep states rather than failing every validity check.
fn random_evtchn_arg(rng: &mut Prng, cmd: u32, buf: &mut [u8; 32], known: &[Port]) {
    rng.fill(buf);
    if rng.below(4) == 0 {
        return;
    }
    // Ports the guest got back earlier make for deep sequences; others for hostile ones.
    let port = match known.get(rng.below(known.len() as u64 * 2) as usize) {
        Some(&p) => p,
        None => rng.edgy_u32(70),
    };
    let dom = match rng.below(4) {
        0 => DOMID_SELF,
        1 => 0,
        2 => 3,
        _ => rng.next_u64() as u16,
    };
    let small = rng.edgy_u32(5);
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            buf[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
            buf[2..4].copy_from_slice(&dom.to_le_bytes());
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            buf[0..2].copy_from_slice(&dom.to_le_bytes());
            buf[4..8].copy_from_slice(&port.to_le_bytes());
        }
        EVTCHNOP_BIND_VIRQ => {
            buf[0..4].copy_from_slice(&rng.edgy_u32(NR_VIRQS).to_le_bytes());
            buf[4..8].copy_from_slice(&small.to_le_bytes());
        }
        EVTCHNOP_BIND_IPI => buf[0..4].copy_from_slice(&small.to_le_bytes()),
        EVTCHNOP_BIND_VCPU => {
            buf[0..4].copy_from_slice(&port.to_le_bytes());
            buf[4..8].copy_from_slice(&small.to_le_bytes());
        }
        EVTCHNOP_STATUS => {
            buf[0..2].copy_from_slice(&dom.to_le_bytes());
            buf[4..8].copy_from_slice(&port.to_le_bytes());
        }
        EVTCHNOP_RESET => {
            // Resets are rare in real life; keep most of them invalid so state builds up.
            let d = if rng.below(20) == 0 {
                DOMID_SELF
            } else {
                0x1234
            };
            buf[0..2].copy_from_slice(&d.to_le_bytes());
        }
        _ => buf[0..4].copy_from_slice(&port.to_le_bytes()),
    }
}

#[test]
fn evtchn_random_operation_sequences() {
    let mut delivered = 0;
    for seed in 0..40u64 {
        let mut rng = Prng::new(seed);
        let notifier = Arc::new(CountingNotifier::default());
        let cfg = EvtchnConfig {
            max_ports: 2 + rng.below(200) as u32,
            ..EvtchnConfig::new(3, 4)
        };
        let ch = EventChannels::new(cfg, notifier.clone()).unwrap();
        let mut handles: Vec<BackendHandle> = Vec::new();
        let mut known: Vec<Port> = Vec::new();
        for _ in 0..600 {
            match rng.below(10) {
                0 => {
                    let h: Arc<dyn crate::evtchn::BackendHandler> = Arc::new(|_p: Port| {});
                    let r = if rng.below(2) == 0 {
                        let pick = known.get(rng.below(known.len() as u64 + 1) as usize);
                        ch.backend_bind(pick.copied().unwrap_or_else(|| rng.edgy_u32(70)), h)
                    } else {
                        ch.backend_alloc_unbound(h)
                    };
                    if let Ok(h) = r {
                        handles.push(h);
                    }
                }
                1 if !handles.is_empty() => {
                    let i = rng.below(handles.len() as u64) as usize;
                    if rng.below(3) == 0 {
                        handles.swap_remove(i);
                    } else {
                        handles[i].notify().unwrap();
                    }
                }
                2 => {
                    ch.send_virq(rng.edgy_u32(NR_VIRQS), rng.edgy_u32(5));
                }
                3 => {
                    if let Ok(p) = ch.host_alloc_unbound(rng.next_u64() as u16 & 3) {
                        known.push(p);
                    }
                }
                _ => {
                    // Half the time a command that builds or uses state, else anything.
                    const USEFUL: [u32; 10] = [
                        EVTCHNOP_SEND,
                        EVTCHNOP_SEND,
                        EVTCHNOP_BIND_IPI,
                        EVTCHNOP_ALLOC_UNBOUND,
                        EVTCHNOP_BIND_INTERDOMAIN,
                        EVTCHNOP_CLOSE,
                        EVTCHNOP_BIND_VIRQ,
                        EVTCHNOP_UNMASK,
                        EVTCHNOP_STATUS,
                        EVTCHNOP_BIND_VCPU,
                    ];
                    let cmd = match rng.below(2) {
                        0 => USEFUL[rng.below(USEFUL.len() as u64) as usize],
                        _ => rng.edgy_u32(15),
                    };
                    let mut buf = [0u8; 32];
                    random_evtchn_arg(&mut rng, cmd, &mut buf, &known);
                    let len = if rng.below(10) == 0 {
                        rng.below(33) as usize
                    } else {
                        32
                    };
                    if ch.hypercall(cmd, &mut buf[..len]).is_ok() {
                        let out = match cmd {
                            EVTCHNOP_ALLOC_UNBOUND | EVTCHNOP_BIND_IPI => Some(4),
                            EVTCHNOP_BIND_INTERDOMAIN | EVTCHNOP_BIND_VIRQ => Some(8),
                            _ => None,
                        };
                        if let Some(o) = out {
                            known.push(u32::from_le_bytes(buf[o..o + 4].try_into().unwrap()));
                        }
                    }
                }
            }
            ch.check_invariants();
        }
        drop(handles);
        ch.check_invariants();
        delivered += notifier.events.load(Ordering::Relaxed);
    }
    // The sequences must get far enough to deliver events, or they test little.
    assert!(delivered > 250, "only {delivered} events delivered");
}

mod gnttab_fuzz {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use crate::abi::gnttab::*;
    use crate::abi::memory::XENMAPIDX_GRANT_TABLE_STATUS;
    use crate::abi::DOMID_SELF;
    use crate::gnttab::{entries_per_frame, GnttabConfig, GrantMapping, GrantTable, INVALID_GFN};
    use crate::prng::Prng;

    type Mem = GuestMemoryMmap<()>;
    const RAM_FRAMES: u64 = 64;
    const GUEST: u16 = 3;

    /// What the entry says, for the oracle: Some(ok) when the outcome of a first claim is
    /// predictable from guest memory alone (v1), None otherwise.
    fn expect_first_map(t: &GrantTable<Mem>, mem: &Mem, gref: u32, readonly: bool) -> Option<bool> {
        if t.version() != 1 {
            return None;
        }
        if gref >= t.nr_entries() {
            return Some(false);
        }
        let mut op = GnttabSetupTable {
            dom: DOMID_SELF,
            nr_frames: t.nr_frames(),
            ..Default::default()
        };
        let gfns = t.setup_table(&mut op);
        let gfn = gfns[(gref / entries_per_frame(1)) as usize];
        if gfn == INVALID_GFN {
            return Some(false);
        }
        let gpa = gfn * 4096 + u64::from(gref % entries_per_frame(1)) * 8;
        let e: GrantEntryV1 = mem.read_obj(GuestAddress(gpa)).unwrap();
        Some(
            e.flags & GTF_TYPE_MASK == GTF_PERMIT_ACCESS
                && e.flags & GTF_SUB_PAGE == 0
                && e.domid == 0
                && (readonly || e.flags & GTF_READONLY == 0)
                && u64::from(e.frame) < RAM_FRAMES,
        )
    }

    fn random_copy(rng: &mut Prng) -> GnttabCopy {
        let end = |rng: &mut Prng| GnttabCopyPtr {
            u: match rng.below(3) {
                0 => rng.below(600),
                1 => rng.below(RAM_FRAMES + 2),
                _ => rng.next_u64(),
            },
            domid: [DOMID_SELF, GUEST, 0, rng.next_u64() as u16][rng.below(4) as usize],
            offset: if rng.below(2) == 0 {
                rng.below(4096) as u16
            } else {
                rng.next_u64() as u16
            },
            _pad: 0,
        };
        GnttabCopy {
            source: end(rng),
            dest: end(rng),
            len: if rng.below(2) == 0 {
                rng.below(64) as u16
            } else {
                rng.next_u64() as u16
            },
            flags: rng.next_u64() as u16 & 3,
            status: 0x7777,
            _pad: 0,
        }
    }

    #[test]
    fn gnttab_random_contents_and_operations() {
        let (mut oracle_hits, mut granted) = (0, 0);
        for seed in 0..30u64 {
            let mut rng = Prng::new(1000 + seed);
            let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap();
            let cfg = GnttabConfig {
                max_frames: 1 + rng.below(16) as u32,
                ..GnttabConfig::new(GUEST)
            };
            let t = GrantTable::new(cfg, mem.clone()).unwrap();
            // Random guest memory: grant frames start out with whatever was there.
            let mut junk = vec![0u8; (RAM_FRAMES * 4096) as usize];
            rng.fill(&mut junk);
            mem.write_slice(&junk, GuestAddress(0)).unwrap();
            t.map_frame(0, 40).unwrap();
            let mut maps: Vec<GrantMapping<Mem>> = Vec::new();
            for _ in 0..500 {
                match rng.below(12) {
                    0 => {
                        let idx = if rng.below(3) == 0 {
                            XENMAPIDX_GRANT_TABLE_STATUS
                        } else {
                            0
                        } | u64::from(rng.edgy_u32(20));
                        let _ = t.map_frame(idx, rng.below(RAM_FRAMES + 4));
                    }
                    1 if rng.below(8) == 0 => {
                        let mut op = GnttabSetVersion {
                            version: rng.edgy_u32(3),
                        };
                        let r = t.set_version(&mut op);
                        assert_eq!(op.version, t.version());
                        assert!(r.is_ok() || op.version != 0);
                    }
                    2 => {
                        let mut op = GnttabSetupTable {
                            dom: DOMID_SELF,
                            nr_frames: rng.edgy_u32(20),
                            ..Default::default()
                        };
                        let gfns = t.setup_table(&mut op);
                        assert!(op.status != 0 || gfns.len() as u32 == op.nr_frames);
                    }
                    3 | 4 => {
                        // A hostile guest scribbles on its grant entries at any time.
                        let mut op = GnttabSetupTable {
                            dom: DOMID_SELF,
                            nr_frames: t.nr_frames(),
                            ..Default::default()
                        };
                        let gfns: Vec<u64> = t
                            .setup_table(&mut op)
                            .into_iter()
                            .filter(|&g| g != INVALID_GFN)
                            .collect();
                        // Mostly the first few entries of frame 0, where the maps below look.
                        let (fi, k) = match rng.below(4) {
                            0 => (rng.below(gfns.len() as u64 + 1) as usize, rng.below(512)),
                            _ => (0, rng.below(32)),
                        };
                        if let Some(&g) = gfns.get(fi) {
                            let off = k * 8;
                            let mut e = [0u8; 8];
                            rng.fill(&mut e);
                            if rng.below(2) == 0 {
                                // Mostly plausible: grant to the backend, some frame.
                                e[0] = (e[0] & !GTF_TYPE_MASK as u8) | GTF_PERMIT_ACCESS as u8;
                                e[1] = 0;
                                e[2] = 0;
                                e[3] = 0;
                                e[4] = rng.below(RAM_FRAMES + 2) as u8;
                                e[5..].fill(0);
                            }
                            mem.write_slice(&e, GuestAddress(g * 4096 + off)).unwrap();
                        }
                    }
                    5 | 6 => {
                        let gref = if rng.below(4) == 0 {
                            rng.edgy_u32(600)
                        } else {
                            rng.below(32) as u32
                        };
                        let ro = rng.below(2) == 0;
                        let first = !maps.iter().any(|m| m.gref() == gref);
                        let want = if first {
                            expect_first_map(&t, &mem, gref, ro)
                        } else {
                            None
                        };
                        let r = t.map(gref, ro);
                        if let Some(want) = want {
                            oracle_hits += 1;
                            assert_eq!(r.is_ok(), want, "seed {seed} gref {gref} ro {ro}: {r:?}");
                        }
                        if let Ok(m) = r {
                            granted += 1;
                            assert!(m.gpa().0 < RAM_FRAMES * 4096);
                            maps.push(m);
                        }
                    }
                    7 if !maps.is_empty() => {
                        let i = rng.below(maps.len() as u64) as usize;
                        let m = maps.swap_remove(i);
                        let mut b = [0u8; 16];
                        m.read(rng.below(4100) as usize, &mut b).ok();
                        let w = m.write(rng.below(4100) as usize, &b);
                        assert!(!(m.is_readonly() && w.is_ok()));
                    }
                    8 => {
                        let before = t.entries_in_use();
                        let mut b = vec![0u8; rng.below(100) as usize];
                        let gref = rng.edgy_u32(600);
                        let off = rng.edgy_u32(4096) as usize;
                        if rng.below(2) == 0 {
                            let _ = t.copy_from_grant(gref, off, &mut b);
                        } else {
                            let _ = t.copy_to_grant(gref, off, &b);
                        }
                        assert_eq!(t.entries_in_use(), before, "copies leave no claim");
                    }
                    _ => {
                        let before = t.entries_in_use();
                        let mut op = random_copy(&mut rng);
                        t.guest_copy(&mut op);
                        assert!((-13..=0).contains(&op.status), "status {}", op.status);
                        assert_eq!(t.entries_in_use(), before, "guest copies leave no claim");
                    }
                }
                let distinct: std::collections::HashSet<u32> =
                    maps.iter().map(|m| m.gref()).collect();
                assert_eq!(t.entries_in_use(), distinct.len());
            }
            maps.clear();
            assert_eq!(t.entries_in_use(), 0);
        }
        // The sequences must reach both outcomes often, or they test little.
        assert!(
            oracle_hits > 1000,
            "the oracle judged only {oracle_hits} maps"
        );
        assert!(granted > 150, "only {granted} maps succeeded");
    }

    #[test]
    fn gnttab_raw_hypercalls_never_panic() {
        let mut rng = Prng::new(77);
        let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap();
        let t = GrantTable::new(GnttabConfig::new(GUEST), mem.clone()).unwrap();
        t.map_frame(0, 50).unwrap();
        let mut junk = vec![0u8; 4096];
        rng.fill(&mut junk);
        mem.write_slice(&junk, GuestAddress(50 * 4096)).unwrap();
        let (mut ok, mut frames) = (0, 0);
        for _ in 0..20_000 {
            let cmd = rng.edgy_u32(11);
            let count = rng.edgy_u32(4);
            let mut buf = vec![0u8; rng.below(200) as usize];
            rng.fill(&mut buf);
            if buf.len() >= 8 && rng.below(2) == 0 {
                // Plausible: DOMID_SELF and a small frame count / version.
                buf[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
                let small = rng.edgy_u32(70).to_le_bytes();
                buf[4..8].copy_from_slice(&small);
                if cmd == GNTTABOP_SET_VERSION {
                    buf[0..4].copy_from_slice(&small);
                }
            }
            if let Ok(list) = t.hypercall(cmd, count, &mut buf) {
                ok += 1;
                frames += list.len();
                assert!(list.len() <= 64);
            }
            assert_eq!(t.entries_in_use(), 0);
            assert!(t.version() == 1 || t.version() == 2);
            assert!(t.nr_frames() <= 64);
        }
        assert!(ok > 500, "only {ok} calls got through");
        assert!(frames > 500, "setup_table returned only {frames} frames");
    }
}
