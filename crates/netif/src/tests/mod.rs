//! Tests against a fake frontend over guest memory and a real grant table.

pub mod frames;
mod fuzz;
pub mod harness;
mod rx;
mod tx;
mod tx_hostile;

/// A small seeded generator (xorshift64*), so that failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A tx request slot.
pub fn tx_req(
    gref: u32,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
) -> [u8; crate::abi::TX_SLOT_SIZE] {
    crate::abi::NetifTxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
    .to_bytes()
}
