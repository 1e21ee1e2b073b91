//! Tests of the back and front ends together.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::tests::mem;
use crate::{
    BackRing, FrontRing, GuestRingPages, RingError, RingPages, PAGE_SIZE, REQ_EVENT_OFFSET,
    REQ_PROD_OFFSET, RSP_EVENT_OFFSET,
};

type Pages = GuestRingPages<GuestMemoryMmap>;

const ENTRY: usize = 112;

/// A pair of ends over the same pages at `gpas`, all indices starting at `start`.
fn pair(gpas: &[u64], start: u32) -> (FrontRing<Pages>, BackRing<Pages>) {
    let m = mem(16);
    let pages = |m: &GuestMemoryMmap| {
        GuestRingPages::new(m.clone(), gpas.iter().map(|&g| GuestAddress(g)).collect()).unwrap()
    };
    let front = FrontRing::new_at(pages(&m), ENTRY, start).unwrap();
    let back = BackRing::attach(pages(&m), ENTRY, start).unwrap();
    (front, back)
}

fn req(tag: u32) -> [u8; ENTRY] {
    let mut r = [0u8; ENTRY];
    for (i, b) in r.iter_mut().enumerate() {
        *b = (tag as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    r[..4].copy_from_slice(&tag.to_le_bytes());
    r
}

/// Sends `n` requests through, answers each with its tag, and checks the answers.
fn round_trip(front: &mut FrontRing<Pages>, back: &mut BackRing<Pages>, first: u32, n: u32) {
    for t in first..first + n {
        front.push_request(&req(t)).unwrap();
    }
    front.push_requests_and_check_notify().unwrap();
    let mut buf = [0u8; ENTRY];
    for t in first..first + n {
        assert!(back.next_request(&mut buf).unwrap());
        assert_eq!(buf, req(t), "request {t}");
        back.push_response(&(t ^ 0xffff).to_le_bytes()).unwrap();
    }
    assert!(!back.next_request(&mut buf).unwrap());
    back.push_responses_and_check_notify().unwrap();
    let mut rsp = [0u8; 4];
    for t in first..first + n {
        assert!(front.next_response(&mut rsp).unwrap());
        assert_eq!(u32::from_le_bytes(rsp), t ^ 0xffff);
    }
    assert!(!front.next_response(&mut rsp).unwrap());
}

#[test]
fn single_page_round_trip() {
    let (mut front, mut back) = pair(&[0x5000], 0);
    assert_eq!(back.nr_ents(), 32);
    assert_eq!(front.nr_ents(), 32);
    round_trip(&mut front, &mut back, 0, 32);
    round_trip(&mut front, &mut back, 32, 7);
    assert_eq!(back.req_cons(), 39);
    assert_eq!(back.rsp_prod_pvt(), 39);
    // A full ring refuses one more request.
    for t in 0..32 {
        front.push_request(&req(t)).unwrap();
    }
    assert_eq!(front.push_request(&req(99)), Err(RingError::Full(32)));
}

#[test]
fn multi_page_entries_straddle_pages() {
    // Four scattered pages in an odd order: 128 slots; slot 72 spans area bytes 8128..8240,
    // across the boundary between the second and third pages.
    let (mut front, mut back) = pair(&[0x9000, 0x2000, 0xf000, 0x4000], 0);
    assert_eq!(back.nr_ents(), 128);
    round_trip(&mut front, &mut back, 1000, 128);
    round_trip(&mut front, &mut back, 5000, 100);
    // Slot 72's last request was index 200 (tag 5072); the 4-byte response replaced its start.
    let m = back.pages().memory().clone();
    let r = req(5072);
    let mut a = [0u8; 64];
    vm_memory::Bytes::read_slice(&m, &mut a, GuestAddress(0x2000 + 4032)).unwrap();
    assert_eq!(&a[4..], &r[4..64]);
    assert_eq!(a[..4], (5072u32 ^ 0xffff).to_le_bytes());
    let mut b = [0u8; 48];
    vm_memory::Bytes::read_slice(&m, &mut b, GuestAddress(0xf000)).unwrap();
    assert_eq!(&b[..], &r[64..]);
}

#[test]
fn indices_wrap_past_2_pow_32() {
    let start = u32::MAX - 40;
    let (mut front, mut back) = pair(&[0x1000, 0x3000], start);
    for round in 0..6 {
        round_trip(&mut front, &mut back, round * 100, 50);
    }
    assert_eq!(back.req_cons(), start.wrapping_add(300));
    assert!(back.req_cons() < start);
}

#[test]
fn request_is_copied_before_use() {
    let (mut front, mut back) = pair(&[0x1000], 0);
    front.push_request(&req(7)).unwrap();
    front.push_requests_and_check_notify().unwrap();
    let mut buf = [0u8; ENTRY];
    assert!(back.next_request(&mut buf).unwrap());
    // The guest rewrites the slot after the backend took it.
    front.pages().write(64, &[0xee; ENTRY]).unwrap();
    assert_eq!(buf, req(7));
    // Shorter buffers take the slot's start; longer ones are refused.
    let mut big = [0u8; ENTRY + 1];
    assert!(matches!(
        back.next_request(&mut big),
        Err(RingError::BadBufferSize { .. })
    ));
    assert!(matches!(
        back.push_response(&[0; ENTRY + 1]),
        Err(RingError::BadBufferSize { .. })
    ));
}

#[test]
fn response_needs_a_request() {
    let (_front, mut back) = pair(&[0x1000], 0);
    assert_eq!(
        back.push_response(&[1]),
        Err(RingError::NoRequestOutstanding {
            req_cons: 0,
            rsp_prod_pvt: 0
        })
    );
}

#[test]
fn response_notify_follows_rsp_event() {
    let (mut front, mut back) = pair(&[0x1000], 0);
    let mut buf = [0u8; ENTRY];
    let mut serve = |front: &mut FrontRing<Pages>, back: &mut BackRing<Pages>, n: u32| {
        for t in 0..n {
            front.push_request(&req(t)).unwrap();
        }
        front.push_requests_and_check_notify().unwrap();
        for _ in 0..n {
            assert!(back.next_request(&mut buf).unwrap());
            back.push_response(&[0]).unwrap();
        }
        back.push_responses_and_check_notify().unwrap()
    };
    // rsp_event is 1 after init: publishing 0 -> 3 covers it.
    assert!(serve(&mut front, &mut back, 3));
    // The frontend has not asked again (rsp_event still 1): no notification for 3 -> 5.
    assert!(!serve(&mut front, &mut back, 2));
    // It asks for the 9th response: 5 -> 8 does not reach it, 8 -> 9 does.
    back.pages().store_u32(RSP_EVENT_OFFSET, 9).unwrap();
    assert!(!serve(&mut front, &mut back, 3));
    assert!(serve(&mut front, &mut back, 1));
    // Pushing nothing never notifies.
    back.pages().store_u32(RSP_EVENT_OFFSET, 9).unwrap();
    assert!(!back.push_responses_and_check_notify().unwrap());
    // The frontend's final check asks for the next response.
    let mut rsp = [0u8; 1];
    while front.next_response(&mut rsp).unwrap() {}
    assert!(!front.final_check_for_responses().unwrap());
    assert_eq!(back.pages().load_u32(RSP_EVENT_OFFSET).unwrap(), 10);
    assert!(serve(&mut front, &mut back, 1));
}

#[test]
fn final_check_for_requests_arms_req_event() {
    let (mut front, mut back) = pair(&[0x1000], 0);
    // req_event starts at 1: the first request notifies.
    front.push_request(&req(0)).unwrap();
    assert!(front.push_requests_and_check_notify().unwrap());
    // Requests waiting: final check says so and leaves req_event alone.
    assert!(back.final_check_for_requests().unwrap());
    let mut buf = [0u8; ENTRY];
    assert!(back.next_request(&mut buf).unwrap());
    back.push_response(&[0]).unwrap();
    // Without a final check, the backend's req_event is stale: no notification.
    front.push_request(&req(1)).unwrap();
    assert!(!front.push_requests_and_check_notify().unwrap());
    assert!(back.next_request(&mut buf).unwrap());
    back.push_response(&[0]).unwrap();
    // Empty ring: the final check arms req_event = req_cons + 1 and finds nothing.
    assert!(!back.final_check_for_requests().unwrap());
    assert_eq!(back.pages().load_u32(REQ_EVENT_OFFSET).unwrap(), 3);
    front.push_request(&req(2)).unwrap();
    assert!(front.push_requests_and_check_notify().unwrap());
    // A request that slipped in (published without looking at req_event) is still found.
    assert!(back.next_request(&mut buf).unwrap());
    back.push_response(&[0]).unwrap();
    back.pages().store_u32(REQ_PROD_OFFSET, 4).unwrap();
    assert!(back.final_check_for_requests().unwrap());
}

#[test]
fn hostile_req_prod_is_refused() {
    let (mut front, mut back) = pair(&[0x1000], 0);
    let mut buf = [0u8; ENTRY];
    let overflow = |req_prod, req_cons, rsp_prod_pvt| RingError::Overflow {
        req_prod,
        req_cons,
        rsp_prod_pvt,
        nr_ents: 32,
    };
    // More than a ring's worth ahead.
    back.pages().store_u32(REQ_PROD_OFFSET, 33).unwrap();
    assert_eq!(back.next_request(&mut buf), Err(overflow(33, 0, 0)));
    assert_eq!(back.has_unconsumed_requests(), Err(overflow(33, 0, 0)));
    assert_eq!(back.final_check_for_requests(), Err(overflow(33, 0, 0)));
    // Behind the consumer (wraps to a huge count).
    back.pages().store_u32(REQ_PROD_OFFSET, u32::MAX).unwrap();
    assert_eq!(back.next_request(&mut buf), Err(overflow(u32::MAX, 0, 0)));
    // Exactly a full ring is fine.
    back.pages().store_u32(REQ_PROD_OFFSET, 32).unwrap();
    assert!(back.next_request(&mut buf).unwrap());
    // One request in flight, unanswered: 32 more would need 33 response slots
    // (RING_REQUEST_CONS_OVERFLOW), although only 32 are waiting.
    back.pages().store_u32(REQ_PROD_OFFSET, 33).unwrap();
    assert_eq!(back.next_request(&mut buf), Err(overflow(33, 1, 0)));
    // Once answered, the same indices are legitimate.
    back.push_response(&[0]).unwrap();
    for _ in 0..32 {
        assert!(back.next_request(&mut buf).unwrap());
        back.push_response(&[0]).unwrap();
    }
    assert!(!back.next_request(&mut buf).unwrap());
    // A wild value near the wrap point.
    back.pages()
        .store_u32(REQ_PROD_OFFSET, 33u32.wrapping_add(1 << 31))
        .unwrap();
    assert!(matches!(
        back.next_request(&mut buf),
        Err(RingError::Overflow { .. })
    ));
    // The fake frontend is still usable after the backend saw garbage.
    let _ = &mut front;
}

#[test]
fn ring_too_small_for_entries() {
    let m = mem(1);
    let pages = GuestRingPages::new(m, vec![GuestAddress(0)]).unwrap();
    assert_eq!(
        BackRing::new(pages, PAGE_SIZE).unwrap_err(),
        RingError::TooSmall {
            area: PAGE_SIZE,
            entry_size: PAGE_SIZE
        }
    );
}
