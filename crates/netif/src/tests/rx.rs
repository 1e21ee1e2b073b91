//! Guest receive: tap frames into posted pages.

use super::frames::{frame, pattern, TCP, UDP};
use super::harness::{Net, RX_GREF};
use crate::abi::*;
use crate::offload::*;
use crate::{RxDrop, RxFeatures, RxOutcome, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6};

const ALL: RxFeatures = RxFeatures {
    sg: true,
    gso_tcpv4: true,
    gso_tcpv6: true,
    csum: true,
};

fn tap(hdr: VirtioNetHdr, data: &[u8]) -> Vec<u8> {
    let mut v = hdr.to_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn plain(data: &[u8]) -> Vec<u8> {
    tap(VirtioNetHdr::default(), data)
}

fn rsp(b: &[u8; RX_SLOT_SIZE]) -> NetifRxResponse {
    NetifRxResponse::from_bytes(b)
}

#[test]
fn small_frame() {
    let mut n = Net::new(ALL);
    n.post_rx(4);
    let data = pattern(60, 3);
    let out = n.rx.deliver_rx(&plain(&data)).unwrap();
    assert_eq!(out, RxOutcome::Delivered { notify: true });
    let r = n.rx_responses();
    assert_eq!(r.len(), 1);
    assert_eq!(
        rsp(&r[0]),
        NetifRxResponse {
            id: 0,
            offset: 0,
            flags: 0,
            status: 60
        }
    );
    assert_eq!(n.read_rx_page(0, 60), data);
    assert_eq!((n.rx.metrics().packets, n.rx.metrics().bytes), (1, 60));
    assert_eq!(n.gnttab.entries_in_use(), 0);
}

#[test]
fn multi_page_frame() {
    let mut n = Net::new(ALL);
    n.post_rx(8);
    let data = pattern(10000, 4);
    let dv = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        ..Default::default()
    };
    assert!(matches!(
        n.rx.deliver_rx(&tap(dv, &data)).unwrap(),
        RxOutcome::Delivered { .. }
    ));
    let r: Vec<_> = n.rx_responses().iter().map(rsp).collect();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].flags, NETRXF_DATA_VALIDATED | NETRXF_MORE_DATA);
    assert_eq!(r[1].flags, NETRXF_MORE_DATA);
    assert_eq!(r[2].flags, 0);
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![4096, 4096, 1808]
    );
    assert_eq!(r.iter().map(|r| r.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    let mut got = n.read_rx_page(0, 4096);
    got.extend(n.read_rx_page(1, 4096));
    got.extend(n.read_rx_page(2, 1808));
    assert_eq!(got, data);
}

#[test]
fn gso_frame_has_an_extra_info_slot() {
    for (v6, virtio_ty, xen_ty) in [
        (false, VIRTIO_NET_HDR_GSO_TCPV4, XEN_NETIF_GSO_TYPE_TCPV4),
        (true, VIRTIO_NET_HDR_GSO_TCPV6, XEN_NETIF_GSO_TYPE_TCPV6),
    ] {
        let mut n = Net::new(ALL);
        n.post_rx(20);
        let f = frame(v6, TCP, false, 12, &pattern(60000, 5));
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: virtio_ty | VIRTIO_NET_HDR_GSO_ECN,
            hdr_len: (f.l4 + 32) as u16,
            gso_size: 1448,
            csum_start: f.l4 as u16,
            csum_offset: 16,
        };
        let out = n.rx.deliver_rx(&tap(hdr, &f.data)).unwrap();
        assert!(matches!(out, RxOutcome::Delivered { .. }));
        let raw = n.rx_responses();
        let data_slots = f.data.len().div_ceil(4096);
        assert_eq!(raw.len(), data_slots + 1);
        let first = rsp(&raw[0]);
        assert_eq!(
            first.flags,
            NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED | NETRXF_MORE_DATA | NETRXF_EXTRA_INFO
        );
        assert_eq!(first.status, 4096);
        let ex = NetifExtraInfo::from_bytes(&raw[1]);
        assert_eq!(ex.ty, XEN_NETIF_EXTRA_TYPE_GSO);
        assert!(!ex.more());
        assert_eq!(
            ex.decode(),
            ExtraInfo::Gso {
                size: 1448,
                ty: xen_ty,
                features: 0
            }
        );
        // Data: page 0, then pages 2.. (page 1's request became the extra slot).
        let mut got = n.read_rx_page(0, 4096);
        let mut total = 4096;
        for (k, b) in raw[2..].iter().enumerate() {
            let r = rsp(b);
            assert_eq!(r.id, (k + 2) as u16);
            let more = k + 3 < raw.len();
            assert_eq!(r.flags, if more { NETRXF_MORE_DATA } else { 0 });
            got.extend(n.read_rx_page(k as u32 + 2, r.status as usize));
            total += r.status as usize;
        }
        assert_eq!(total, f.data.len());
        assert_eq!(got, f.data);
    }
}

