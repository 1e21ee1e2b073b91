//! A fake frontend: guest memory with a v1 grant table, a ring, and an in-memory disk.

mod direct;
mod fuzz;
mod hostile;
mod rw;

use std::sync::{Arc, Mutex};

use block::DiskImage;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};
use xen::abi::gnttab::{GrantEntryV1, GTF_PERMIT_ACCESS, GTF_READONLY};
use xen::gnttab::{GnttabConfig, GrantTable};
use xen_ring::{FrontRing, GuestRingPages};

use crate::abi::*;
use crate::{Queue, QueueConfig};

pub(crate) type Mem = GuestMemoryMmap<()>;

/// 4 MiB of guest RAM.
const RAM_FRAMES: u64 = 0x400;
/// Grant table frames 0..4 (2048 v1 entries) at these gfns.
const GT_GFN: u64 = 0x3f0;
const GT_FRAMES: u64 = 4;
/// Ring pages live at gfns 0x10.., data pages at 0x100...
pub(crate) const RING_GFN: u64 = 0x10;
pub(crate) const DATA_GFN: u64 = 0x100;
/// The ring's grant references are 1..; data grants 100...
pub(crate) const RING_GREF: u32 = 1;
pub(crate) const DATA_GREF: u32 = 100;

/// An in-memory disk that logs every change.
#[derive(Debug)]
pub(crate) struct MemDisk {
    pub data: Mutex<Vec<u8>>,
    pub ro: bool,
    /// (offset, len) of every write and discard, in order.
    pub changes: Mutex<Vec<(u64, u64)>>,
    pub flushes: Mutex<u64>,
}

impl MemDisk {
    pub fn new(size: usize, ro: bool) -> Arc<MemDisk> {
        let data = (0..size).map(|i| (i / 512) as u8 ^ 0xa5).collect();
        Arc::new(MemDisk {
            data: Mutex::new(data),
            ro,
            changes: Mutex::new(Vec::new()),
            flushes: Mutex::new(0),
        })
    }

    pub fn snapshot(&self) -> Vec<u8> {
        self.data.lock().unwrap().clone()
    }

    pub fn changes(&self) -> usize {
        self.changes.lock().unwrap().len()
    }

    fn range(&self, off: u64, len: usize) -> block::Result<std::ops::Range<usize>> {
        let size = self.size();
        match off.checked_add(len as u64) {
            Some(end) if end <= size => Ok(off as usize..end as usize),
            _ => Err(block::Error::OutOfRange {
                offset: off,
                len: len as u64,
                size,
            }),
        }
    }
}

impl DiskImage for MemDisk {
    fn size(&self) -> u64 {
        self.data.lock().unwrap().len() as u64
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> block::Result<()> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data.lock().unwrap()[r]);
        Ok(())
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> block::Result<()> {
        assert!(!self.ro, "write reached a read-only disk");
        let r = self.range(offset, buf.len())?;
        self.data.lock().unwrap()[r].copy_from_slice(buf);
        self.changes
            .lock()
            .unwrap()
            .push((offset, buf.len() as u64));
        Ok(())
    }
    fn flush(&self) -> block::Result<()> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }
    fn discard(&self, offset: u64, len: u64) -> block::Result<()> {
        assert!(!self.ro, "discard reached a read-only disk");
        let r = self.range(offset, len as usize)?;
        self.data.lock().unwrap()[r].fill(0);
        self.changes.lock().unwrap().push((offset, len));
        Ok(())
    }
    fn resize(&self, _new_size: u64) -> block::Result<()> {
        Err(block::Error::Unsupported("resize".into()))
    }
    fn read_only(&self) -> bool {
        self.ro
    }
}

/// The guest side: memory, grant table, ring front end; and the backend queue under test.
pub(crate) struct Guest {
    pub mem: Mem,
    pub table: GrantTable<Mem>,
    pub disk: Arc<MemDisk>,
    pub front: FrontRing<GuestRingPages<Mem>>,
    pub queue: Queue<Mem>,
}

pub(crate) fn new_table() -> (Mem, GrantTable<Mem>) {
    let mem = Mem::from_ranges(&[(GuestAddress(0), (RAM_FRAMES * 4096) as usize)]).unwrap();
    let table = GrantTable::new(GnttabConfig::new(4), mem.clone()).unwrap();
    for i in 0..GT_FRAMES {
        table.map_frame(i, GT_GFN + i).unwrap();
    }
    (mem, table)
}

/// Writes v1 entry `gref`: granted to the backend (domain 0) for `gfn`.
pub(crate) fn grant(mem: &Mem, gref: u32, gfn: u64, readonly: bool) {
    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    set_entry(mem, gref, flags, gfn as u32);
}

pub(crate) fn set_entry(mem: &Mem, gref: u32, flags: u16, frame: u32) {
    let e = GrantEntryV1 {
        flags,
        domid: 0,
        frame,
    };
    mem.write_obj(e, GuestAddress(GT_GFN * 4096 + u64::from(gref) * 8))
        .unwrap();
}

