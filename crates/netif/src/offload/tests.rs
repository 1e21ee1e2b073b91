//! Header parsing and checksums.

use super::*;
use crate::tests::frames::{frame, pattern, TCP, UDP};
use crate::tests::Rng;

#[test]
fn virtio_net_hdr_layout() {
    let h = VirtioNetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 0x0302,
        gso_size: 0x0504,
        csum_start: 0x0706,
        csum_offset: 0x0908,
    };
    assert_eq!(h.to_bytes(), [1, 4, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(VirtioNetHdr::from_bytes(&h.to_bytes()), Some(h));
    assert_eq!(VirtioNetHdr::from_bytes(&[0; 9]), None);
}

#[test]
fn finds_tcp_and_udp_over_ipv4_and_ipv6() {
    for (v6, proto, vlan, opts) in [
        (false, TCP, false, 0),
        (false, TCP, true, 12),
        (false, UDP, false, 0),
        (true, TCP, false, 12),
        (true, UDP, true, 0),
    ] {
        let f = frame(v6, proto, vlan, opts, &pattern(100, 1));
        let l4 = parse_l4(&f.data).unwrap();
        assert_eq!(l4.l4_start, f.l4, "{v6} {proto} {vlan}");
        assert_eq!(l4.l3_start, f.l3);
        assert_eq!(l4.tcp, proto == TCP);
        assert_eq!(l4.ip, if v6 { IpVersion::V6 } else { IpVersion::V4 });
        assert_eq!(l4.l4_len, if proto == TCP { 20 + opts } else { 8 });
        assert_eq!(usize::from(l4.csum_offset()), f.csum_offset);
    }
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let mut f = frame(true, TCP, false, 0, &pattern(10, 2)).data;
    // Insert an 8-byte hop-by-hop header before TCP.
    let l3 = 14;
    f[l3 + 6] = 0;
    f.splice(l3 + 40..l3 + 40, [TCP, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse_l4(&f).unwrap().l4_start, l3 + 48);
    f[l3 + 40] = 44;
    assert_eq!(parse_l4(&f), Err(OffloadError::Fragment));
}

#[test]
fn refuses_what_it_cannot_offload() {
    let f = frame(false, TCP, false, 0, &[]).data;
    assert_eq!(parse_l4(&f[..f.len() - 1]), Err(OffloadError::Truncated));
    assert_eq!(parse_l4(&f[..13]), Err(OffloadError::Truncated));
    let mut arp = f.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(parse_l4(&arp), Err(OffloadError::NotIp(0x0806)));
    let mut icmp = f.clone();
    icmp[14 + 9] = 1;
    assert_eq!(parse_l4(&icmp), Err(OffloadError::NotTcpUdp(1)));
    let mut frag = f.clone();
    frag[14 + 6] = 0x20; // more fragments
    assert_eq!(parse_l4(&frag), Err(OffloadError::Fragment));
    let mut bad = f.clone();
    bad[14] = 0x44;
    assert_eq!(parse_l4(&bad), Err(OffloadError::BadIpHeader));
}

#[test]
fn checksums_are_completed_correctly() {
    for (v6, proto) in [(false, TCP), (false, UDP), (true, TCP), (true, UDP)] {
        for len in [0, 1, 57, 1000] {
            let f = frame(v6, proto, false, 0, &pattern(len, 9));
            let mut d = f.data.clone();
            assert!(fill_checksum(&mut d, f.l4, f.csum_offset));
            assert!(f.checksum_ok(&d), "{v6} {proto} {len}");
            // The pseudo-header sum is restored exactly.
            let l4 = parse_l4(&d).unwrap();
            set_pseudo_header_sum(&mut d, &l4);
            assert_eq!(d, f.data);
        }
    }
    let mut d = vec![0u8; 10];
    assert!(!fill_checksum(&mut d, 10, 0));
    assert!(!fill_checksum(&mut d, 4, 5));
    assert!(!fill_checksum(&mut d, usize::MAX, 2));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(7);
    let base = frame(true, TCP, true, 8, &pattern(40, 3)).data;
    for _ in 0..5000 {
        let mut d = base.clone();
        let n = rng.below(8) + 1;
        for _ in 0..n {
            let at = rng.below(d.len());
            d[at] = rng.next() as u8;
        }
        d.truncate(rng.below(d.len() + 1));
        if let Ok(l4) = parse_l4(&d) {
            assert!(l4.l4_start + l4.l4_len <= d.len());
            set_pseudo_header_sum(&mut d, &l4);
            assert!(fill_checksum(
                &mut d,
                l4.l4_start,
                usize::from(l4.csum_offset())
            ));
        }
    }
}
