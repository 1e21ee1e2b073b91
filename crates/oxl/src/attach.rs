//! `oxl console`: joins a running domain's console through its socket.
//!
//! Output goes to stdout, stdin goes to the guest. On a terminal, stdin is put in raw mode and
//! Ctrl-] detaches (as in xl). When stdin is not a terminal and ends, output keeps flowing until
//! the console closes (the domain ended) or Ctrl-] arrives in the input.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::console::{self, Kind, ESCAPE};
use crate::registry;

/// How long a registered domain's console socket may take to appear.
const SOCKET_GRACE: Duration = Duration::from_secs(1);

/// `oxl console` arguments, as xl names them.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Console type: `serial` (the emulated UART, the default for HVM domains as in xl) or `pv`
    /// (the Xen PV console, hvc0).
    #[arg(short = 't', value_enum, default_value = "serial")]
    pub kind: Kind,
    /// Domain name or id.
    pub domain: String,
}

/// How a console session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The user typed Ctrl-].
    Detached,
    /// The console went away (the domain ended).
    Closed,
}

/// Runs `oxl console`.
pub fn run(args: Args) -> Result<()> {
    let d = registry::find(&args.domain)?;
    let path = console::socket_path(&d.name, args.kind);
    // A domain registers itself before it opens its consoles: allow a just-created one a moment.
    let end = Instant::now() + SOCKET_GRACE;
    while !path.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !path.exists() {
        let hint = match args.kind {
            Kind::Serial => "; `-t pv` selects the PV console",
            Kind::Pv => "",
        };
        bail!(
            "domain '{}' has no {} console (no socket at {}){hint}",
            d.name,
            match args.kind {
                Kind::Pv => "PV",
                Kind::Serial => "serial",
            },
            path.display()
        );
    }
    let _raw = console::RawMode::enter();
    match relay(&path, std::io::stdin(), std::io::stdout())? {
        End::Detached => eprintln!("\r\noxl: console detached (the domain keeps running)\r"),
        End::Closed => eprintln!("\r\noxl: console of domain '{}' closed\r", d.name),
    }
    Ok(())
}

/// Connects to the console socket at `path` and relays `input` to it and its output to
/// `output` until Ctrl-] is read from `input` or the console closes.
pub fn relay(
    path: &Path,
    mut input: impl Read + Send + 'static,
    mut output: impl Write + Send + 'static,
) -> Result<End> {
    let sock = UnixStream::connect(path)
        .with_context(|| format!("connecting to the console at {}", path.display()))?;
    let mut to_guest = sock.try_clone().context("duplicating the console socket")?;
    let mut from_guest = sock.try_clone().context("duplicating the console socket")?;
    let (tx, rx) = mpsc::channel();

    let tx_in = tx.clone();
    std::thread::Builder::new()
        .name("console-stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // No more input: the console keeps showing output.
                        let _ = to_guest.shutdown(Shutdown::Write);
                        return;
                    }
                    Ok(n) => n,
                };
                let data = &buf[..n];
                if let Some(pos) = data.iter().position(|b| *b == ESCAPE) {
                    let _ = to_guest.write_all(&data[..pos]);
                    let _ = tx_in.send(End::Detached);
                    return;
                }
                if to_guest.write_all(data).is_err() {
                    return;
                }
            }
        })
        .context("spawning the console input thread")?;

    std::thread::Builder::new()
        .name("console-stdout".into())
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match from_guest.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if output
                            .write_all(&buf[..n])
                            .and_then(|_| output.flush())
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(End::Closed);
        })
        .context("spawning the console output thread")?;

    // Both senders dropping without a message cannot happen: the output thread always sends.
    let end = rx.recv().unwrap_or(End::Closed);
    // Ends the output thread too when the session is detached.
    let _ = sock.shutdown(Shutdown::Both);
    Ok(end)
}
