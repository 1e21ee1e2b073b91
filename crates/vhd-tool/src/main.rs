//! `oxen-vhd`: the VHD image tool. Verbs follow blktap's vhd-util (create, snapshot, query,
//! coalesce, resize, check, repair, read, scan) plus info, convert, clone, map, keygen and serve
//! (NBD export).

mod bench;
mod convert;
mod inspect;
mod live;
mod manage;
mod serve;
mod torture;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "oxen-vhd",
    version,
    about = "Create, inspect, check and convert VHD images"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a fixed or dynamic VHD.
    Create(manage::CreateArgs),
    /// Create a differencing child of PARENT (the parent becomes a read-only snapshot).
    Snapshot(manage::SnapshotArgs),
    /// Create a new child of an existing snapshot.
    Clone(manage::CloneArgs),
    /// Print selected fields (vhd-util query).
    Query(inspect::QueryArgs),
    /// Describe an image and its chain.
    Info(inspect::InfoArgs),
    /// Dump metadata structures: footer, header, BAT, bitmaps (vhd-util read).
    Read(inspect::ReadArgs),
    /// List VHDs and their parents (vhd-util scan).
    Scan(inspect::ScanArgs),
    /// Show which layer of the chain holds each range of the disk.
    Map(inspect::MapArgs),
    /// Merge a differencing disk into its parent.
    Coalesce(manage::CoalesceArgs),
    /// Change the virtual size.
    Resize(manage::ResizeArgs),
    /// Check metadata and chain; exits 1 if problems are found.
    Check(manage::CheckArgs),
    /// Fix what can be fixed safely.
    Repair(manage::RepairArgs),
    /// Set a footer field (vhd-util set); only `hidden` is settable.
    Set(manage::SetArgs),
    /// Convert between raw and VHD (sparse-aware).
    Convert(convert::ConvertArgs),
    /// Export an image over NBD (read-only unless --read-write) until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Write a new random AES-XTS key file.
    Keygen {
        /// Key file to create.
        file: PathBuf,
    },
    /// Measure the engine's throughput on a dynamic VHD (used by bench/bench.sh).
    Bench(bench::BenchArgs),
    /// Test helper: write and flush forever, reporting flushes (crash-safety test).
    #[command(hide = true)]
    Torture(torture::TortureArgs),
}

fn main() -> ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread exists; output piped into
    // `head` then ends the process quietly instead of making println! panic.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Create(a) => manage::create(a),
        Cmd::Snapshot(a) => manage::snapshot(a),
        Cmd::Clone(a) => manage::clone(a),
        Cmd::Query(a) => inspect::query(a),
        Cmd::Info(a) => inspect::info(a),
        Cmd::Read(a) => inspect::read(a),
        Cmd::Scan(a) => inspect::scan(a),
        Cmd::Map(a) => inspect::map(a),
        Cmd::Coalesce(a) => manage::coalesce(a),
        Cmd::Resize(a) => manage::resize(a),
        Cmd::Check(a) => return manage::check(a),
        Cmd::Repair(a) => manage::repair(a),
        Cmd::Set(a) => manage::set(a),
        Cmd::Convert(a) => convert::convert(a),
        Cmd::Serve(a) => serve::serve(a),
        Cmd::Keygen { file } => manage::keygen(&file),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Torture(a) => torture::torture(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxen-vhd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
