//! Seeded random requests: no panic, every answer as predicted, and the disk changes only
//! where valid requests asked.

use super::*;
use crate::QueueConfig;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Disk of 512 sectors; reads land in pages 0..16 (writable), writes come from 16..32 (half
/// read-only), indirect descriptor pages are 40..48.
const SECTORS: u64 = 512;
const READ_PAGES: u32 = 16;
const WRITE_PAGES: u32 = 16;

enum Expect {
    Ok,
    Fail,
    /// Random bytes: any answer, but the disk may change only if it says OKAY.
    Any,
}

/// What a valid request does, to replay on the shadow disk.
enum Effect {
    None,
    Write(u64, Vec<u8>),
    Read(u64, Vec<(u32, u8, u8)>),
    Discard(u64, u64),
}

fn windows(rng: &mut Rng, n: usize, base: u32, pages: u32) -> Vec<(u32, u8, u8)> {
    (0..n)
        .map(|_| {
            let first = rng.below(8) as u8;
            let last = first + rng.below(8 - u64::from(first)) as u8;
            (base + rng.below(u64::from(pages)) as u32, first, last)
        })
        .collect()
}

fn sectors(segs: &[(u32, u8, u8)]) -> u64 {
    segs.iter().map(|s| u64::from(s.2 - s.1) + 1).sum()
}

fn gather(g: &Guest, segs: &[(u32, u8, u8)]) -> Vec<u8> {
    let mut v = Vec::new();
    for &(gref, f, l) in segs {
        let page = g.page(gref - DATA_GREF);
        v.extend_from_slice(&page[f as usize * 512..(l as usize + 1) * 512]);
    }
    v
}

/// One random request: the slot, what to expect, and its effect if valid.
fn generate(
    g: &Guest,
    rng: &mut Rng,
    id: u64,
    next_ind: &mut u32,
) -> ([u8; REQUEST_SIZE], Expect, Effect) {
    if rng.chance(8) {
        let mut slot = [0u8; REQUEST_SIZE];
        for b in slot.iter_mut() {
            *b = rng.next() as u8;
        }
        slot[0] = rng.below(8) as u8;
        slot[8..16].copy_from_slice(&id.to_le_bytes());
        return (slot, Expect::Any, Effect::None);
    }
    let kind = rng.below(10);
    let read = kind < 4;
    let (base, pages) = if read {
        (DATA_GREF, READ_PAGES)
    } else {
        (DATA_GREF + READ_PAGES, WRITE_PAGES)
    };
    let use_indirect = rng.chance(30);
    let n = if use_indirect {
        1 + rng.below(48)
    } else {
        1 + rng.below(11)
    } as usize;
    let mut segs = windows(rng, n, base, pages);
    let mut sector = rng.below(SECTORS - sectors(&segs) + 1);
    let defect = rng.chance(30);
    let op = if read { BLKIF_OP_READ } else { BLKIF_OP_WRITE };
    if kind == 9 {
        // Flush or discard.
        if rng.chance(50) {
            return (
                rw(BLKIF_OP_FLUSH_DISKCACHE, id, 0, &[]),
                Expect::Ok,
                Effect::None,
            );
        }
        let nr = rng.below(64);
        let start = rng.below(SECTORS - nr + 1);
        if defect {
            let bad = SECTORS - rng.below(nr + 1) + 1;
            return (discard(id, bad, nr.max(1) + 1), Expect::Fail, Effect::None);
        }
        return (
            discard(id, start, nr),
            Expect::Ok,
            Effect::Discard(start, nr),
        );
    }
    let mut op_byte = op;
    if defect {
        match rng.below(7) {
            0 => segs[rng.below(n as u64) as usize].0 = 2000 + rng.below(1 << 20) as u32,
            1 => {
                let s = &mut segs[rng.below(n as u64) as usize];
                s.1 = 1 + rng.below(7) as u8;
                s.2 = rng.below(u64::from(s.1)) as u8;
            }
            2 => segs[rng.below(n as u64) as usize].2 = 8 + rng.below(248) as u8,
            3 => sector = SECTORS - sectors(&segs) + 1 + rng.below(1 << 40),
            4 => sector = u64::MAX - rng.below(100),
            5 => op_byte = [4u8, 7, 9, 200][rng.below(4) as usize],
            // A read into a read-only page (the odd write pages are read-only).
            _ => {
                op_byte = BLKIF_OP_READ;
                segs[0].0 = DATA_GREF + READ_PAGES + 1;
            }
        }
    }
    let slot = if use_indirect && op_byte <= 1 {
        let ind = 40 + (*next_ind % 8);
        *next_ind += 1;
        let gref = indirect_page(g, ind, &segs);
        indirect(op_byte, id, sector, n as u16, &[gref])
    } else if use_indirect || n <= 11 {
        rw(op_byte, id, sector, &segs[..n.min(11)])
    } else {
        unreachable!()
    };
    if use_indirect && op_byte > 1 {
        // Unknown ops with a direct layout; segs were truncated.
        return (slot, Expect::Fail, Effect::None);
    }
    if defect {
        return (slot, Expect::Fail, Effect::None);
    }
    let effect = if read {
        Effect::Read(sector, segs)
    } else {
        Effect::Write(sector, gather(g, &segs))
    };
    (slot, Expect::Ok, effect)
}

fn run(seed: u64, persistent: bool) -> (usize, usize) {
    let cfg = QueueConfig {
        persistent_grants: persistent,
        max_persistent_grants: 8,
        ..QueueConfig::default()
    };
    let mut g = Guest::new(1, (SECTORS * 512) as usize, false, cfg);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    for i in 0..READ_PAGES + WRITE_PAGES {
        let fill: Vec<u8> = (0..64).map(|_| rng.next() as u8).collect();
        let ro = i >= READ_PAGES && i % 2 == 1;
        g.data_page(i, ro, &fill);
    }
    let mut shadow = g.disk.snapshot();
    let mut next_ind = 0;
    let mut done = 0;
    let mut id = 0u64;
    let mut ok = 0;
    while done < 600 {
        let batch = 1 + rng.below(6) as usize;
        let mut reqs = Vec::new();
        let mut plans = Vec::new();
        for _ in 0..batch {
            id += 1;
            let (slot, expect, effect) = generate(&g, &mut rng, id, &mut next_ind);
            // At most one read or random request per batch, last, so that its pages and its
            // effect on the disk can be checked.
            let last = matches!(effect, Effect::Read(..)) || matches!(expect, Expect::Any);
            reqs.push(slot);
            plans.push((id, expect, effect));
            if last {
                break;
            }
        }
        let changes_before = g.disk.changes();
        let rsp = g.submit(&reqs);
        for (r, (id, expect, effect)) in rsp.iter().zip(plans) {
            assert_eq!(r.id, id, "seed {seed}");
            ok += usize::from(r.status == BLKIF_RSP_OKAY);
            match expect {
                Expect::Ok => assert_eq!(r.status, BLKIF_RSP_OKAY, "seed {seed} id {id}"),
                Expect::Fail => assert_ne!(r.status, BLKIF_RSP_OKAY, "seed {seed} id {id}"),
                Expect::Any => {
                    if r.status == BLKIF_RSP_OKAY {
                        shadow = g.disk.snapshot();
                    }
                }
            }
            match effect {
                Effect::Write(sector, data) => {
                    let at = (sector * 512) as usize;
                    shadow[at..at + data.len()].copy_from_slice(&data);
                }
                Effect::Discard(sector, nr) => {
                    shadow[(sector * 512) as usize..((sector + nr) * 512) as usize].fill(0);
                }
                Effect::Read(sector, segs) => {
                    // Check each segment's window against the shadow, later ones winning.
                    let mut pos = (sector * 512) as usize;
                    let mut expect_pages: std::collections::HashMap<u32, Vec<Option<u8>>> =
                        Default::default();
                    for &(gref, f, l) in &segs {
                        let len = (usize::from(l - f) + 1) * 512;
                        let p = expect_pages.entry(gref).or_insert_with(|| vec![None; 4096]);
                        for k in 0..len {
                            p[usize::from(f) * 512 + k] = Some(shadow[pos + k]);
                        }
                        pos += len;
                    }
                    for (gref, want) in expect_pages {
                        let page = g.page(gref - DATA_GREF);
                        for (k, w) in want.iter().enumerate() {
                            if let Some(w) = w {
                                assert_eq!(page[k], *w, "seed {seed} read id {id} byte {k}");
                            }
                        }
                    }
                }
                Effect::None => {}
            }
        }
        assert!(
            g.disk.snapshot() == shadow,
            "seed {seed}: disk differs after id {id}"
        );
        if g.disk.changes() > changes_before {
            // Every change lies within the disk (MemDisk checks) and came with an OKAY.
            assert!(rsp.iter().any(|r| r.status == BLKIF_RSP_OKAY));
        }
        done += reqs.len();
    }
    assert_eq!(
        g.table.entries_in_use(),
        2 + g.queue.persistent_grants(),
        "seed {seed}: only ring pages and kept grants stay mapped"
    );
    (done, ok)
}

#[test]
fn random_requests() {
    let (mut total, mut ok) = (0, 0);
    for seed in 0..6 {
        let (n, k) = run(seed, seed % 2 == 1);
        total += n;
        ok += k;
    }
    assert!(total >= 3000);
    // Both outcomes are well represented.
    assert!(
        ok > total / 3 && ok < total * 5 / 6,
        "{ok} of {total} succeeded"
    );
}
