//! Xenstore throughput and latency over the Unix socket: reads, writes, directory listings and
//! read-modify-write transactions with 1 and 16 concurrent clients.
//!
//! `cargo run --release -p xenstored --example bench -- [--seconds S] [--socket PATH]`
//!
//! Without `--socket` the daemon runs in this process (its own thread, persistence on, as
//! oxenstored runs); with it, an already running Xenstore is measured instead.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use xenstore::client::{Client, ClientError};
use xenstore::daemon::{Daemon, DaemonConfig};
use xenstore::quota::Quotas;
use xenstore::XsError;

#[derive(Debug, Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Measure this Xenstore socket instead of an in-process daemon.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Client counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Operations to measure (read, write, directory, transaction).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read,write,directory,transaction"
    )]
    ops: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write,
    Directory,
    TxRmw,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Directory => "directory (10 entries)",
            Op::TxRmw => "transaction read-modify-write",
        }
    }

    fn run(self, c: &mut Client, me: usize, i: u64) -> Result<(), ClientError> {
        match self {
            Op::Read => c.read(0, "/bench/key").map(drop),
            Op::Write => c.write(0, &format!("/bench/w{me}"), format!("{i}").as_bytes()),
            Op::Directory => c.directory(0, "/bench/dir").map(drop),
            Op::TxRmw => loop {
                let tx = c.transaction_start()?;
                let path = format!("/bench/counter{me}");
                let v: u64 = match c.read(tx, &path) {
                    Ok(b) => String::from_utf8_lossy(&b).parse().unwrap_or(0),
                    Err(ClientError::Xs(XsError::NoEnt)) => 0,
                    Err(e) => return Err(e),
                };
                c.write(tx, &path, (v + 1).to_string().as_bytes())?;
                match c.transaction_end(tx, true) {
                    Err(ClientError::Xs(XsError::Again)) => continue,
                    r => break r,
                }
            },
        }
    }
}

struct Measurement {
    ops: u64,
    elapsed: Duration,
    lat: Vec<u32>,
}

fn measure(socket: &Path, op: Op, clients: usize, secs: f64) -> anyhow::Result<Measurement> {
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (tx, rx) = mpsc::channel();
    let run_for = Duration::from_secs_f64(secs);
    for me in 0..clients {
        let (socket, barrier, tx) = (socket.to_path_buf(), barrier.clone(), tx.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&socket).expect("connect");
            let mut lat = Vec::with_capacity(1 << 20);
            barrier.wait();
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < run_for {
                let t = Instant::now();
                op.run(&mut c, me, i).expect("request");
                lat.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                i += 1;
            }
            tx.send((lat, start.elapsed())).expect("report");
        });
    }
    drop(tx);
    barrier.wait();
    let mut all = Vec::new();
    let mut elapsed = Duration::ZERO;
    for (lat, e) in rx {
        all.extend(lat);
        elapsed = elapsed.max(e);
    }
    all.sort_unstable();
    Ok(Measurement {
        ops: all.len() as u64,
        elapsed,
        lat: all,
    })
}

fn pct(lat: &[u32], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let socket = match &args.socket {
        Some(s) => s.clone(),
        None => {
            let socket = dir.path().join("socket");
            let cfg = DaemonConfig {
                socket: socket.clone(),
                state_file: Some(dir.path().join("state.json")),
                save_interval: Duration::from_secs(1),
                quotas: Quotas::default(),
                max_clients: 1024,
            };
            let (ready_tx, ready_rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut d = Daemon::new(cfg, None).expect("daemon");
                ready_tx.send(()).expect("ready");
                d.run(None).expect("daemon loop");
            });
            ready_rx.recv().context("daemon start")?;
            socket
        }
    };
    let mut setup = Client::connect(&socket).context("connecting")?;
    setup.write(0, "/bench/key", b"small-value")?;
    for i in 0..10 {
        setup.write(0, &format!("/bench/dir/entry{i}"), b"x")?;
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "xenstore benchmark: {} s per row, {cpus} CPUs, socket {}",
        args.seconds,
        socket.display()
    );
    println!(
        "{:<32} {:>7} {:>12} {:>10} {:>10}",
        "operation", "clients", "ops/s", "p50 us", "p99 us"
    );
    for op in [Op::Read, Op::Write, Op::Directory, Op::TxRmw] {
        if !args.ops.iter().any(|o| op.name().starts_with(o.as_str())) {
            continue;
        }
        for &n in &args.clients {
            let r = measure(&socket, op, n, args.seconds)?;
            let rate = r.ops as f64 / r.elapsed.as_secs_f64();
            println!(
                "{:<32} {:>7} {:>12.0} {:>10.1} {:>10.1}",
                op.name(),
                n,
                rate,
                pct(&r.lat, 0.50),
                pct(&r.lat, 0.99)
            );
        }
    }
    setup.rm(0, "/bench")?;
    Ok(())
}
