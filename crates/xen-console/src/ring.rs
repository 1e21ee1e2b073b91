//! The two rings of `struct xencons_interface` and the backend's side of each, hardened against
//! a guest that writes impossible indices.
//!
//! Indices are free-running `u32`s; `prod - cons` (wrapping) is the fill level. The backend
//! only ever touches `out[(idx) % 2048]` and `in[(idx) % 1024]`, so no index value can move an
//! access outside the rings. A fill level larger than the ring is impossible for an honest
//! guest; the rule for it is:
//!
//! - `out` (guest → backend): the contents are garbage, so they are **dropped**: `out_cons` is
//!   set to `out_prod`, as if everything had been consumed.
//! - `in` (backend → guest): the ring is **reset to empty from the guest's point of view**:
//!   `in_prod` is set to `in_cons`. Pending input stays queued in the backend and goes in on the
//!   next call.
//!
//! Either way the call reports [`RingError`] so the caller can warn (rate-limited), and each
//! call does a bounded amount of work, so a guest rewriting indices in a loop cannot make the
//! backend spin.

use crate::ConsolePage;

/// Offset of the `in` ring (backend → guest: keyboard input).
pub const IN_OFF: usize = 0;
/// Size of the `in` ring.
pub const IN_SIZE: usize = 1024;
/// Offset of the `out` ring (guest → backend: console output).
pub const OUT_OFF: usize = 1024;
/// Size of the `out` ring.
pub const OUT_SIZE: usize = 2048;
/// Offset of `in_cons` (written by the guest).
pub const IN_CONS: usize = 3072;
/// Offset of `in_prod` (written by the backend).
pub const IN_PROD: usize = 3076;
/// Offset of `out_cons` (written by the backend).
pub const OUT_CONS: usize = 3080;
/// Offset of `out_prod` (written by the guest).
pub const OUT_PROD: usize = 3084;
/// Offset of the `connection` byte (newer headers): 0 connected, 1 disconnected.
pub const CONNECTION: usize = 3088;

/// A ring whose indices no honest guest could have written; see the module docs for what the
/// backend did about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `out_prod - out_cons` exceeded the ring; the contents were dropped.
    #[error("out ring indices cons={cons:#x} prod={prod:#x} span more than {OUT_SIZE} bytes; ring contents dropped")]
    Output {
        /// `out_cons` as read.
        cons: u32,
        /// `out_prod` as read.
        prod: u32,
    },
    /// `in_prod - in_cons` exceeded the ring (e.g. `in_cons` beyond `in_prod`); reset to empty.
    #[error(
        "in ring indices cons={cons:#x} prod={prod:#x} span more than {IN_SIZE} bytes; ring reset"
    )]
    Input {
        /// `in_cons` as read.
        cons: u32,
        /// `in_prod` as read.
        prod: u32,
    },
}

/// Tells the guest the backend is servicing the console (the header's `connection` flag).
pub fn mark_connected(page: &dyn ConsolePage) {
    page.write_bytes(CONNECTION, &[0]);
}

/// Copies `len` bytes of a ring starting at free-running index `idx`, in at most two pieces.
fn ring_chunks(idx: u32, len: usize, size: usize) -> [(usize, usize); 2] {
    let start = idx as usize % size;
    let first = len.min(size - start);
    [(start, first), (0, len - first)]
}

/// Moves everything the guest has written to `out` into `sink` and frees the space. Returns the
/// number of bytes taken (at most [`OUT_SIZE`]).
pub fn read_output(page: &dyn ConsolePage, sink: &mut Vec<u8>) -> Result<usize, RingError> {
    let cons = page.read_u32(OUT_CONS);
    let prod = page.read_u32(OUT_PROD);
    let avail = prod.wrapping_sub(cons) as usize;
    if avail > OUT_SIZE {
        page.write_u32(OUT_CONS, prod);
        return Err(RingError::Output { cons, prod });
    }
    let at = sink.len();
    sink.resize(at + avail, 0);
    let mut pos = at;
    for (off, len) in ring_chunks(cons, avail, OUT_SIZE) {
        page.read_bytes(OUT_OFF + off, &mut sink[pos..pos + len]);
        pos += len;
    }
    // Release order: the copies above are done before the guest may reuse the space.
    page.write_u32(OUT_CONS, cons.wrapping_add(avail as u32));
    Ok(avail)
}

/// Puts as much of `data` into `in` as fits; returns how many bytes went in.
pub fn write_input(page: &dyn ConsolePage, data: &[u8]) -> Result<usize, RingError> {
    let cons = page.read_u32(IN_CONS);
    let prod = page.read_u32(IN_PROD);
    let used = prod.wrapping_sub(cons) as usize;
    if used > IN_SIZE {
        page.write_u32(IN_PROD, cons);
        return Err(RingError::Input { cons, prod });
    }
    let n = data.len().min(IN_SIZE - used);
    let mut pos = 0;
    for (off, len) in ring_chunks(prod, n, IN_SIZE) {
        page.write_bytes(IN_OFF + off, &data[pos..pos + len]);
        pos += len;
    }
    // Release order: the guest sees the new producer only after the bytes.
    page.write_u32(IN_PROD, prod.wrapping_add(n as u32));
    Ok(n)
}

/// The guest's side of the rings, for tests here and in other crates.
pub mod guest {
    use super::*;

