//! `convert`: raw <-> VHD (and VHD -> VHD, flattening a chain). Sparse-aware: holes in raw input
//! and unallocated VHD blocks are never read, and zero chunks are never written, so they stay
//! unallocated in the output.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use block::raw::RawImage;
use block::vhd::{self, ops, CreateOptions, DiskType, OpenOptions, VhdImage};
use block::{DiskImage, FileStorage, Storage};
use clap::{Args, ValueEnum};

use crate::util::{load_key, parse_size, progress};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// Raw disk image.
    Raw,
    /// Dynamic VHD.
    Vhd,
    /// Fixed VHD.
    VhdFixed,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Input image (raw or VHD, detected from its footer).
    src: PathBuf,
    /// Output image (must not exist).
    dst: PathBuf,
    /// Output format (default: vhd if the name ends in .vhd, else raw).
    #[arg(short = 'O', long = "format", value_enum)]
    format: Option<Format>,
    /// Block size of a dynamic output.
    #[arg(long, default_value = "2M")]
    block_size: String,
    /// Key of an encrypted input chain.
    #[arg(long)]
    src_key: Option<PathBuf>,
    /// Encrypt the VHD output with this key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Wait until the output is on disk (fsync) before exiting. Without it the output is left
    /// in the page cache, as qemu-img convert does by default.
    #[arg(long)]
    sync: bool,
}

/// Data ranges of a raw file, from SEEK_DATA/SEEK_HOLE, widened to sectors.
fn raw_extents(s: &FileStorage, size: u64) -> Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0;
    while pos < size {
        let Some(d) = s.next_data(pos).context("finding data in the input")? else {
            break;
        };
        if d >= size {
            break;
        }
        let h = s
            .next_hole(d)
            .context("finding holes in the input")?
            .min(size);
        let start = d / 512 * 512;
        let end = h.div_ceil(512) * 512;
        match out.last_mut() {
            Some(l) if l.0 + l.1 >= start => l.1 = end.max(l.0 + l.1) - l.0,
            _ => out.push((start, end - start)),
        }
        pos = h.max(d + 1);
    }
    Ok(out)
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let format = a.format.unwrap_or_else(|| {
        if a.dst
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("vhd"))
        {
            Format::Vhd
        } else {
            Format::Raw
        }
    });
    let file =
        std::fs::File::open(&a.src).with_context(|| format!("opening {}", a.src.display()))?;
    let is_vhd = vhd::looks_like_vhd(&FileStorage::new(file));
    let (src, extents): (Box<dyn DiskImage>, Vec<(u64, u64)>) = if is_vhd {
        let img = VhdImage::open(
            &a.src,
            &OpenOptions::read_only().with_key(load_key(a.src_key.as_deref())?),
        )
        .with_context(|| format!("opening {}", a.src.display()))?;
        let ext = ops::data_extents(&img)?;
        (Box::new(img), ext)
    } else {
        let raw = RawImage::open(&a.src, false)?;
        let size = raw.size();
        if size % 512 != 0 {
            bail!(
                "{} is {size} bytes, not a whole number of 512-byte sectors",
                a.src.display()
            );
        }
        let ext = raw_extents(raw.storage(), size)?;
        (Box::new(raw), ext)
    };
    let size = src.size();
    let dst = create_output(&a.dst, format, size, &a)?;
    let total: u64 = extents.iter().map(|e| e.1).sum();
    let pb = progress(total, "convert");
    let r = ops::copy_extents(src.as_ref(), dst.as_ref(), &extents, a.sync, &|d, _| {
        pb.set_position(d)
    });
    pb.finish_and_clear();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&a.dst);
        return Err(e)
            .with_context(|| format!("converting {} to {}", a.src.display(), a.dst.display()));
    }
    Ok(())
}

fn create_output(
    dst: &Path,
    format: Format,
    size: u64,
    a: &ConvertArgs,
) -> Result<Box<dyn DiskImage>> {
    Ok(match format {
        Format::Raw => Box::new(RawImage::create(dst, size)?),
        Format::Vhd | Format::VhdFixed => {
            let key = load_key(a.key.as_deref())?;
            let opts = CreateOptions {
                size,
                disk_type: if format == Format::Vhd {
                    DiskType::Dynamic
                } else {
                    DiskType::Fixed
                },
                block_size: u32::try_from(parse_size(&a.block_size)?).context("block size")?,
                max_size: None,
                key: key.clone(),
                sync: a.sync,
            };
            vhd::create(dst, &opts).with_context(|| format!("creating {}", dst.display()))?;
            Box::new(VhdImage::open(
                dst,
                &OpenOptions::read_write().with_key(key),
            )?)
        }
    })
}
