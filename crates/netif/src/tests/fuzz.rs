//! Seeded random tx traffic: valid packets mixed with random (but terminated) chains and the
//! odd broken one. Checks that every slot gets exactly one response, statuses are uniform per
//! packet, valid packets arrive intact and in order, the counters add up, no grant stays in
//! use, and nothing panics.

use super::frames::{frame, pattern, TCP, UDP};
use super::harness::{Net, TX_GREF, TX_PAGES};
use super::Rng;
use crate::abi::*;
use crate::{RxFeatures, TxDrop, TxPacket};

/// What the test expects of one pushed chain.
struct Sent {
    /// Slot kinds in ring order: `true` for a request, `false` for an extra.
    requests: Vec<bool>,
    /// The first slot's size.
    size: u16,
    /// Exact content for a valid packet (which must be delivered).
    valid: Option<Vec<u8>>,
    /// Carries a multicast extra: if accepted, answered but not delivered.
    mcast: bool,
}

fn slot(r: NetifTxRequest) -> [u8; TX_SLOT_SIZE] {
    r.to_bytes()
}

fn pick<T: Copy>(rng: &mut Rng, v: &[T]) -> T {
    v[rng.below(v.len())]
}

/// A random chain whose structure terminates (so it cannot swallow the next packet).
fn junk(rng: &mut Rng) -> (Vec<[u8; TX_SLOT_SIZE]>, Sent) {
    let gref = |rng: &mut Rng| {
        if rng.below(10) == 0 {
            rng.next() as u32
        } else {
            TX_GREF + rng.below(TX_PAGES as usize) as u32
        }
    };
    let off = |rng: &mut Rng| match rng.below(4) {
        0 => rng.next() as u16,
        1 => 0,
        _ => rng.below(PAGE_SIZE) as u16,
    };
    let extras = if rng.below(3) == 0 { rng.below(4) } else { 0 };
    let frags = pick(rng, &[0, 0, 1, 2, 5, 17, 18, 25]);
    // Tidy chains have plausible sizes and offsets, so that later checks get their turn.
    let tidy = rng.below(4) == 0;
    let r = rng.next() as u16;
    let mut size = pick(rng, &[0, 13, 14, 60, 1500, r]);
    if tidy {
        size = 100 * (frags as u16 + 1);
    }
    let mut flags = (rng.next() as u16) & (NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED);
    if extras > 0 {
        flags |= NETTXF_EXTRA_INFO;
    }
    if frags > 0 {
        flags |= NETTXF_MORE_DATA;
    }
    let id = rng.next() as u16;
    let mut slots = vec![slot(NetifTxRequest {
        gref: gref(rng),
        offset: off(rng),
        flags,
        id,
        size,
    })];
    let mut requests = vec![true];
    let mut mcast = false;
    for k in 0..extras {
        let ty = pick(rng, &[0, 1, 1, 1, 2, 3, 4, 5, 6, 200]);
        mcast |= ty == XEN_NETIF_EXTRA_TYPE_MCAST_ADD || ty == XEN_NETIF_EXTRA_TYPE_MCAST_DEL;
        let mut u = [0u8; 6];
        let r = rng.next() as u16;
        u[0..2].copy_from_slice(&pick(rng, &[0u16, 1448, r]).to_le_bytes());
        u[2] = rng.below(4) as u8;
        let more = if k + 1 < extras {
            XEN_NETIF_EXTRA_FLAG_MORE
        } else {
            0
        };
        let mut s = [0u8; TX_SLOT_SIZE];
        s[..8].copy_from_slice(&NetifExtraInfo { ty, flags: more, u }.to_bytes());
        slots.push(s);
        requests.push(false);
    }
    for k in 0..frags {
        let more = if k + 1 < frags { NETTXF_MORE_DATA } else { 0 };
        let (a, b) = (rng.below(PAGE_SIZE + 1) as u16, rng.next() as u16);
        let fsize = if tidy {
            100
        } else {
            pick(rng, &[0, 100, a, b])
        };
        let offset = if tidy { 0 } else { off(rng) };
        slots.push(slot(NetifTxRequest {
            gref: gref(rng),
            offset,
            flags: more,
            id: rng.next() as u16,
            size: fsize,
        }));
        requests.push(true);
    }
    let sent = Sent {
        requests,
        size,
        valid: None,
        mcast,
    };
    (slots, sent)
}

/// A valid packet: plain data, a checksum-offloaded frame or a GSO frame.
fn valid(rng: &mut Rng) -> (Vec<u8>, u16, Vec<NetifExtraInfo>) {
    let seed = rng.next() as u8;
    match rng.below(3) {
        0 => {
            let r = 14 + rng.below(20000);
            let len = pick(rng, &[14, 60, 1514, r]);
            let flags = pick(rng, &[0, NETTXF_DATA_VALIDATED]);
            (pattern(len, seed), flags, vec![])
        }
        1 => {
            let proto = pick(rng, &[TCP, UDP]);
            let f = frame(
                rng.below(2) == 0,
                proto,
                rng.below(2) == 0,
                0,
                &pattern(rng.below(9000), seed),
            );
            (f.data, NETTXF_CSUM_BLANK, vec![])
        }
        _ => {
            let v6 = rng.below(2) == 0;
            let f = frame(v6, TCP, false, 12, &pattern(1 + rng.below(40000), seed));
            let ty = if v6 {
                XEN_NETIF_GSO_TYPE_TCPV6
            } else {
                XEN_NETIF_GSO_TYPE_TCPV4
            };
            let g = NetifExtraInfo::gso(1 + rng.below(9000) as u16, ty);
            (f.data, NETTXF_CSUM_BLANK, vec![g])
        }
    }
}