    /// Writes as much of `data` into `out` as fits, as the guest's hvc driver does; returns how
    /// many bytes went in.
    pub fn write_output(page: &dyn ConsolePage, data: &[u8]) -> usize {
        let cons = page.read_u32(OUT_CONS);
        let prod = page.read_u32(OUT_PROD);
        let free = OUT_SIZE.saturating_sub(prod.wrapping_sub(cons) as usize);
        let n = data.len().min(free);
        let mut pos = 0;
        for (off, len) in ring_chunks(prod, n, OUT_SIZE) {
            page.write_bytes(OUT_OFF + off, &data[pos..pos + len]);
            pos += len;
        }
        page.write_u32(OUT_PROD, prod.wrapping_add(n as u32));
        n
    }

    /// Takes everything in `in`, as the guest's hvc driver does.
    pub fn read_input(page: &dyn ConsolePage) -> Vec<u8> {
        let cons = page.read_u32(IN_CONS);
        let prod = page.read_u32(IN_PROD);
        let n = (prod.wrapping_sub(cons) as usize).min(IN_SIZE);
        let mut out = vec![0; n];
        let mut pos = 0;
        for (off, len) in ring_chunks(cons, n, IN_SIZE) {
            page.read_bytes(IN_OFF + off, &mut out[pos..pos + len]);
            pos += len;
        }
        page.write_u32(IN_CONS, cons.wrapping_add(n as u32));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::guest;
    use super::*;
    use crate::MemoryPage;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn output_wraps_around_the_ring_and_the_index() {
        let p = MemoryPage::default();
        // Start near the end of the ring and just below u32 overflow.
        let start = u32::MAX - 100;
        p.write_u32(OUT_CONS, start);
        p.write_u32(OUT_PROD, start);
        let mut got = Vec::new();
        let mut sent = Vec::new();
        for round in 0..5u8 {
            let data = bytes(1500, round);
            assert_eq!(guest::write_output(&p, &data), 1500);
            sent.extend_from_slice(&data);
            assert_eq!(read_output(&p, &mut got), Ok(1500));
        }
        assert_eq!(got, sent);
        assert_eq!(p.read_u32(OUT_CONS), start.wrapping_add(7500));
        assert_eq!(read_output(&p, &mut got), Ok(0));
    }

    #[test]
    fn full_output_ring_is_read_whole() {
        let p = MemoryPage::default();
        let data = bytes(3000, 1);
        assert_eq!(guest::write_output(&p, &data), OUT_SIZE);
        assert_eq!(guest::write_output(&p, b"x"), 0, "ring is full");
        let mut got = Vec::new();
        assert_eq!(read_output(&p, &mut got), Ok(OUT_SIZE));
        assert_eq!(got, &data[..OUT_SIZE]);
    }

    #[test]
    fn input_wraps_and_stops_when_full() {
        let p = MemoryPage::default();
        p.write_u32(IN_CONS, u32::MAX - 10);
        p.write_u32(IN_PROD, u32::MAX - 10);
        let data = bytes(5000, 3);
        let mut sent = 0;
        let mut got = Vec::new();
        while sent < data.len() {
            let n = write_input(&p, &data[sent..]).unwrap();
            assert_eq!(n, IN_SIZE.min(data.len() - sent));
            // Full: nothing more fits until the guest reads.
            assert_eq!(write_input(&p, &data[sent + n..]), Ok(0));
            sent += n;
            got.extend(guest::read_input(&p));
        }
        assert_eq!(got, data);
    }

    #[test]
    fn hostile_output_indices_drop_the_ring() {
        let p = MemoryPage::default();
        for (cons, prod) in [
            (0u32, 2049u32),
            (100, 50),
            (0, u32::MAX),
            (7, 7 + 0x8000_0000),
        ] {
            p.write_u32(OUT_CONS, cons);
            p.write_u32(OUT_PROD, prod);
            let mut got = Vec::new();
            assert_eq!(
                read_output(&p, &mut got),
                Err(RingError::Output { cons, prod })
            );
            assert!(got.is_empty());
            assert_eq!(p.read_u32(OUT_CONS), prod);
            // The ring works again from there.
            assert_eq!(guest::write_output(&p, b"ok"), 2);
            assert_eq!(read_output(&p, &mut got), Ok(2));
            assert_eq!(got, b"ok");
        }
    }

    #[test]
    fn hostile_input_indices_reset_the_ring() {
        let p = MemoryPage::default();
        // in_cons beyond in_prod, and a fill level larger than the ring.
        for (cons, prod) in [(10u32, 5u32), (0, 1025), (u32::MAX, 0x7fff_0000)] {
            p.write_u32(IN_CONS, cons);
            p.write_u32(IN_PROD, prod);
            assert_eq!(
                write_input(&p, b"abc"),
                Err(RingError::Input { cons, prod })
            );
            assert_eq!(p.read_u32(IN_PROD), cons);
            assert_eq!(write_input(&p, b"abc"), Ok(3));
            assert_eq!(guest::read_input(&p), b"abc");
        }
        // Exactly full is legal, not hostile.
        p.write_u32(IN_CONS, 0);
        p.write_u32(IN_PROD, 1024);
        assert_eq!(write_input(&p, b"z"), Ok(0));
    }

    #[test]
    fn mark_connected_clears_the_flag() {
        let p = MemoryPage::default();
        p.write_bytes(CONNECTION, &[1]);
        mark_connected(&p);
        let mut b = [9];
        p.read_bytes(CONNECTION, &mut b);
        assert_eq!(b, [0]);
    }
}
