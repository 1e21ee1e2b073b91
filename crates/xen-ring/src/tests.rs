//! Tests of the ring area over guest pages and of the layout.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::{GuestRingPages, RingError, RingLayout, RingPages, PAGE_SIZE};

pub(crate) fn mem(pages: usize) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), pages * PAGE_SIZE)]).unwrap()
}

#[test]
fn layout_sizes_follow_xen() {
    // blkif: 112-byte entries, one page: (4096 - 64) / 112 = 36 -> 32.
    assert_eq!(RingLayout::new(4096, 112).unwrap().nr_ents(), 32);
    // Four pages: (16384 - 64) / 112 = 145 -> 128.
    assert_eq!(RingLayout::new(4 * 4096, 112).unwrap().nr_ents(), 128);
    // netif tx: 12-byte entries -> 256.
    assert_eq!(RingLayout::new(4096, 12).unwrap().nr_ents(), 256);
    assert_eq!(RingLayout::new(64 + 8, 8).unwrap().nr_ents(), 1);
    let l = RingLayout::new(4096, 112).unwrap();
    assert_eq!(l.slot_offset(0), 64);
    assert_eq!(l.slot_offset(33), 64 + 112);
    assert!(matches!(
        RingLayout::new(4096, 0),
        Err(RingError::TooSmall { .. })
    ));
    assert!(matches!(
        RingLayout::new(64, 8),
        Err(RingError::TooSmall { .. })
    ));
    assert!(matches!(
        RingLayout::new(100, 112),
        Err(RingError::TooSmall { .. })
    ));
}

#[test]
fn page_list_is_checked() {
    let m = mem(4);
    assert_eq!(
        GuestRingPages::new(m.clone(), vec![]).unwrap_err(),
        RingError::NoPages
    );
    assert_eq!(
        GuestRingPages::new(m.clone(), vec![GuestAddress(0x1000), GuestAddress(0x2010)])
            .unwrap_err(),
        RingError::UnalignedPage {
            index: 1,
            gpa: 0x2010
        }
    );
    assert_eq!(
        GuestRingPages::new(m.clone(), vec![GuestAddress(0x4000)]).unwrap_err(),
        RingError::PageNotInMemory {
            index: 0,
            gpa: 0x4000
        }
    );
    assert!(matches!(
        GuestRingPages::new(m.clone(), vec![GuestAddress(!0xfff)]),
        Err(RingError::PageNotInMemory { .. })
    ));
    // A page that starts in memory but runs past its end.
    let short = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1800)]).unwrap();
    assert!(matches!(
        GuestRingPages::new(short, vec![GuestAddress(0x1000)]),
        Err(RingError::PageNotInMemory { .. })
    ));
    let p = GuestRingPages::new(m, vec![GuestAddress(0x3000), GuestAddress(0x1000)]).unwrap();
    assert_eq!(p.len(), 2 * PAGE_SIZE);
    assert_eq!(p.pages(), &[GuestAddress(0x3000), GuestAddress(0x1000)]);
}

#[test]
fn accesses_split_across_scattered_pages() {
    let m = mem(4);
    // The area's first page is guest page 3, its second guest page 1.
    let p =
        GuestRingPages::new(m.clone(), vec![GuestAddress(0x3000), GuestAddress(0x1000)]).unwrap();
    let data: Vec<u8> = (0..32u8).collect();
    p.write(PAGE_SIZE - 10, &data).unwrap();
    let mut tail = [0u8; 10];
    m.read_slice(&mut tail, GuestAddress(0x3000 + 4086))
        .unwrap();
    assert_eq!(&tail[..], &data[..10]);
    let mut head = [0u8; 22];
    m.read_slice(&mut head, GuestAddress(0x1000)).unwrap();
    assert_eq!(&head[..], &data[10..]);
    let mut back = [0u8; 32];
    p.read(PAGE_SIZE - 10, &mut back).unwrap();
    assert_eq!(&back[..], &data[..]);
    // Nothing leaked into the pages around.
    let mut z = [0u8; 8];
    m.read_slice(&mut z, GuestAddress(0x1000 + 22)).unwrap();
    assert_eq!(z, [0; 8]);
    m.read_slice(&mut z, GuestAddress(0x2000)).unwrap();
    assert_eq!(z, [0; 8]);

    // Index words land on the right page.
    p.store_u32(PAGE_SIZE + 4, 0xdead_beef).unwrap();
    assert_eq!(
        m.read_obj::<u32>(GuestAddress(0x1004)).unwrap(),
        0xdead_beef
    );
    assert_eq!(p.load_u32(PAGE_SIZE + 4).unwrap(), 0xdead_beef);
}

#[test]
fn bounds_and_alignment_are_checked() {
    let p = GuestRingPages::new(mem(1), vec![GuestAddress(0)]).unwrap();
    let mut b = [0u8; 8];
    assert!(matches!(
        p.read(PAGE_SIZE - 4, &mut b),
        Err(RingError::OutOfBounds { .. })
    ));
    assert!(matches!(
        p.write(usize::MAX, &b),
        Err(RingError::OutOfBounds { .. })
    ));
    assert_eq!(p.load_u32(2), Err(RingError::Misaligned(2)));
    assert!(matches!(
        p.store_u32(PAGE_SIZE, 1),
        Err(RingError::OutOfBounds { .. })
    ));
    assert!(p.read(PAGE_SIZE - 8, &mut b).is_ok());
    assert!(p.read(PAGE_SIZE, &mut []).is_ok());
}
