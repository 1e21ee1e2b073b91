//! `bench`: the Oxen side of crates/vhd-tool/bench/bench.sh. Each phase is one process run, so
//! the script times Oxen exactly as it times qemu-io (start-up and final flush included).

use std::path::PathBuf;

use anyhow::{Context, Result};
use block::vhd::{self, CreateOptions, OpenOptions, VhdImage};
use block::DiskImage;
use clap::{Args, ValueEnum};

use crate::util::parse_size;

#[derive(Clone, Copy, ValueEnum)]
pub enum Phase {
    /// Create a fresh dynamic VHD and fill it sequentially, then flush.
    SeqWrite,
    /// Read the whole image sequentially.
    SeqRead,
    /// Create a fresh dynamic VHD and do 4 KiB writes at random offsets, then flush.
    RandWrite,
    /// Print the random-write offsets (for qemu-io) and exit.
    PrintOffsets,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Image to use (created by the write phases; an existing file is replaced).
    file: PathBuf,
    #[arg(long, value_enum)]
    phase: Phase,
    /// Virtual size, and bytes moved by the sequential phases.
    #[arg(long, default_value = "1G")]
    size: String,
    /// Request size of the sequential phases.
    #[arg(long, default_value = "1M")]
    request: String,
    /// Number of 4 KiB random writes.
    #[arg(long, default_value_t = 20000)]
    random_writes: u64,
    /// Seed of the random offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Random 4 KiB-aligned offsets (xorshift64*), identical for Oxen and qemu-io.
pub fn offsets(seed: u64, n: u64, size: u64) -> Vec<u64> {
    let mut x = seed.max(1);
    let pages = (size / 4096).max(1);
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % pages) * 4096
        })
        .collect()
}

fn fresh(a: &BenchArgs, size: u64) -> Result<VhdImage> {
    let _ = std::fs::remove_file(&a.file);
    vhd::create(&a.file, &CreateOptions::dynamic(size)).context("creating the bench image")?;
    Ok(VhdImage::open(&a.file, &OpenOptions::read_write())?)
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let size = parse_size(&a.size)?;
    let req = parse_size(&a.request)? as usize;
    match a.phase {
        Phase::PrintOffsets => {
            for o in offsets(a.seed, a.random_writes, size) {
                println!("{o}");
            }
        }
        Phase::SeqWrite => {
            let img = fresh(&a, size)?;
            // Same pattern byte as the script's qemu-io run.
            let buf = vec![0x5bu8; req];
            let mut off = 0;
            while off < size {
                img.write_at(&buf, off)?;
                off += req as u64;
            }
            img.flush()?;
        }
        Phase::SeqRead => {
            let img = VhdImage::open(&a.file, &OpenOptions::read_only())?;
            let mut buf = vec![0u8; req];
            let mut off = 0;
            while off < img.size() {
                img.read_at(&mut buf, off)?;
                off += req as u64;
            }
        }
        Phase::RandWrite => {
            let img = fresh(&a, size)?;
            let small = vec![0x5au8; 4096];
            for o in offsets(a.seed, a.random_writes, size) {
                img.write_at(&small, o)?;
            }
            img.flush()?;
        }
    }
    Ok(())
}
