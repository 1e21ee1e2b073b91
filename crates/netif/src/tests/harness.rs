//! A fake netfront: guest memory, a real grant table, both rings' front ends, and the
//! backend queues under test.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use xen::abi::gnttab::{GrantEntryV1, GTF_PERMIT_ACCESS, GTF_READONLY};
use xen::gnttab::{GnttabConfig, GrantTable};
use xen_ring::{FrontRing, GuestRingPages};

use crate::abi::*;
use crate::{NetifError, RxFeatures, RxQueue, TxOutcome, TxPacket, TxQueue};

pub type Mem = GuestMemoryMmap<()>;
type Pages = GuestRingPages<Mem>;

const GUEST: u16 = 3;
/// 4 MiB of RAM.
const RAM_FRAMES: u64 = 0x400;
/// Grant-table frames (4: 2048 v1 entries).
const GT_GFN: u64 = 0x3f0;
const GT_FRAMES: u64 = 4;
const TX_RING_GFN: u64 = 0x10;
const RX_RING_GFN: u64 = 0x11;
/// Tx data pages: page `i` is at gfn `TX_PAGE_GFN + i`, granted as `TX_GREF + i`.
const TX_PAGE_GFN: u64 = 0x100;
pub const TX_GREF: u32 = 16;
pub const TX_PAGES: u32 = 256;
/// Rx pages: page `i` at `RX_PAGE_GFN + i`, granted as `RX_GREF + i`.
const RX_PAGE_GFN: u64 = 0x200;
pub const RX_GREF: u32 = 600;
pub const RX_PAGES: u32 = 256;

pub struct Net {
    pub mem: Mem,
    pub gnttab: GrantTable<Mem>,
    pub tx_front: FrontRing<Pages>,
    pub rx_front: FrontRing<Pages>,
    pub tx: TxQueue<Pages, Mem>,
    pub rx: RxQueue<Pages, Mem>,
    /// Rx requests posted so far (request `n` uses id and page `n % 256`).
    rx_posted: u32,
}

fn ring_pages(mem: &Mem, gfn: u64) -> Pages {
    GuestRingPages::new(mem.clone(), vec![GuestAddress(gfn * 4096)]).unwrap()
}

impl Net {
    pub fn new(features: RxFeatures) -> Net {
        let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap();
        let gnttab = GrantTable::new(GnttabConfig::new(GUEST), mem.clone()).unwrap();
        for i in 0..GT_FRAMES {
            gnttab.map_frame(i, GT_GFN + i).unwrap();
        }
        let tx_front = FrontRing::new(ring_pages(&mem, TX_RING_GFN), TX_SLOT_SIZE).unwrap();
        let rx_front = FrontRing::new(ring_pages(&mem, RX_RING_GFN), RX_SLOT_SIZE).unwrap();
        let tx = TxQueue::new(ring_pages(&mem, TX_RING_GFN), gnttab.clone()).unwrap();
        let rx = RxQueue::new(ring_pages(&mem, RX_RING_GFN), gnttab.clone(), features).unwrap();
        let net = Net {
            mem,
            gnttab,
            tx_front,
            rx_front,
            tx,
            rx,
            rx_posted: 0,
        };
        for i in 0..TX_PAGES {
            net.grant(TX_GREF + i, TX_PAGE_GFN + u64::from(i), true);
        }
        for i in 0..RX_PAGES {
            net.grant(RX_GREF + i, RX_PAGE_GFN + u64::from(i), false);
        }
        net
    }

