//! Hidden test helper for the crash-safety test: writes a deterministic sequence of records to a
//! dynamic VHD, flushing every few writes, and prints `flushed N` once writes 0..N are durable.
//! The test kills it with SIGKILL at random moments and then verifies the image.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use block::vhd::{OpenOptions, VhdImage};
use block::DiskImage;
use clap::Args;

#[derive(Args)]
pub struct TortureArgs {
    /// Existing dynamic or differencing VHD.
    file: PathBuf,
    /// Sequence number of the first write.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Writes between flushes.
    #[arg(long, default_value_t = 4)]
    flush_every: u64,
}

/// Where write `seq` goes and how long it is (sectors), for a disk of `sectors` sectors.
/// Mixes small writes in few blocks with writes that allocate new blocks.
pub fn record_place(seq: u64, sectors: u64) -> (u64, u64) {
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x1234_5678;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    let len = 1 + x % 16;
    let start = (x >> 8) % (sectors - len);
    (start, len)
}

/// Contents of sector `k` of write `seq`: the sequence number and sector index, repeated.
pub fn record_sector(seq: u64, k: u64) -> [u8; 512] {
    let mut s = [0u8; 512];
    for (i, c) in s.chunks_exact_mut(16).enumerate() {
        c[..8].copy_from_slice(&seq.to_le_bytes());
        c[8..].copy_from_slice(&(k ^ (i as u64) << 48).to_le_bytes());
    }
    s
}

pub fn torture(a: TortureArgs) -> Result<()> {
    let img = VhdImage::open(&a.file, &OpenOptions::read_write())?;
    let sectors = img.size() / 512;
    let mut out = std::io::stdout().lock();
    let mut seq = a.start;
    loop {
        let (start, len) = record_place(seq, sectors);
        let mut buf = Vec::with_capacity(len as usize * 512);
        for k in 0..len {
            buf.extend_from_slice(&record_sector(seq, k));
        }
        img.write_at(&buf, start * 512)?;
        seq += 1;
        if seq.is_multiple_of(a.flush_every.max(1)) {
            img.flush()?;
            writeln!(out, "flushed {seq}")?;
            out.flush()?;
        }
    }
}
