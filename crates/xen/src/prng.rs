//! A small seeded PRNG (xorshift64*) for the fuzz-style tests: reproducible without a crate.

pub(crate) struct Prng(u64);

impl Prng {
    pub(crate) fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Mostly small values, sometimes anything: hostile arguments cluster at the edges.
    pub(crate) fn edgy_u32(&mut self, small: u32) -> u32 {
        match self.below(8) {
            0 => u32::MAX - self.below(4) as u32,
            1 => self.next_u64() as u32,
            _ => self.below(u64::from(small) + 1) as u32,
        }
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}
