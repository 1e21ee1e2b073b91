//! Commands that create or change images.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use block::crypt::Key;
use block::vhd::{self, check, ops, CreateOptions, DiskType, OpenOptions, VhdImage};
use block::DiskImage;
use clap::Args;

use crate::util::{load_key, parse_size, progress};

#[derive(Args)]
pub struct CreateArgs {
    /// Image to create.
    file: PathBuf,
    /// Virtual size (e.g. 10G).
    #[arg(short, long)]
    size: String,
    /// Fully allocated (fixed) disk instead of dynamic.
    #[arg(long)]
    fixed: bool,
    /// Block size of a dynamic disk.
    #[arg(long, default_value = "2M")]
    block_size: String,
    /// Reserve the BAT for this size so the disk can grow without moving it (vhd-util -S).
    #[arg(long)]
    max_size: Option<String>,
    /// Encrypt with the AES-XTS key in this file.
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn create(a: CreateArgs) -> Result<()> {
    let bs = parse_size(&a.block_size)?;
    let opts = CreateOptions {
        size: parse_size(&a.size)?,
        disk_type: if a.fixed {
            DiskType::Fixed
        } else {
            DiskType::Dynamic
        },
        block_size: u32::try_from(bs).context("block size too large")?,
        max_size: a.max_size.as_deref().map(parse_size).transpose()?,
        key: load_key(a.key.as_deref())?,
        sync: true,
    };
    vhd::create(&a.file, &opts).with_context(|| format!("creating {}", a.file.display()))
}

#[derive(Args)]
pub struct SnapshotArgs {
    /// New child image.
    #[arg(short = 'n', long = "name")]
    child: PathBuf,
    /// Parent image.
    #[arg(short, long)]
    parent: PathBuf,
    /// Key file of an encrypted chain (or to encrypt the new child).
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn snapshot(a: SnapshotArgs) -> Result<()> {
    let key = load_key(a.key.as_deref())?;
    vhd::create_child(&a.child, &a.parent, key.as_ref())
        .with_context(|| format!("creating {} on {}", a.child.display(), a.parent.display()))
}

#[derive(Args)]
pub struct CloneArgs {
    /// The snapshot to clone.
    snapshot: PathBuf,
    /// New child image.
    new: PathBuf,
    /// Key file of an encrypted chain.
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn clone(a: CloneArgs) -> Result<()> {
    let key = load_key(a.key.as_deref())?;
    vhd::create_child(&a.new, &a.snapshot, key.as_ref())
        .with_context(|| format!("cloning {} to {}", a.snapshot.display(), a.new.display()))
}

#[derive(Args)]
pub struct CoalesceArgs {
    /// Differencing disk to merge into its parent.
    file: PathBuf,
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn coalesce(a: CoalesceArgs) -> Result<()> {
    let key = load_key(a.key.as_deref())?;
    let pb = progress(0, "coalesce");
    let parent = ops::coalesce(&a.file, key.as_ref(), &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("coalescing {}", a.file.display()))?;
    pb.finish_and_clear();
    println!("{}", parent.display());
    Ok(())
}

#[derive(Args)]
pub struct ResizeArgs {
    file: PathBuf,
    /// New virtual size.
    #[arg(short, long)]
    size: String,
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn resize(a: ResizeArgs) -> Result<()> {
    let key = load_key(a.key.as_deref())?;
    let img = VhdImage::open(&a.file, &OpenOptions::read_write().with_key(key))
        .with_context(|| format!("opening {}", a.file.display()))?;
    img.resize(parse_size(&a.size)?)
        .with_context(|| format!("resizing {}", a.file.display()))
}

#[derive(Args)]
pub struct CheckArgs {
    file: PathBuf,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn check(a: CheckArgs) -> ExitCode {
    let run = || -> Result<check::Report> {
        let key = load_key(a.key.as_deref())?;
        let pb = progress(0, "check");
        let r = check::check(&a.file, key.as_ref(), &|done, total| {
            pb.set_length(total * 4);
            pb.set_position(done * 4);
        })?;
        pb.finish_and_clear();
        Ok(r)
    };
    match run() {
        Ok(r) => {
            if a.json {
                let v = serde_json::json!({
                    "file": a.file,
                    "ok": r.is_ok(),
                    "problems": r.problems.iter().map(|p| serde_json::json!({"problem": p.what, "repairable": p.repairable})).collect::<Vec<_>>(),
                    "warnings": r.warnings,
                });
                println!("{v:#}");
            } else {
                for w in &r.warnings {
                    println!("warning: {w}");
                }
                for p in &r.problems {
                    let fix = if p.repairable { " (repairable)" } else { "" };
                    println!("problem: {}{fix}", p.what);
                }
                if r.is_ok() {
                    println!("{} is valid", a.file.display());
                }
            }
            if r.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("oxen-vhd: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Args)]
pub struct RepairArgs {
    file: PathBuf,
}

pub fn repair(a: RepairArgs) -> Result<()> {
    let acts = check::repair(&a.file).with_context(|| format!("repairing {}", a.file.display()))?;
    if acts.is_empty() {
        println!("nothing to repair");
    }
    for x in acts {
        println!("{x}");
    }
    Ok(())
}

#[derive(Args)]
pub struct SetArgs {
    /// Image.
    #[arg(short = 'n', long = "name")]
    file: PathBuf,
    /// Field to set.
    #[arg(short = 'f', long = "field", value_parser = ["hidden"])]
    field: String,
    /// New value (0 or 1).
    #[arg(short = 'v', long = "value")]
    value: u8,
}

pub fn set(a: SetArgs) -> Result<()> {
    if a.value > 1 {
        bail!("{} must be 0 or 1", a.field);
    }
    let opts = OpenOptions {
        open_parent: false,
        ..OpenOptions::read_write()
    };
    let img =
        VhdImage::open(&a.file, &opts).with_context(|| format!("opening {}", a.file.display()))?;
    img.set_hidden(a.value == 1)
        .with_context(|| format!("setting {} on {}", a.field, a.file.display()))
}

pub fn keygen(file: &Path) -> Result<()> {
    let k = Key::generate()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    writeln!(f, "{}", k.to_hex()).with_context(|| format!("writing {}", file.display()))?;
    if file.metadata()?.len() == 0 {
        bail!("key file {} is empty", file.display());
    }
    Ok(())
}