    /// Writes a v1 grant entry for dom0.
    pub fn grant(&self, gref: u32, gfn: u64, readonly: bool) {
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        let e = GrantEntryV1 {
            flags,
            domid: 0,
            frame: gfn as u32,
        };
        self.mem
            .write_obj(e, GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8))
            .unwrap();
    }

    /// Clears a grant entry (the guest revokes it).
    pub fn revoke(&self, gref: u32) {
        let gpa = GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8);
        self.mem.write_obj(GrantEntryV1::default(), gpa).unwrap();
    }

    pub fn write_tx_page(&self, page: u32, offset: usize, data: &[u8]) {
        let gpa = (TX_PAGE_GFN + u64::from(page)) * 4096 + offset as u64;
        self.mem.write_slice(data, GuestAddress(gpa)).unwrap();
    }

    pub fn read_rx_page(&self, page: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        let gpa = (RX_PAGE_GFN + u64::from(page)) * 4096;
        self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap();
        v
    }

    /// Pushes raw tx slots and publishes them.
    pub fn push_tx(&mut self, slots: &[[u8; TX_SLOT_SIZE]]) {
        for s in slots {
            self.tx_front.push_request(s).unwrap();
        }
        self.tx_front.push_requests_and_check_notify().unwrap();
    }

    /// Runs the backend's tx processing, collecting the packets.
    pub fn run_tx(&mut self) -> (Result<TxOutcome, NetifError>, Vec<TxPacket>) {
        let mut got = Vec::new();
        let r = self.tx.process_tx(&mut |p| got.push(p));
        (r, got)
    }

    /// Every published tx response.
    pub fn tx_responses(&mut self) -> Vec<NetifTxResponse> {
        let mut out = Vec::new();
        let mut b = [0u8; 4];
        while self.tx_front.next_response(&mut b).unwrap() {
            out.push(NetifTxResponse::from_bytes(&b));
        }
        out
    }

    /// Transmits `data` as netfront does: the first fragment at `first_offset` of page
    /// `page0` up to the page end, then whole pages; extras after the first request.
    /// Returns the number of slots used.
    pub fn send(
        &mut self,
        data: &[u8],
        flags: u16,
        extras: &[NetifExtraInfo],
        first_offset: usize,
        page0: u32,
        id0: u16,
    ) -> usize {
        let mut frags = Vec::new();
        let first_len = data.len().min(PAGE_SIZE - first_offset);
        frags.push((first_offset, &data[..first_len]));
        frags.extend(data[first_len..].chunks(PAGE_SIZE).map(|c| (0, c)));
        let mut slots = Vec::new();
        for (i, (off, chunk)) in frags.iter().enumerate() {
            let page = (page0 + i as u32) % TX_PAGES;
            self.write_tx_page(page, *off, chunk);
            let more = if i + 1 < frags.len() {
                NETTXF_MORE_DATA
            } else {
                0
            };
            let (f, size) = if i == 0 {
                let ex = if extras.is_empty() {
                    0
                } else {
                    NETTXF_EXTRA_INFO
                };
                (flags | more | ex, data.len())
            } else {
                (more, chunk.len())
            };
            slots.push(
                NetifTxRequest {
                    gref: TX_GREF + page,
                    offset: *off as u16,
                    flags: f,
                    id: id0.wrapping_add(i as u16),
                    size: size as u16,
                }
                .to_bytes(),
            );
            if i == 0 {
                for (k, e) in extras.iter().enumerate() {
                    let mut e = *e;
                    if k + 1 < extras.len() {
                        e.flags |= XEN_NETIF_EXTRA_FLAG_MORE;
                    }
                    let mut s = [0u8; TX_SLOT_SIZE];
                    s[..8].copy_from_slice(&e.to_bytes());
                    slots.push(s);
                }
            }
        }
        self.push_tx(&slots);
        slots.len()
    }

    /// Posts `n` rx requests.
    pub fn post_rx(&mut self, n: u32) {
        for _ in 0..n {
            let i = self.rx_posted % RX_PAGES;
            let req = NetifRxRequest {
                id: i as u16,
                pad: 0,
                gref: RX_GREF + i,
            };
            self.rx_front.push_request(&req.to_bytes()).unwrap();
            self.rx_posted += 1;
        }
        self.rx_front.push_requests_and_check_notify().unwrap();
    }

    /// Every published rx response, raw.
    pub fn rx_responses(&mut self) -> Vec<[u8; RX_SLOT_SIZE]> {
        let mut out = Vec::new();
        let mut b = [0u8; RX_SLOT_SIZE];
        while self.rx_front.next_response(&mut b).unwrap() {
            out.push(b);
        }
        out
    }
}