#[test]
fn waits_for_slots_without_consuming_any() {
    let mut n = Net::new(ALL);
    let data = pattern(9000, 6);
    let f = plain(&data);
    assert_eq!(n.rx.deliver_rx(&f).unwrap(), RxOutcome::NoSlots);
    n.post_rx(2);
    assert_eq!(n.rx.deliver_rx(&f).unwrap(), RxOutcome::NoSlots);
    assert!(n.rx_responses().is_empty(), "no partial frame");
    assert_eq!(n.rx.metrics().no_slots, 2);
    n.post_rx(1);
    assert!(matches!(
        n.rx.deliver_rx(&f).unwrap(),
        RxOutcome::Delivered { .. }
    ));
    let r = n.rx_responses();
    assert_eq!(r.len(), 3);
    let mut got = n.read_rx_page(0, 4096);
    got.extend(n.read_rx_page(1, 4096));
    got.extend(n.read_rx_page(2, 808));
    assert_eq!(got, data);
    // The next frame uses the next request.
    n.post_rx(1);
    n.rx.deliver_rx(&plain(&pattern(70, 1))).unwrap();
    assert_eq!(rsp(&n.rx_responses()[0]).id, 3);
}

#[test]
fn rx_requests_wrap_around_the_ring() {
    let mut n = Net::new(ALL);
    for round in 0..700u32 {
        n.post_rx(2);
        let data = pattern(5000 + round as usize, round as u8);
        assert!(matches!(
            n.rx.deliver_rx(&plain(&data)).unwrap(),
            RxOutcome::Delivered { .. }
        ));
        let r: Vec<_> = n.rx_responses().iter().map(rsp).collect();
        assert_eq!(r.len(), 2);
        let page = (round * 2) % 256;
        assert_eq!(r[0].id as u32, page);
        let mut got = n.read_rx_page(page, 4096);
        got.extend(n.read_rx_page(page + 1, r[1].status as usize));
        assert_eq!(got, data);
    }
}

#[test]
fn checksum_flags_and_software_checksums() {
    for (v6, proto) in [(false, TCP), (false, UDP), (true, TCP), (true, UDP)] {
        let f = frame(v6, proto, false, 0, &pattern(500, 2));
        let hdr = VirtioNetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: f.l4 as u16,
            csum_offset: f.csum_offset as u16,
            ..Default::default()
        };
        // With checksum offload: passed on blank.
        let mut n = Net::new(ALL);
        n.post_rx(1);
        n.rx.deliver_rx(&tap(hdr, &f.data)).unwrap();
        let r = rsp(&n.rx_responses()[0]);
        assert_eq!(r.flags, NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED);
        assert_eq!(n.read_rx_page(0, f.data.len()), f.data);
        // Without: completed here.
        let mut n = Net::new(RxFeatures { csum: false, ..ALL });
        n.post_rx(1);
        n.rx.deliver_rx(&tap(hdr, &f.data)).unwrap();
        let r = rsp(&n.rx_responses()[0]);
        assert_eq!(r.flags, NETRXF_DATA_VALIDATED);
        assert!(f.checksum_ok(&n.read_rx_page(0, f.data.len())));
    }
}

