//! `oxenstored`: the Oxen Xenstore daemon. Serves Xen's Xenstore protocol on the Unix socket
//! libxenstore uses, keeps its state in a file so it can be stopped and started again (an
//! upgrade) without losing anything, and saves that state on SIGTERM/SIGINT.

mod ring_link;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use xenstore::daemon::{Daemon, DaemonConfig};
use xenstore::quota::Quotas;
use xenstore::transport::unix;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "oxenstored", version, about = "Oxen's Xenstore daemon")]
struct Args {
    /// Socket to serve [default: $XENSTORED_PATH, else /var/run/xenstored/socket].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Where domains' VMMs serve their ring links (`<DIR>/xen/dom<domid>.sock`)
    /// [default: $OXEN_RUN_DIR, else /run/oxen].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// State file kept across restarts.
    #[arg(long, default_value = "/var/lib/xenstored/oxenstored.state")]
    state_file: PathBuf,
    /// Start empty and keep no state file.
    #[arg(long)]
    no_persist: bool,
    /// Longest time a change stays unsaved, in milliseconds (a clean stop always saves).
    #[arg(long, default_value_t = 1000)]
    save_interval_ms: u64,
    /// Nodes a guest domain may own.
    #[arg(long, default_value_t = Quotas::default().nodes_per_domain)]
    quota_nodes: usize,
    /// Watches a guest domain may hold.
    #[arg(long, default_value_t = Quotas::default().watches_per_domain)]
    quota_watches: usize,
    /// Transactions a guest domain may have open.
    #[arg(long, default_value_t = Quotas::default().transactions_per_domain)]
    quota_transactions: usize,
    /// Largest accounted node size for guest domains, in bytes.
    #[arg(long, default_value_t = Quotas::default().node_size)]
    quota_node_size: usize,
    /// Socket clients served at once (more are refused).
    #[arg(long, default_value_t = 1024)]
    max_clients: usize,
    /// Unsent bytes after which a client that does not read is disconnected.
    #[arg(long, default_value_t = Quotas::default().output_bytes)]
    max_backlog: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let quotas = Quotas {
        nodes_per_domain: args.quota_nodes,
        watches_per_domain: args.quota_watches,
        transactions_per_domain: args.quota_transactions,
        node_size: args.quota_node_size,
        output_bytes: args.max_backlog,
        ..Quotas::default()
    };
    let state_file = (!args.no_persist).then_some(args.state_file);
    if let Some(dir) = state_file.as_ref().and_then(|f| f.parent()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
    }
    let cfg = DaemonConfig {
        socket: unix::socket_path(args.socket),
        state_file,
        save_interval: Duration::from_millis(args.save_interval_ms),
        quotas,
        max_clients: args.max_clients,
    };
    // SIGTERM/SIGINT write a byte into this pair; the event loop then saves and exits.
    let (stop_rx, stop_tx) =
        std::os::unix::net::UnixStream::pair().context("creating the stop channel")?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, stop_tx.try_clone()?)
            .with_context(|| format!("installing handler for signal {sig}"))?;
    }
    let run_dir = args.run_dir.unwrap_or_else(backend_link::run_dir);
    let attacher = ring_link::LinkAttacher::new(run_dir.clone());
    let mut daemon =
        Daemon::new(cfg.clone(), Some(Box::new(attacher))).context("starting oxenstored")?;
    tracing::info!(
        socket = %cfg.socket.display(),
        run_dir = %run_dir.display(),
        "oxenstored serving"
    );
    daemon.run(Some(stop_rx)).context("serving")?;
    Ok(())
}
