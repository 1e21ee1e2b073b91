//! Read-only commands: query, info, read, scan, map.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use block::vhd::{self, ops, uuid_string, vhd_time_to_unix, OpenOptions, VhdImage};
use block::{DiskImage, FileStorage, Storage};
use clap::Args;
use serde_json::{json, Value};

use crate::util::load_key;

fn open(file: &Path, key: Option<&Path>, parents: bool) -> Result<VhdImage> {
    let opts = OpenOptions {
        open_parent: parents,
        ..OpenOptions::read_only().with_key(load_key(key)?)
    };
    VhdImage::open(file, &opts).with_context(|| format!("opening {}", file.display()))
}

fn physical(img: &VhdImage) -> u64 {
    img.storage().len().unwrap_or(0)
}

fn describe(img: &VhdImage) -> Value {
    let f = img.footer();
    let h = img.header();
    json!({
        "file": img.name(),
        "type": f.disk_type.name(),
        "virtual_size": img.size(),
        "physical_size": physical(img),
        "uuid": uuid_string(&f.uuid),
        "creator": f.creator(),
        "timestamp_unix": vhd_time_to_unix(f.timestamp),
        "hidden": f.hidden != 0,
        "encrypted": f.key_tag.is_some(),
        "block_size": img.block_size(),
        "bat_entries": h.as_ref().map(|h| h.max_table_entries),
        "allocated_blocks": h.as_ref().map(|_| img.allocated_blocks().len()),
        "parent_uuid": h.as_ref().filter(|_| img.disk_type() == vhd::DiskType::Differencing).map(|h| uuid_string(&h.parent_uuid)),
        "parent": img.parent().map(|p| p.name().to_string()),
    })
}

