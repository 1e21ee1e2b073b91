//! `bench`: the Oxen side of crates/vhd-tool/bench/bench.sh. Runs the same workloads the script
//! gives qemu-io, on a fresh dynamic VHD, and prints MB/s or IOPS.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use block::vhd::{self, CreateOptions, OpenOptions, VhdImage};
use block::DiskImage;
use clap::Args;

use crate::util::parse_size;

#[derive(Args)]
pub struct BenchArgs {
    /// Image to create (removed first if it exists).
    file: PathBuf,
    /// Bytes to write and read sequentially.
    #[arg(long, default_value = "1G")]
    size: String,
    /// Request size of the sequential passes.
    #[arg(long, default_value = "1M")]
    request: String,
    /// Number of 4 KiB random writes.
    #[arg(long, default_value_t = 20000)]
    random_writes: u64,
    /// Seed of the random offsets (the script passes the same offsets to qemu-io).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// xorshift64*, shared with the script's offset generator via `oxen-vhd bench --print-offsets`.
pub fn offsets(seed: u64, n: u64, size: u64) -> Vec<u64> {
    let mut x = seed.max(1);
    let sectors = size / 4096;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % sectors) * 4096
        })
        .collect()
}

pub fn bench(a: BenchArgs) -> Result<()> {
    let size = parse_size(&a.size)?;
    let req = parse_size(&a.request)? as usize;
    let _ = std::fs::remove_file(&a.file);
    vhd::create(&a.file, &CreateOptions::dynamic(size)).context("creating the bench image")?;
    let img = VhdImage::open(&a.file, &OpenOptions::read_write())?;
    let buf: Vec<u8> = (0..req).map(|i| (i % 251) as u8 | 1).collect();
    let t = Instant::now();
    let mut off = 0;
    while off < size {
        img.write_at(&buf, off)?;
        off += req as u64;
    }
    img.flush()?;
    let w = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    drop(img);
    let img = VhdImage::open(&a.file, &OpenOptions::read_only())?;
    let mut rbuf = vec![0u8; req];
    let t = Instant::now();
    let mut off = 0;
    while off < size {
        img.read_at(&mut rbuf, off)?;
        off += req as u64;
    }
    let r = size as f64 / t.elapsed().as_secs_f64() / 1e6;
    drop(img);
    std::fs::remove_file(&a.file)?;
    vhd::create(&a.file, &CreateOptions::dynamic(size))?;
    let img = VhdImage::open(&a.file, &OpenOptions::read_write())?;
    let offs = offsets(a.seed, a.random_writes, size);
    let small = vec![0x5au8; 4096];
    let t = Instant::now();
    for o in &offs {
        img.write_at(&small, *o)?;
    }
    img.flush()?;
    let iops = offs.len() as f64 / t.elapsed().as_secs_f64();
    println!("seq_write_mbps {w:.1}");
    println!("seq_read_mbps {r:.1}");
    println!("rand_write_iops {iops:.0}");
    Ok(())
}
