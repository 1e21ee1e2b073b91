//! A hostile or broken frontend on the tx ring: the right responses, no panic.

use xen_ring::{RingError, RingPages, REQ_PROD_OFFSET};

use super::frames::pattern;
use super::harness::{Net, TX_GREF};
use super::tx_req as req;
use crate::abi::*;
use crate::{NetifError, RxFeatures, TxDrop};

fn extra(ty: u8, flags: u8) -> [u8; TX_SLOT_SIZE] {
    let mut s = [0u8; TX_SLOT_SIZE];
    s[..8].copy_from_slice(
        &NetifExtraInfo {
            ty,
            flags,
            u: [1, 0, 1, 0, 0, 0],
        }
        .to_bytes(),
    );
    s
}

/// Pushes `slots`, then one good packet; checks the statuses of all responses, that only the
/// good packet came out, and that `why` was counted.
fn expect_drop(slots: &[[u8; TX_SLOT_SIZE]], statuses: &[i16], why: TxDrop) {
    let mut n = Net::new(RxFeatures::default());
    n.push_tx(slots);
    let good = pattern(80, 1);
    n.send(&good, 0, &[], 0, 100, 999);
    let (r, pkts) = n.run_tx();
    r.unwrap();
    assert_eq!(pkts.len(), 1, "{why:?}");
    assert_eq!(pkts[0].data, good);
    let rsp = n.tx_responses();
    let got: Vec<i16> = rsp.iter().map(|r| r.status).collect();
    let mut want = statuses.to_vec();
    want.push(NETIF_RSP_OKAY);
    assert_eq!(got, want, "{why:?}");
    // Each request's id comes back.
    for (r, s) in rsp.iter().zip(slots) {
        if r.status != NETIF_RSP_NULL {
            assert_eq!(r.id, NetifTxRequest::from_bytes(s).id);
        }
    }
    assert_eq!(n.tx.metrics().dropped(why), 1, "{why:?}");
    assert_eq!(n.tx.metrics().total_dropped(), 1);
    assert_eq!(n.gnttab.entries_in_use(), 0);
}

const E: i16 = NETIF_RSP_ERROR;
const NULL: i16 = NETIF_RSP_NULL;

#[test]
fn bad_grant_references() {
    // Beyond the table, not granted, granted to another domain.
    expect_drop(&[req(1 << 20, 0, 0, 1, 60)], &[E], TxDrop::GrantCopy);
    expect_drop(&[req(5, 0, 0, 1, 60)], &[E], TxDrop::GrantCopy);
    expect_drop(
        &[
            req(TX_GREF, 0, NETTXF_MORE_DATA, 1, 200),
            req(9, 0, 0, 2, 100),
        ],
        &[E, E],
        TxDrop::GrantCopy,
    );
}

#[test]
fn data_beyond_the_page() {
    expect_drop(&[req(TX_GREF, 4000, 0, 1, 97)], &[E], TxDrop::CrossesPage);
    expect_drop(
        &[
            req(TX_GREF, 0, NETTXF_MORE_DATA, 1, 300),
            req(TX_GREF + 1, 4095, 0, 2, 2),
        ],
        &[E, E],
        TxDrop::CrossesPage,
    );
    // The first fragment's own length (total minus the rest) is what must fit.
    expect_drop(
        &[
            req(TX_GREF, 4000, NETTXF_MORE_DATA, 1, 200),
            req(TX_GREF + 1, 0, 0, 2, 50),
        ],
        &[E, E],
        TxDrop::CrossesPage,
    );
}

#[test]
fn chains_beyond_eighteen_slots() {
    let mut slots = vec![req(TX_GREF, 0, NETTXF_MORE_DATA, 0, 1900)];
    for i in 1..19u16 {
        let more = if i < 18 { NETTXF_MORE_DATA } else { 0 };
        slots.push(req(TX_GREF + u32::from(i), 0, more, i, 100));
    }
    expect_drop(&slots, &[E; 19], TxDrop::TooManySlots);
}