#[test]
fn frames_the_frontend_cannot_take_are_refused() {
    let f = frame(false, TCP, false, 0, &pattern(20000, 1));
    let gso = VirtioNetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: VIRTIO_NET_HDR_GSO_TCPV4,
        gso_size: 1448,
        csum_start: f.l4 as u16,
        csum_offset: 16,
        hdr_len: 0,
    };
    let cases = [
        // No scatter-gather: one page at most.
        (
            RxFeatures { sg: false, ..ALL },
            plain(&pattern(4097, 0)),
            RxDrop::TooLarge,
        ),
        (
            ALL,
            plain(&pattern(MAX_FRAME_SIZE + 1, 0)),
            RxDrop::TooLarge,
        ),
        (
            RxFeatures {
                gso_tcpv4: false,
                ..ALL
            },
            tap(gso, &f.data),
            RxDrop::GsoNotNegotiated,
        ),
        (
            RxFeatures { csum: false, ..ALL },
            tap(gso, &f.data),
            RxDrop::GsoNotNegotiated,
        ),
        (
            ALL,
            tap(
                VirtioNetHdr {
                    gso_type: VIRTIO_NET_HDR_GSO_UDP,
                    ..gso
                },
                &f.data,
            ),
            RxDrop::GsoUnsupported,
        ),
        (
            ALL,
            tap(VirtioNetHdr { gso_size: 0, ..gso }, &f.data),
            RxDrop::Malformed,
        ),
        (
            ALL,
            tap(
                VirtioNetHdr {
                    csum_start: 60000,
                    ..gso
                },
                &f.data,
            ),
            RxDrop::Malformed,
        ),
        (ALL, vec![0; 9], RxDrop::Malformed),
        (ALL, plain(&[1; 13]), RxDrop::Malformed),
    ];
    for (features, bytes, why) in cases {
        let mut n = Net::new(features);
        n.post_rx(20);
        assert_eq!(
            n.rx.deliver_rx(&bytes).unwrap(),
            RxOutcome::Dropped {
                reason: why,
                notify: false
            },
            "{why:?}"
        );
        assert!(n.rx_responses().is_empty());
        assert_eq!(n.rx.metrics().dropped(why), 1);
        // The posted requests are still there for the next frame.
        n.rx.deliver_rx(&plain(&pattern(100, 0))).unwrap();
        assert_eq!(rsp(&n.rx_responses()[0]).id, 0);
    }
}

#[test]
fn a_bad_rx_grant_answers_with_errors() {
    let mut n = Net::new(ALL);
    n.post_rx(3);
    // Revoke the second page's grant.
    n.revoke(RX_GREF + 1);
    let out = n.rx.deliver_rx(&plain(&pattern(9000, 0))).unwrap();
    assert_eq!(
        out,
        RxOutcome::Dropped {
            reason: RxDrop::GrantCopy,
            notify: true
        }
    );
    let r: Vec<_> = n.rx_responses().iter().map(rsp).collect();
    assert_eq!(
        r.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![4096, NETIF_RSP_ERROR, NETIF_RSP_ERROR]
    );
    assert_eq!(r[0].flags & NETRXF_MORE_DATA, NETRXF_MORE_DATA);
    // The queue goes on.
    n.post_rx(1);
    assert!(matches!(
        n.rx.deliver_rx(&plain(&pattern(100, 0))).unwrap(),
        RxOutcome::Delivered { .. }
    ));
}

#[test]
fn tap_offloads_follow_the_features() {
    assert_eq!(ALL.tap_offloads(), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    assert_eq!(RxFeatures::default().tap_offloads(), 0);
    let no_sg = RxFeatures { sg: false, ..ALL };
    assert_eq!(no_sg.tap_offloads(), TUN_F_CSUM);
    let no_csum = RxFeatures { csum: false, ..ALL };
    assert_eq!(no_csum.tap_offloads(), 0);
}
