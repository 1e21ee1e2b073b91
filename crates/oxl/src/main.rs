//! `oxl`: the xl-compatible command line for Oxen domains.

mod attach;
mod blockcmd;
mod console;
mod create;
mod ctl;
mod devices;
mod netcmd;
mod registry;
mod serial_socket;
mod shutdown;
mod vbd;
mod vif;
mod xendomain;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of `oxl create`, telling how the domain ended.
pub mod exit {
    /// The guest powered off, or the domain was destroyed on request.
    pub const POWEROFF: u8 = 0;
    /// Oxen could not create or run the domain (bad configuration, missing kernel, no KVM).
    pub const ERROR: u8 = 1;
    /// The guest rebooted and on_reboot did not restart it.
    pub const REBOOT: u8 = 3;
    /// The guest crashed and on_crash did not restart it.
    pub const CRASH: u8 = 4;
}

#[derive(Parser, Debug)]
#[command(
    name = "oxl",
    version,
    about = "Manage Oxen domains, the way xl manages Xen domains"
)]
struct Cli {
    /// More logging (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a domain from an xl.cfg file and run it.
    ///
    /// The domain runs in this process (like `xl create -F`). Exit status: 0 the guest powered
    /// off or the domain was destroyed, 1 error, 3 rebooted (on_reboot not restart),
    /// 4 crashed (on_crash not restart).
    Create(create::Args),
    /// List domains.
    List {
        /// Print JSON.
        #[arg(short = 'l', long)]
        long: bool,
    },
    /// Unpause a domain created with `create -p`.
    Unpause {
        /// Domain name or id.
        domain: String,
    },
    /// Destroy a domain at once.
    Destroy {
        /// Domain name or id.
        domain: String,
    },
    /// Attach to a domain's console; Ctrl-] detaches.
    Console(attach::Args),
    /// Ask a domain's guest to shut down (through `control/shutdown` in Xenstore).
    Shutdown(shutdown::Args),
    /// Ask a domain's guest to reboot (through `control/shutdown` in Xenstore).
    Reboot(shutdown::Args),
    /// Attach a disk to a running domain (`disk` syntax of xl.cfg).
    BlockAttach(blockcmd::AttachArgs),
    /// Detach a disk from a running domain.
    BlockDetach(blockcmd::DetachArgs),
    /// List a domain's disks.
    BlockList(blockcmd::ListArgs),
    /// Live snapshot of a running domain's VHD disk: the disk's file becomes the snapshot and
    /// the domain continues on a new child at the same path.
    BlockSnapshot(blockcmd::SnapshotArgs),
    /// Grow a running domain's disk; the guest sees the new size at once.
    BlockResize(blockcmd::ResizeArgs),
    /// Attach a network interface to a running domain (`vif` syntax of xl.cfg).
    NetworkAttach(netcmd::AttachArgs),
    /// Detach a network interface (by devid or MAC) from a running domain.
    NetworkDetach(netcmd::DetachArgs),
    /// List a domain's network interfaces.
    NetworkList(blockcmd::ListArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("OXEN_LOG").unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        Command::Create(args) => create::run(args),
        Command::List { long } => list(long).map(|_| exit::POWEROFF),
        Command::Unpause { domain } => {
            signal_domain(&domain, libc::SIGUSR1, false).map(|_| exit::POWEROFF)
        }
        Command::Destroy { domain } => {
            signal_domain(&domain, libc::SIGTERM, true).map(|_| exit::POWEROFF)
        }
        Command::Console(args) => attach::run(args).map(|_| exit::POWEROFF),
        Command::Shutdown(args) => {
            shutdown::run(args, shutdown::Request::Poweroff).map(|_| exit::POWEROFF)
        }
        Command::Reboot(args) => {
            shutdown::run(args, shutdown::Request::Reboot).map(|_| exit::POWEROFF)
        }
        Command::BlockAttach(a) => blockcmd::attach(a).map(|_| exit::POWEROFF),
        Command::BlockDetach(a) => blockcmd::detach(a).map(|_| exit::POWEROFF),
        Command::BlockList(a) => blockcmd::list(a).map(|_| exit::POWEROFF),
        Command::BlockSnapshot(a) => blockcmd::snapshot(a).map(|_| exit::POWEROFF),
        Command::BlockResize(a) => blockcmd::resize(a).map(|_| exit::POWEROFF),
        Command::NetworkAttach(a) => netcmd::attach(a).map(|_| exit::POWEROFF),
        Command::NetworkDetach(a) => netcmd::detach(a).map(|_| exit::POWEROFF),
        Command::NetworkList(a) => netcmd::list(a).map(|_| exit::POWEROFF),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("oxl: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn list(json: bool) -> anyhow::Result<()> {
    let domains = registry::list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&domains)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0);
    println!(
        "{:<32} {:>5} {:>7} {:>5} {:>6} {:>9}",
        "Name", "ID", "Mem", "VCPUs", "State", "Time(s)"
    );
    for d in domains {
        let state = match d.state.as_str() {
            "p" => "--p---",
            "s" => "---s--",
            _ => "r-----",
        };
        let secs = now.saturating_sub(d.started);
        println!(
            "{:<32} {:>5} {:>7} {:>5} {:>6} {:>9}",
            d.name, d.domid, d.memory_mib, d.vcpus, state, secs
        );
    }
    Ok(())
}

