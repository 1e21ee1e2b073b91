//! `oxend`: the Oxen host daemon (see the library's documentation).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use oxend::{Config, Error, Server};

#[derive(Parser, Debug)]
#[command(
    name = "oxend",
    version,
    about = "The Oxen host daemon: owns the domain table and runs every domain's VMM"
)]
struct Cli {
    /// Runtime directory: socket, lock, registry, logs.
    #[arg(long, env = "OXEN_RUN_DIR", default_value = "/run/oxen")]
    run_dir: PathBuf,
    /// The oxl that runs a domain's VMM (default: oxl beside this binary).
    #[arg(long, value_name = "PATH")]
    oxl: Option<PathBuf>,
    /// Group whose members may manage domains (the socket's group).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
    /// Seconds `destroy` waits after SIGTERM before SIGKILL.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    grace: u64,
    /// Seconds `create` waits for the VMM to register the domain.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    start_timeout: u64,
    /// More logging (repeat for more); OXEN_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
}

fn config(cli: Cli) -> Result<Config, Error> {
    let oxl = match cli.oxl {
        Some(p) => p,
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("oxl")))
            .unwrap_or_else(|| PathBuf::from("oxl")),
    };
    let group = match &cli.group {
        Some(name) => Some(
            oxend::sys::group_id(name)
                .map_err(|source| Error::Group {
                    name: name.clone(),
                    source,
                })?
                .ok_or_else(|| Error::NoGroup(name.clone()))?,
        ),
        None => None,
    };
    Ok(Config {
        run_dir: cli.run_dir,
        oxl,
        group,
        grace: Duration::from_secs(cli.grace),
        start_timeout: Duration::from_secs(cli.start_timeout),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("OXEN_LOG").unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match config(cli).and_then(Server::bind).and_then(Server::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxend: {e}");
            ExitCode::FAILURE
        }
    }
}