fn check_batch(n: &mut Net, sent: &[Sent], pkts: &[TxPacket]) {
    let rsp = n.tx_responses();
    let slots: usize = sent.iter().map(|s| s.requests.len()).sum();
    assert_eq!(rsp.len(), slots, "one response per slot");
    let mut at = 0;
    let mut delivered = pkts.iter();
    for s in sent {
        let mine = &rsp[at..at + s.requests.len()];
        at += s.requests.len();
        let status = mine[0].status;
        for (r, &is_req) in mine.iter().zip(&s.requests) {
            let want = if is_req { status } else { NETIF_RSP_NULL };
            assert_eq!(r.status, want);
        }
        assert!(status == NETIF_RSP_OKAY || status == NETIF_RSP_ERROR);
        if let Some(data) = &s.valid {
            assert_eq!(status, NETIF_RSP_OKAY);
            let p = delivered.next().expect("valid packet");
            assert!(
                &p.data == data,
                "got {} bytes, want {}",
                p.data.len(),
                data.len()
            );
        } else if status == NETIF_RSP_OKAY && !s.mcast {
            // Accepted junk: delivered, as long as its first slot said.
            let p = delivered.next().expect("accepted packet");
            assert_eq!(p.data.len(), usize::from(s.size));
            assert!(p.virtio_net_hdr().is_ok());
        }
    }
    assert!(delivered.next().is_none(), "no packet from nowhere");
}

#[test]
fn random_tx_traffic() {
    let mut rng = Rng(0x5eed_0f0e_7e11);
    let mut n = Net::new(RxFeatures::default());
    let mut chains = 0u64;
    let mut fatal = 0;
    let mut total_chains = 0u64;
    let mut seen = std::collections::HashSet::<TxDrop>::new();
    let mut accepted_junk = 0;
    for _batch in 0..250 {
        let mut sent = Vec::new();
        let mut page = 0u32;
        let broken = rng.below(40) == 0;
        loop {
            let free = n.tx_front.free_requests() as usize;
            if rng.below(2) == 0 {
                let (data, flags, extras) = valid(&mut rng);
                let need = 1 + extras.len() + data.len().div_ceil(PAGE_SIZE);
                if need > free || page as usize + need > TX_PAGES as usize {
                    break;
                }
                let used = n.send(&data, flags, &extras, 0, page, rng.next() as u16);
                page += used as u32;
                let mut requests = vec![true];
                requests.extend(std::iter::repeat_n(false, extras.len()));
                requests.extend(std::iter::repeat_n(true, used - 1 - extras.len()));
                sent.push(Sent {
                    requests,
                    size: data.len() as u16,
                    valid: Some(data),
                    mcast: false,
                });
            } else {
                let (slots, s) = junk(&mut rng);
                if slots.len() > free {
                    break;
                }
                n.push_tx(&slots);
                sent.push(s);
            }
        }
        if broken && n.tx_front.free_requests() > 0 {
            // A first slot promising more data that never comes.
            n.push_tx(&[slot(NetifTxRequest {
                gref: TX_GREF,
                offset: 0,
                flags: NETTXF_MORE_DATA,
                id: 0,
                size: 100,
            })]);
            let (r, _) = n.run_tx();
            assert!(r.is_err());
            fatal += 1;
            // The caller disconnects; a new connection starts afresh.
            n = Net::new(RxFeatures::default());
            chains = 0;
            continue;
        }
        let (r, pkts) = n.run_tx();
        let out = r.expect("terminated chains are never fatal");
        assert!(!out.more);
        check_batch(&mut n, &sent, &pkts);
        assert_eq!(n.gnttab.entries_in_use(), 0);
        chains += sent.len() as u64;
        total_chains += sent.len() as u64;
        let m = n.tx.metrics();
        assert_eq!(m.packets + m.control + m.total_dropped(), chains);
        seen.extend(TxDrop::ALL.iter().filter(|&&w| m.dropped(w) > 0));
        accepted_junk += m.packets;
        if rng.below(20) == 0 {
            n = Net::new(RxFeatures::default());
            chains = 0;
        }
    }
    assert!(total_chains > 3000, "{total_chains} chains");
    assert!(fatal > 0);
    assert!(accepted_junk > 0);
    // Every kind of malformation came up (offload errors need valid chains, not junk).
    for w in TxDrop::ALL {
        assert!(
            w == TxDrop::BadOffload || seen.contains(&w),
            "{w:?} never seen"
        );
    }
}