fn signal_domain(name: &str, sig: i32, wait: bool) -> anyhow::Result<()> {
    let d = registry::find(name)?;
    // SAFETY: plain kill(2) on the pid the domain registered.
    if unsafe { libc::kill(d.pid as libc::pid_t, sig) } != 0 {
        anyhow::bail!(
            "signalling domain '{}' (pid {}): {}",
            d.name,
            d.pid,
            std::io::Error::last_os_error()
        );
    }
    if wait {
        for _ in 0..1000 {
            // SAFETY: signal 0 only probes for existence.
            if unsafe { libc::kill(d.pid as libc::pid_t, 0) } != 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        anyhow::bail!("domain '{}' did not go away within 10 s", d.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use console::Kind;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("oxl").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn console_type_defaults_to_serial_and_takes_pv() {
        let Ok(Command::Console(a)) = parse(&["console", "web"]) else {
            panic!("console web");
        };
        assert_eq!((a.kind, a.domain.as_str()), (Kind::Serial, "web"));
        let Ok(Command::Console(a)) = parse(&["console", "-t", "pv", "3"]) else {
            panic!("console -t pv 3");
        };
        assert_eq!((a.kind, a.domain.as_str()), (Kind::Pv, "3"));
        assert!(parse(&["console", "-t", "vga", "web"]).is_err());
        assert!(parse(&["console"]).is_err());
    }

    #[test]
    fn shutdown_and_reboot_arguments() {
        for cmd in ["shutdown", "reboot"] {
            let a = match parse(&[cmd, "-w", "web"]) {
                Ok(Command::Shutdown(a) | Command::Reboot(a)) => a,
                other => panic!("{cmd} -w web: {other:?}"),
            };
            assert!(a.wait && !a.all);
            assert_eq!(a.domain.as_deref(), Some("web"));
            let a = match parse(&[cmd, "--all", "--wait"]) {
                Ok(Command::Shutdown(a) | Command::Reboot(a)) => a,
                other => panic!("{cmd} -a: {other:?}"),
            };
            assert!(a.all && a.wait && a.domain.is_none());
            assert!(parse(&[cmd]).is_err(), "a domain or -a is required");
            assert!(parse(&[cmd, "-a", "web"]).is_err(), "-a takes no domain");
        }
        assert!(matches!(parse(&["reboot", "1"]), Ok(Command::Reboot(_))));
    }
}
