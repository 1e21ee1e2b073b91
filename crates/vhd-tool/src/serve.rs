//! `serve`: export an image over NBD so host tools (qemu-img, qemu-io, nbd-client) can read it.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use block::raw::RawImage;
use block::vhd::{self, OpenOptions, VhdImage};
use block::{DiskImage, FileStorage};
use clap::Args;
use nbd::{Export, Listener, Server, ShutdownHandle};

use crate::live::LiveVhd;
use crate::util::load_key;

/// NBD's registered TCP port.
const NBD_PORT: u16 = 10809;

#[derive(Args)]
#[command(after_help = "\
Read-only by default. A VHD is served with its whole parent chain; raw files as they are.

Consistency: serving a snapshot (the read-only parent left by `oxen-vhd snapshot`) gives a \
stable, consistent image. A VHD that a running domain is writing can be served read-only too: \
blocks the domain allocates after the export opened become visible once the domain flushes \
them (its BAT and bitmaps reach the file at flushes), while data rewritten in place is read as \
it is on disk at that moment, so a read racing a write may see old or new data. Never serve a \
VHD --read-write while anything else has it open.

The first line on stdout names the NBD URL, e.g. nbd+unix:///?socket=/run/d.sock or \
nbd://127.0.0.1:10809/ (clients may use the export name or the empty default name). \
SIGINT or SIGTERM stops the server: clients are disconnected, a writable image is flushed \
and the socket file removed.")]
pub struct ServeArgs {
    /// Image to export (VHD, detected from its footer, or raw).
    image: PathBuf,
    /// Listen on this Unix socket instead of TCP.
    #[arg(long, conflicts_with = "port")]
    socket: Option<PathBuf>,
    /// TCP port (default 10809; 0 picks a free port, shown in the URL).
    #[arg(long)]
    port: Option<u16>,
    /// Address the TCP port is bound to.
    #[arg(long, default_value = "127.0.0.1", conflicts_with = "socket")]
    bind: IpAddr,
    /// Let clients write (the image is opened read-write).
    #[arg(long)]
    read_write: bool,
    /// Key file of an encrypted VHD chain.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Export name.
    #[arg(long, default_value = "")]
    name: String,
}

/// Opens the image the way the export needs it.
fn open(a: &ServeArgs) -> Result<Arc<dyn DiskImage>> {
    let p = &a.image;
    let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let is_vhd = vhd::looks_like_vhd(&FileStorage::new(f));
    let key = load_key(a.key.as_deref())?;
    let ctx = || format!("opening {}", p.display());
    Ok(match (is_vhd, a.read_write) {
        (true, true) => {
            Arc::new(VhdImage::open(p, &OpenOptions::read_write().with_key(key)).with_context(ctx)?)
        }
        (true, false) => Arc::new(LiveVhd::open(p, key).with_context(ctx)?),
        (false, _) if key.is_some() => {
            bail!(
                "{} is not a VHD: --key applies to encrypted VHDs",
                p.display()
            )
        }
        (false, rw) => Arc::new(RawImage::open(p, rw).with_context(ctx)?),
    })
}

fn listener(a: &ServeArgs) -> Result<Listener> {
    Ok(match &a.socket {
        Some(s) => Listener::bind_unix(s)?,
        None => Listener::bind_tcp(SocketAddr::new(a.bind, a.port.unwrap_or(NBD_PORT)))?,
    })
}

/// Blocks SIGINT and SIGTERM in every thread and turns them into a server stop.
/// Must run before any other thread is started (threads inherit the signal mask).
fn stop_on_signals(h: ShutdownHandle) -> Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the calls only
    // read and write that local set and this thread's signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let r = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if r != 0 {
            bail!(
                "blocking SIGINT/SIGTERM: {}",
                std::io::Error::from_raw_os_error(r)
            );
        }
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` is an initialised signal set and `sig` a valid out pointer.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                h.shutdown();
                return;
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let image = open(&a)?;
    let writable = a.read_write;
    let size = image.size();
    let mut export = Export::new(a.name.clone(), image).with_description(describe(&a.image));
    if !writable {
        export = export.read_only();
    }
    let server = Server::new(export, listener(&a)?)?;
    stop_on_signals(server.shutdown_handle())?;
    let mode = if writable { "read-write" } else { "read-only" };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "serving {} ({size} bytes, {mode}) at {}",
        a.image.display(),
        server.listener().url(&a.name)
    )?;
    out.flush()?;
    drop(out);
    server
        .run()
        .with_context(|| format!("serving {}", a.image.display()))
}

fn describe(p: &Path) -> String {
    format!("oxen-vhd export of {}", p.display())
}