#[derive(Args)]
pub struct InfoArgs {
    file: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let img = open(&a.file, a.key.as_deref(), true)?;
    let chain: Vec<Value> = ops::chain(&img).into_iter().map(describe).collect();
    if a.json {
        let mut top = chain[0].clone();
        top["chain"] = Value::Array(chain[1..].to_vec());
        println!("{top:#}");
        return Ok(());
    }
    for (depth, v) in chain.iter().enumerate() {
        let pad = "  ".repeat(depth);
        println!("{pad}file:          {}", v["file"].as_str().unwrap_or(""));
        for k in [
            "type",
            "virtual_size",
            "physical_size",
            "block_size",
            "allocated_blocks",
            "uuid",
            "parent_uuid",
            "creator",
            "hidden",
            "encrypted",
        ] {
            if !v[k].is_null() {
                println!("{pad}{:<15}{}", format!("{k}:"), v[k]);
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct QueryArgs {
    /// Image (vhd-util's -n).
    #[arg(short = 'n', long = "name")]
    file: PathBuf,
    /// Virtual size in MiB.
    #[arg(short = 'v')]
    virt: bool,
    /// Physical size in bytes.
    #[arg(short = 's')]
    phys: bool,
    /// Parent path.
    #[arg(short = 'p')]
    parent: bool,
    /// Chain depth.
    #[arg(short = 'd')]
    depth: bool,
    /// Hidden flag.
    #[arg(short = 'f')]
    hidden: bool,
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn query(a: QueryArgs) -> Result<()> {
    let img = open(&a.file, a.key.as_deref(), a.parent || a.depth)?;
    let all = !(a.virt || a.phys || a.parent || a.depth || a.hidden);
    if a.virt || all {
        println!("{}", img.size() >> 20);
    }
    if a.phys || all {
        println!("{}", physical(&img));
    }
    if a.parent {
        match img.parent() {
            Some(p) => println!("{}", p.name()),
            None => println!("{} has no parent", a.file.display()),
        }
    }
    if a.depth {
        println!("chain depth: {}", ops::chain(&img).len());
    }
    if a.hidden {
        println!("hidden: {}", img.footer().hidden);
    }
    Ok(())
}

#[derive(Args)]
pub struct ReadArgs {
    file: PathBuf,
    /// Print the BAT.
    #[arg(long)]
    bat: bool,
    /// Print the sector bitmap of this block.
    #[arg(long)]
    bitmap: Option<u64>,
    /// Key of an encrypted image.
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn read(a: ReadArgs) -> Result<()> {
    let img = open(&a.file, a.key.as_deref(), false)?;
    let f = img.footer();
    println!("footer:");
    println!(
        "  cookie: conectix  features: {:#x}  version: {:#x}",
        f.features, f.version
    );
    println!(
        "  data offset: {:#x}  timestamp: {}  creator: {:?}",
        f.data_offset,
        f.timestamp,
        f.creator()
    );
    println!(
        "  original size: {}  current size: {}",
        f.original_size, f.current_size
    );
    println!(
        "  geometry: {}/{}/{}  type: {}  checksum: {:#010x}",
        f.geometry.0,
        f.geometry.1,
        f.geometry.2,
        f.disk_type.name(),
        f.checksum
    );
    println!(
        "  uuid: {}  saved state: {}  hidden: {}",
        uuid_string(&f.uuid),
        f.saved_state,
        f.hidden
    );
    if let Some(h) = img.header() {
        println!("header:");
        println!(
            "  table offset: {:#x}  entries: {}  block size: {}",
            h.table_offset, h.max_table_entries, h.block_size
        );
        println!(
            "  parent uuid: {}  parent timestamp: {}  parent name: {:?}",
            uuid_string(&h.parent_uuid),
            h.parent_timestamp,
            h.parent_name
        );
        for (i, l) in h.locators.iter().enumerate().filter(|(_, l)| l.is_used()) {
            println!(
                "  locator {i}: {} space {} length {} offset {:#x}",
                l.code_str(),
                l.data_space,
                l.data_len,
                l.data_offset
            );
        }
    }
    if a.bat {
        println!("BAT:");
        for (b, s) in img.allocated_blocks() {
            println!("  block {b}: sector {s} (byte {:#x})", u64::from(s) * 512);
        }
    }
    if let Some(b) = a.bitmap {
        match img.block_bitmap(b)? {
            Some(bm) => {
                let bytes = bm.to_bytes(0);
                let hex: Vec<String> = bytes.iter().map(|x| format!("{x:02x}")).collect();
                println!("bitmap of block {b} ({} sectors present):", bm.count());
                for line in hex.chunks(32) {
                    println!("  {}", line.join(""));
                }
            }
            None => println!("block {b} is not allocated"),
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ScanArgs {
    /// Files or directories to scan.
    paths: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn scan(a: ScanArgs) -> Result<()> {
    let mut files = Vec::new();
    for p in &a.paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("listing {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        let store: Arc<dyn Storage> = Arc::new(FileStorage::new(file));
        if !vhd::looks_like_vhd(store.as_ref()) {
            continue;
        }
        let name = f.display().to_string();
        drop(store);
        let no_parent = OpenOptions {
            open_parent: false,
            ..OpenOptions::read_only()
        };
        let v = match VhdImage::open(&f, &no_parent) {
            Ok(img) => {
                let mut d = describe(&img);
                // Report where the parent would be found, without opening the whole chain.
                d["parent"] = img
                    .parent_candidates()
                    .into_iter()
                    .find(|p| p.exists())
                    .map(|p| Value::String(p.display().to_string()))
                    .unwrap_or(Value::Null);
                d
            }
            Err(block::Error::KeyRequired(_)) => json!({"file": name, "encrypted": true}),
            Err(e) => json!({"file": name, "error": e.to_string()}),
        };
        out.push(v);
    }
    if a.json {
        println!("{:#}", Value::Array(out));
    } else {
        for v in out {
            if let Some(e) = v["error"].as_str() {
                println!("vhd={} error={e:?}", v["file"].as_str().unwrap_or(""));
                continue;
            }
            println!(
                "vhd={} type={} capacity={} size={} hidden={} parent={}",
                v["file"].as_str().unwrap_or(""),
                v["type"].as_str().unwrap_or("?"),
                v["virtual_size"],
                v["physical_size"],
                u8::from(v["hidden"].as_bool().unwrap_or(false)),
                v["parent"].as_str().unwrap_or("none"),
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct MapArgs {
    file: PathBuf,
    #[arg(long)]
    json: bool,
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn map(a: MapArgs) -> Result<()> {
    let img = open(&a.file, a.key.as_deref(), true)?;
    let chain = ops::chain(&img);
    let names: Vec<&str> = chain.iter().map(|i| i.name()).collect();
    let ext = ops::map(&img)?;
    if a.json {
        let v: Vec<Value> = ext
            .iter()
            .map(|e| {
                json!({
                    "offset": e.offset,
                    "length": e.len,
                    "depth": e.layer,
                    "file": e.layer.map(|l| names[l]),
                })
            })
            .collect();
        println!("{:#}", Value::Array(v));
        return Ok(());
    }
    println!("{:>16} {:>16} {:>5}  file", "offset", "length", "depth");
    for e in ext {
        let (d, f) = match e.layer {
            Some(l) => (l.to_string(), names[l]),
            None => ("-".to_string(), "(zeros)"),
        };
        println!("{:>16} {:>16} {:>5}  {f}", e.offset, e.len, d);
    }
    Ok(())
}
