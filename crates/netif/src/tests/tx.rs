//! Guest transmit: packets in, responses and virtio headers out.

use super::frames::{frame, pattern, TCP, UDP};
use super::harness::Net;
use crate::abi::*;
use crate::offload::*;
use crate::{Gso, GsoKind, RxFeatures, TxDrop, TxOutcome};

fn net() -> Net {
    Net::new(RxFeatures::default())
}

#[test]
fn single_slot_packet() {
    let mut n = net();
    let data = pattern(60, 5);
    assert_eq!(n.send(&data, 0, &[], 100, 0, 42), 1);
    let (r, pkts) = n.run_tx();
    assert!(r.unwrap().notify, "netfront asks for the first response");
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].data, data);
    assert!(!pkts[0].csum_blank && !pkts[0].data_validated && pkts[0].gso.is_none());
    assert_eq!(pkts[0].virtio_net_hdr().unwrap(), VirtioNetHdr::default());
    assert_eq!(
        n.tx_responses(),
        vec![NetifTxResponse {
            id: 42,
            status: NETIF_RSP_OKAY
        }]
    );
    assert_eq!((n.tx.metrics().packets, n.tx.metrics().bytes), (1, 60));
    assert_eq!(n.gnttab.entries_in_use(), 0, "copies release their grants");
}

#[test]
fn multi_slot_packets_are_reassembled() {
    let mut n = net();
    let big = pattern(9000, 1);
    let max = pattern(XEN_NETIF_MAX_TX_SIZE, 2);
    let small = pattern(100, 3);
    // 1096 + 4096 + 3808 bytes; 96 + 15 * 4096 + 3999 bytes.
    assert_eq!(n.send(&big, 0, &[], 3000, 0, 0), 3);
    assert_eq!(n.send(&max, 0, &[], 4000, 10, 100), 17);
    assert_eq!(n.send(&small, 0, &[], 0, 40, 200), 1);
    let (r, pkts) = n.run_tx();
    assert_eq!(
        r.unwrap(),
        TxOutcome {
            notify: true,
            more: false
        }
    );
    assert_eq!(pkts.len(), 3);
    assert!(pkts[0].data == big);
    assert!(pkts[1].data == max);
    assert!(pkts[2].data == small);
    let rsp = n.tx_responses();
    assert_eq!(rsp.len(), 3 + 17 + 1);
    assert!(rsp.iter().all(|r| r.status == NETIF_RSP_OKAY));
    let ids: Vec<u16> = rsp.iter().map(|r| r.id).collect();
    assert_eq!(&ids[..4], &[0, 1, 2, 100]);
    assert_eq!(ids[19], 116);
    assert_eq!(ids[20], 200);
}

#[test]
fn gso_packet_gets_a_virtio_gso_header() {
    for (v6, kind, xen_ty, virtio_ty) in [
        (
            false,
            GsoKind::V4,
            XEN_NETIF_GSO_TYPE_TCPV4,
            VIRTIO_NET_HDR_GSO_TCPV4,
        ),
        (
            true,
            GsoKind::V6,
            XEN_NETIF_GSO_TYPE_TCPV6,
            VIRTIO_NET_HDR_GSO_TCPV6,
        ),
    ] {
        let mut n = net();
        let f = frame(v6, TCP, false, 12, &pattern(20000, 7));
        let extras = [NetifExtraInfo::gso(1448, xen_ty)];
        let slots = n.send(
            &f.data,
            NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
            &extras,
            64,
            0,
            9,
        );
        let (r, pkts) = n.run_tx();
        r.unwrap();
        let p = &pkts[0];
        assert!(p.data == f.data);
        assert_eq!(p.gso, Some(Gso { kind, size: 1448 }));
        let h = p.virtio_net_hdr().unwrap();
        assert_eq!(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(h.gso_type, virtio_ty);
        assert_eq!(h.gso_size, 1448);
        assert_eq!(usize::from(h.csum_start), f.l4);
        assert_eq!(h.csum_offset, 16);
        assert_eq!(usize::from(h.hdr_len), f.l4 + 32);
        // First request OKAY, the extra NULL, the fragments OKAY.
        let rsp = n.tx_responses();
        assert_eq!(rsp.len(), slots);
        assert_eq!(rsp[0], NetifTxResponse { id: 9, status: 0 });
        assert_eq!(rsp[1].status, NETIF_RSP_NULL);
        assert!(rsp[2..].iter().all(|r| r.status == NETIF_RSP_OKAY));
        assert_eq!(rsp[2].id, 10);
    }
}

#[test]
fn gso_without_csum_blank_gets_a_partial_checksum() {
    let mut n = net();
    let f = frame(false, TCP, false, 0, &pattern(5000, 8));
    let mut sent = f.data.clone();
    // A full checksum in the field, as a sender without offload would leave it.
    let at = f.l4 + 16;
    sent[at..at + 2].copy_from_slice(&[0x12, 0x34]);
    let extras = [NetifExtraInfo::gso(1000, XEN_NETIF_GSO_TYPE_TCPV4)];
    n.send(&sent, 0, &extras, 0, 0, 0);
    let (_, pkts) = n.run_tx();
    assert!(pkts[0].csum_blank);
    assert!(pkts[0].data == f.data, "pseudo-header sum restored");
    assert_eq!(
        pkts[0].virtio_net_hdr().unwrap().flags,
        VIRTIO_NET_HDR_F_NEEDS_CSUM
    );
}

#[test]
fn checksum_offload_headers_for_tcp_and_udp_over_v4_and_v6() {
    let mut n = net();
    let cases = [
        (false, TCP, false),
        (false, UDP, true),
        (true, TCP, true),
        (true, UDP, false),
    ];
    for (i, &(v6, proto, vlan)) in cases.iter().enumerate() {
        let f = frame(v6, proto, vlan, 0, &pattern(300, i as u8));
        n.send(&f.data, NETTXF_CSUM_BLANK, &[], 0, i as u32, i as u16);
        let (_, pkts) = n.run_tx();
        let h = pkts[0].virtio_net_hdr().unwrap();
        assert_eq!(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(usize::from(h.csum_start), f.l4, "{v6} {proto}");
        assert_eq!(usize::from(h.csum_offset), f.csum_offset);
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (0, 0, 0));
        // What the tap does with NEEDS_CSUM yields a valid checksum.
        let mut d = pkts[0].data.clone();
        assert!(fill_checksum(
            &mut d,
            usize::from(h.csum_start),
            usize::from(h.csum_offset)
        ));
        assert!(f.checksum_ok(&d));
    }
    // data_validated alone.
    let f = frame(false, UDP, false, 0, &pattern(10, 0));
    n.send(&f.data, NETTXF_DATA_VALIDATED, &[], 0, 0, 0);
    let (_, pkts) = n.run_tx();
    assert_eq!(
        pkts[0].virtio_net_hdr().unwrap(),
        VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_DATA_VALID,
            ..Default::default()
        }
    );
}