impl Guest {
    /// A guest with a ring of `1 << order` pages and a disk of `disk_size` bytes.
    pub fn new(order: u32, disk_size: usize, ro: bool, cfg: QueueConfig) -> Guest {
        let (mem, table) = new_table();
        let n = 1u32 << order;
        let pages: Vec<GuestAddress> = (0..n)
            // Scattered, in reverse order, to catch any contiguity assumption.
            .map(|i| GuestAddress((RING_GFN + u64::from(n - i) * 2) * 4096))
            .collect();
        for (i, p) in pages.iter().enumerate() {
            grant(&mem, RING_GREF + i as u32, p.0 / 4096, false);
        }
        let front = FrontRing::new(
            GuestRingPages::new(mem.clone(), pages).unwrap(),
            RING_ENTRY_SIZE,
        )
        .unwrap();
        let disk = MemDisk::new(disk_size, ro);
        let refs: Vec<u32> = (0..n).map(|i| RING_GREF + i).collect();
        let queue = Queue::new(table.clone(), mem.clone(), disk.clone(), &refs, cfg).unwrap();
        Guest {
            mem,
            table,
            disk,
            front,
            queue,
        }
    }

    pub fn simple() -> Guest {
        Guest::new(0, 1 << 20, false, QueueConfig::default())
    }

    /// Grants data page `i` (gref DATA_GREF + i, gfn DATA_GFN + i) and fills it with `fill`.
    pub fn data_page(&self, i: u32, readonly: bool, fill: &[u8]) -> u32 {
        let gfn = DATA_GFN + u64::from(i);
        grant(&self.mem, DATA_GREF + i, gfn, readonly);
        let mut page = vec![0u8; 4096];
        for (j, b) in page.iter_mut().enumerate() {
            *b = fill[j % fill.len()];
        }
        self.mem
            .write_slice(&page, GuestAddress(gfn * 4096))
            .unwrap();
        DATA_GREF + i
    }

    pub fn page(&self, i: u32) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        self.mem
            .read_slice(&mut page, GuestAddress((DATA_GFN + u64::from(i)) * 4096))
            .unwrap();
        page
    }

    /// Pushes and publishes `n` data-less flushes with ids `0..n` (without running the queue).
    pub fn push_flushes(&mut self, n: u64) {
        for i in 0..n {
            self.front
                .push_request(&rw(BLKIF_OP_FLUSH_DISKCACHE, i, 0, &[]))
                .unwrap();
        }
        self.front.push_requests_and_check_notify().unwrap();
    }

    /// Pushes `reqs`, runs the queue, returns the responses.
    pub fn submit(&mut self, reqs: &[[u8; REQUEST_SIZE]]) -> Vec<BlkifResponse> {
        for r in reqs {
            self.front.push_request(r).unwrap();
        }
        self.front.push_requests_and_check_notify().unwrap();
        let out = self.queue.process().unwrap();
        assert_eq!(out.requests as usize, reqs.len());
        self.responses()
    }

    pub fn responses(&mut self) -> Vec<BlkifResponse> {
        let mut v = Vec::new();
        let mut b = [0u8; RESPONSE_SIZE];
        while self.front.next_response(&mut b).unwrap() {
            v.push(decode(&b).unwrap());
        }
        v
    }

    /// Submits one request and returns its status, checking the echoed id.
    pub fn status(&mut self, req: [u8; REQUEST_SIZE]) -> i16 {
        let (id, _) = crate::request::response_header(&req);
        let r = self.submit(&[req]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, id);
        r[0].status
    }
}

fn bytes<T: ByteValued>(v: &T) -> [u8; REQUEST_SIZE] {
    let mut b = [0u8; REQUEST_SIZE];
    b[..std::mem::size_of::<T>()].copy_from_slice(v.as_slice());
    b
}

/// A direct request with segments `(gref, first_sect, last_sect)`.
pub(crate) fn rw(op: u8, id: u64, sector: u64, segs: &[(u32, u8, u8)]) -> [u8; REQUEST_SIZE] {
    let mut r = BlkifRequest {
        operation: op,
        nr_segments: segs.len() as u8,
        id,
        sector_number: sector,
        ..Default::default()
    };
    for (d, &(gref, first_sect, last_sect)) in r.seg.iter_mut().zip(segs) {
        *d = BlkifRequestSegment {
            gref,
            first_sect,
            last_sect,
            _pad: 0,
        };
    }
    bytes(&r)
}

pub(crate) fn discard(id: u64, sector: u64, nr_sectors: u64) -> [u8; REQUEST_SIZE] {
    bytes(&BlkifRequestDiscard {
        operation: BLKIF_OP_DISCARD,
        id,
        sector_number: sector,
        nr_sectors,
        ..Default::default()
    })
}

pub(crate) fn indirect(op: u8, id: u64, sector: u64, nr: u16, pages: &[u32]) -> [u8; REQUEST_SIZE] {
    let mut r = BlkifRequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op: op,
        nr_segments: nr,
        id,
        sector_number: sector,
        ..Default::default()
    };
    r.indirect_grefs[..pages.len()].copy_from_slice(pages);
    bytes(&r)
}

/// Writes segment descriptors into indirect page `i` (granted read-only, like blkfront).
pub(crate) fn indirect_page(g: &Guest, i: u32, segs: &[(u32, u8, u8)]) -> u32 {
    let gref = g.data_page(i, true, &[0]);
    let gpa = GuestAddress((DATA_GFN + u64::from(i)) * 4096);
    for (k, &(gref, first_sect, last_sect)) in segs.iter().enumerate() {
        let s = BlkifRequestSegment {
            gref,
            first_sect,
            last_sect,
            _pad: 0,
        };
        g.mem
            .write_obj(s, GuestAddress(gpa.0 + k as u64 * 8))
            .unwrap();
    }
    gref
}