#[test]
fn first_size_smaller_than_the_fragments() {
    expect_drop(
        &[
            req(TX_GREF, 0, NETTXF_MORE_DATA, 1, 100),
            req(TX_GREF + 1, 0, NETTXF_MORE_DATA, 2, 60),
            req(TX_GREF + 2, 0, 0, 3, 60),
        ],
        &[E, E, E],
        TxDrop::FragmentsExceedTotal,
    );
}

#[test]
fn zero_sizes() {
    expect_drop(&[req(TX_GREF, 0, 0, 1, 0)], &[E], TxDrop::TooShort);
    expect_drop(
        &[req(TX_GREF, 0, 0, 1, (ETH_HLEN - 1) as u16)],
        &[E],
        TxDrop::TooShort,
    );
    // A zero-length later fragment is legal (netback accepts it) and adds nothing.
    let mut n = Net::new(RxFeatures::default());
    n.write_tx_page(0, 0, &pattern(60, 4));
    n.push_tx(&[
        req(TX_GREF, 0, NETTXF_MORE_DATA, 1, 60),
        req(1 << 30, 0, 0, 2, 0),
    ]);
    let (r, pkts) = n.run_tx();
    r.unwrap();
    assert_eq!(pkts[0].data, pattern(60, 4));
    assert!(n.tx_responses().iter().all(|r| r.status == NETIF_RSP_OKAY));
}

#[test]
fn unknown_extra_types() {
    for ty in [
        XEN_NETIF_EXTRA_TYPE_NONE,
        XEN_NETIF_EXTRA_TYPE_XDP,
        XEN_NETIF_EXTRA_TYPE_MAX,
        0xff,
    ] {
        expect_drop(
            &[
                req(TX_GREF, 0, NETTXF_EXTRA_INFO | NETTXF_MORE_DATA, 1, 200),
                extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE),
                extra(ty, 0),
                req(TX_GREF + 1, 0, 0, 2, 100),
            ],
            &[E, NULL, NULL, E],
            TxDrop::BadExtra,
        );
    }
    // A zero GSO size.
    let mut gso = extra(XEN_NETIF_EXTRA_TYPE_GSO, 0);
    gso[2..4].copy_from_slice(&[0, 0]);
    expect_drop(
        &[req(TX_GREF, 0, NETTXF_EXTRA_INFO, 1, 200), gso],
        &[E, NULL],
        TxDrop::BadGso,
    );
}

#[test]
fn wild_producer_index_is_fatal() {
    let mut n = Net::new(RxFeatures::default());
    n.send(&pattern(60, 0), 0, &[], 0, 0, 0);
    n.tx_front
        .pages()
        .store_u32(REQ_PROD_OFFSET, 100_000)
        .unwrap();
    let (r, pkts) = n.run_tx();
    assert!(matches!(
        r,
        Err(NetifError::Ring(RingError::Overflow { .. }))
    ));
    assert!(pkts.is_empty());
}

#[test]
fn a_chain_running_past_the_producer_is_fatal() {
    let mut n = Net::new(RxFeatures::default());
    n.push_tx(&[
        req(TX_GREF, 0, NETTXF_MORE_DATA, 1, 200),
        req(TX_GREF + 1, 0, NETTXF_MORE_DATA, 2, 100),
    ]);
    let (r, _) = n.run_tx();
    assert_eq!(r, Err(NetifError::IncompleteChain { slots: 2 }));
    // Extra-info chains too.
    let mut n = Net::new(RxFeatures::default());
    n.push_tx(&[
        req(TX_GREF, 0, NETTXF_EXTRA_INFO, 1, 200),
        extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE),
    ]);
    assert_eq!(n.run_tx().0, Err(NetifError::IncompleteChain { slots: 2 }));
}

#[test]
fn a_chain_filling_the_whole_ring_is_fatal() {
    let mut n = Net::new(RxFeatures::default());
    let slots: Vec<_> = (0..n.tx_front.nr_ents())
        .map(|i| req(TX_GREF, 0, NETTXF_MORE_DATA, i as u16, 0))
        .collect();
    n.push_tx(&slots);
    let (r, pkts) = n.run_tx();
    assert!(r.is_err());
    assert!(pkts.is_empty());
}