#[test]
fn offloads_the_headers_do_not_allow_are_dropped() {
    let mut n = net();
    // csum_blank on ARP.
    let mut arp = pattern(60, 0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    n.send(&arp, NETTXF_CSUM_BLANK, &[], 0, 0, 1);
    // TCPv6 GSO on an IPv4 frame.
    let f = frame(false, TCP, false, 0, &pattern(3000, 0));
    n.send(
        &f.data,
        NETTXF_CSUM_BLANK,
        &[NetifExtraInfo::gso(1000, XEN_NETIF_GSO_TYPE_TCPV6)],
        0,
        1,
        2,
    );
    // GSO on UDP.
    let u = frame(false, UDP, false, 0, &pattern(3000, 0));
    n.send(
        &u.data,
        NETTXF_CSUM_BLANK,
        &[NetifExtraInfo::gso(1000, XEN_NETIF_GSO_TYPE_TCPV4)],
        0,
        3,
        4,
    );
    let (r, pkts) = n.run_tx();
    r.unwrap();
    assert!(pkts.is_empty());
    assert_eq!(n.tx.metrics().dropped(TxDrop::BadOffload), 3);
    let rsp = n.tx_responses();
    let statuses: Vec<i16> = rsp.iter().map(|r| r.status).collect();
    // One slot each, the GSO packets with their extra.
    assert_eq!(statuses, vec![-1, -1, 1, -1, 1]);
}

#[test]
fn multicast_control_is_answered_not_forwarded() {
    let mut n = net();
    let mut mcast =
        NetifExtraInfo::from_bytes(&[XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, 1, 0, 0x5e, 0, 0, 1]);
    mcast.flags = 0;
    n.send(&pattern(ETH_HLEN, 0), 0, &[mcast], 0, 0, 5);
    let (_, pkts) = n.run_tx();
    assert!(pkts.is_empty());
    assert_eq!(n.tx.metrics().control, 1);
    let rsp = n.tx_responses();
    assert_eq!(rsp[0], NetifTxResponse { id: 5, status: 0 });
    assert_eq!(rsp[1].status, NETIF_RSP_NULL);
}

#[test]
fn a_full_ring_is_served_in_budgeted_batches_across_wraparound() {
    let mut n = net();
    let mut expect = Vec::new();
    // 1000 packets of 1 or 2 slots through a 256-slot ring.
    let mut id = 0u16;
    let mut sent = 0;
    let mut got = Vec::new();
    while sent < 1000 {
        // At most 100 packets a round, so that their pages (2 each) do not overlap.
        let mut batch = 0;
        while sent < 1000 && batch < 100 && n.tx_front.free_requests() >= 2 {
            batch += 1;
            let len = if sent % 3 == 0 { 5000 } else { 100 + sent };
            let d = pattern(len, sent as u8);
            let used = n.send(&d, 0, &[], 0, (sent * 2) as u32 % 200, id);
            id = id.wrapping_add(used as u16);
            expect.push(d);
            sent += 1;
        }
        let (r, pkts) = n.run_tx();
        r.unwrap();
        got.extend(pkts);
        n.tx_responses();
    }
    assert_eq!(got.len(), 1000);
    for (g, e) in got.iter().zip(&expect) {
        assert!(&g.data == e);
    }
}
