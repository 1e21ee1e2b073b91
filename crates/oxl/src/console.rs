//! Where the guest's consoles go. The serial console: the terminal (`oxl create -c`), a pty, a
//! file or nowhere, and the thread that carries typed input back into the guest. The PV console:
//! a [`PvConsole`] backend serving `<run_dir>/console/NAME.pv.sock`, which `oxl console` joins.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use vmm::SerialInput;
use vmm_sys_util::eventfd::EventFd;
use xen_console::{ConsolePage, PvConsole};
use xlcfg::SerialTarget;

use crate::registry;
use crate::serial_socket::SerialSocket;

/// xl's console escape: Ctrl-].
pub const ESCAPE: u8 = 0x1d;

/// Which of a domain's consoles (`oxl console -t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The Xen PV console (`hvc0` in the guest).
    Pv,
    /// The emulated serial port (`ttyS0` in the guest).
    Serial,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pv => "pv",
            Kind::Serial => "serial",
        }
    }
}

/// Where console sockets live: `<run_dir>/console`, run_dir being `$OXEN_RUN_DIR` or /run/oxen.
pub fn socket_dir() -> PathBuf {
    let domains = registry::dir();
    domains
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(domains)
        .join("console")
}

/// The socket of domain `name`'s console of `kind`: `<run_dir>/console/NAME.KIND.sock`.
pub fn socket_path(name: &str, kind: Kind) -> PathBuf {
    socket_dir().join(socket_name(name, kind))
}

fn socket_name(name: &str, kind: Kind) -> String {
    format!("{name}.{}.sock", kind.name())
}

/// Starts the PV console backend of domain `name` on [`socket_path`]`(name, Kind::Pv)`.
///
/// `page` is the guest's console page, `kick` becomes readable when the guest notifies the
/// console's event channel, and `notify` raises that channel in the guest. The backend stops
/// and removes its socket when the returned value is dropped.
pub fn start_pv(
    name: &str,
    page: Arc<dyn ConsolePage>,
    kick: EventFd,
    notify: Box<dyn Fn() + Send + Sync>,
) -> Result<PvConsole> {
    start_pv_in(&socket_dir(), name, page, kick, notify)
}

/// Relays this terminal to domain `name`'s PV console on a thread (`oxl create -c` for a
/// domain without a serial port), until Ctrl-] or the console closes.
pub fn attach_pv_stdio(name: &str) -> Result<()> {
    let path = socket_path(name, Kind::Pv);
    std::thread::Builder::new()
        .name("pv-console".into())
        .spawn(move || {
            if let Err(e) = crate::attach::relay(&path, std::io::stdin(), std::io::stdout()) {
                tracing::warn!("PV console: {e:#}");
            }
        })
        .context("starting the PV console relay")?;
    Ok(())
}

/// Creates the console socket directory, private to its owner: a console is a keyboard on the
/// guest.
fn make_socket_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn start_pv_in(
    dir: &Path,
    name: &str,
    page: Arc<dyn ConsolePage>,
    kick: EventFd,
    notify: Box<dyn Fn() + Send + Sync>,
) -> Result<PvConsole> {
    make_socket_dir(dir)?;
    let path = dir.join(socket_name(name, Kind::Pv));
    PvConsole::start(page, kick, notify, &path, None)
        .with_context(|| format!("starting the PV console of '{name}' on {}", path.display()))
}

/// Where guest output goes.
enum Sink {
    Stdout,
    File(File),
    None,
}

/// The chosen console. It outlives any one VM, so that a restarted domain keeps its pty.
pub struct Console {
    sink: Sink,
    input: Option<File>,
    stdin: bool,
    /// Where typed input goes: the current VM's serial port (replaced on restart).
    target: Arc<Mutex<Option<SerialInput>>>,
    /// A message for the user (e.g. which pty to open).
    pub note: Option<String>,
    /// The serial console's socket, once [`Console::serve`] started it.
    socket: Option<SerialSocket>,
}

/// Opens the console for `target`; `attach` puts it on this terminal instead.
pub fn open(target: &SerialTarget, attach: bool) -> Result<Console> {
    let console = |sink, input, stdin, note| Console {
        sink,
        input,
        stdin,
        target: Arc::default(),
        note,
        socket: None,
    };
    if attach {
        return Ok(console(Sink::Stdout, None, true, None));
    }
    match target {
        SerialTarget::None => Ok(console(Sink::None, None, false, None)),
        SerialTarget::File(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening serial log {}", p.display()))?;
            Ok(console(Sink::File(f), None, false, None))
        }
        SerialTarget::Pty => {
            let (master, path) = open_pty()?;
            let input = master.try_clone().context("duplicating the pty")?;
            Ok(console(
                Sink::File(master),
                Some(input),
                false,
                Some(format!("serial console on {path}")),
            ))
        }
    }
}

fn open_pty() -> Result<(File, String)> {
    let (mut master, mut slave) = (0, 0);
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: all pointers are valid for the call; `name` is large enough for a pty path.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            name.as_mut_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("openpty");
    }
    // SAFETY: openpty returned two fresh descriptors we now own. The slave is closed: the user
    // opens it by path.
    let master = unsafe { File::from_raw_fd(master) };
    // SAFETY: as above.
    drop(unsafe { File::from_raw_fd(slave) });
    // SAFETY: openpty wrote a NUL-terminated path into `name`.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((master, path))
}

/// Restores the terminal's settings when dropped.
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    /// Puts stdin in raw mode if it is a terminal.
    pub fn enter() -> RawMode {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return RawMode { saved: None };
        }
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios for tcgetattr to fill.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return RawMode { saved: None };
        }
        let saved = t;
        // SAFETY: cfmakeraw edits the struct in place.
        unsafe { libc::cfmakeraw(&mut t) };
        // Keep output post-processing so guest "\n" still moves to a new line on our side.
        t.c_oflag |= libc::OPOST;
        // SAFETY: `t` is a valid termios.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring settings read from the same descriptor.
            unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &t) };
        }
    }
}

impl Console {
    /// A writer for a new VM's serial port; `None` when the domain has no serial port.
    pub fn writer(&self) -> Result<Option<Box<dyn Write + Send>>> {
        let w: Box<dyn Write + Send> = match &self.sink {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::File(f) => Box::new(f.try_clone().context("duplicating the console")?),
            Sink::None => return Ok(None),
        };
        Ok(Some(match &self.socket {
            Some(s) => s.tap(w),
            None => w,
        }))
    }

    /// Also serves the serial console of domain `name` on
    /// [`socket_path`]`(name, Kind::Serial)` for `oxl console`, until the console is dropped.
    /// Call before [`Console::writer`]. A domain without a serial port gets no socket.
    pub fn serve(&mut self, name: &str) -> Result<()> {
        self.serve_in(&socket_dir(), name)
    }

    fn serve_in(&mut self, dir: &Path, name: &str) -> Result<()> {
        if matches!(self.sink, Sink::None) || self.socket.is_some() {
            return Ok(());
        }
        make_socket_dir(dir)?;
        let target = self.target.clone();
        let input = Box::new(move |data: &[u8]| {
            match target.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                Some(serial) => serial.send(data),
                // No VM yet (or between restarts): keep the input queued.
                None => 0,
            }
        });
        self.socket = Some(SerialSocket::start(
            &dir.join(socket_name(name, Kind::Serial)),
            input,
        )?);
        Ok(())
    }

    /// Points typed input at `serial` (the newest VM's port), starting the input thread the
    /// first time.
    pub fn connect(&mut self, serial: Option<SerialInput>) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = serial;
        // Only a terminal gets the Ctrl-] escape; a pty passes every byte through.
        let (source, escape): (Box<dyn Read + Send>, bool) = match (self.input.take(), self.stdin) {
            (Some(f), _) => (Box::new(f), false),
            (None, true) => {
                self.stdin = false;
                (Box::new(std::io::stdin()), true)
            }
            _ => return,
        };
        let target = self.target.clone();
        let _ = std::thread::Builder::new()
            .name("console-in".into())
            .spawn(move || pump(source, target, escape));
    }
}

fn pump(mut source: Box<dyn Read + Send>, target: Arc<Mutex<Option<SerialInput>>>, escape: bool) {
    let mut buf = [0u8; 256];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        let Some(serial) = target.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            continue;
        };
        if escape {
            if let Some(pos) = data.iter().position(|b| *b == ESCAPE) {
                data = &data[..pos];
                send_all(&serial, data);
                eprintln!("\r\noxl: console detached (the domain keeps running)\r");
                return;
            }
        }
        send_all(&serial, data);
    }
}

fn send_all(serial: &SerialInput, mut data: &[u8]) {
    // The UART's FIFO is small: wait for the guest to drain it rather than drop keystrokes.
    while !data.is_empty() {
        let n = serial.send(data);
        data = &data[n..];
        if n == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Writes guest RAM to `dir/NAME-TIME.core` (a raw image of guest-physical memory, region by
/// region, as `xl dump-core` leaves for offline analysis).
pub fn dump_core(
    ram: &vmm::memory::GuestRam,
    dir: &Path,
    name: &str,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{name}-{secs}.core"));
    let mut out = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut src = ram.file.try_clone().context("duplicating the RAM file")?;
    src.seek(SeekFrom::Start(0))
        .context("rewinding the RAM file")?;
    std::io::copy(&mut src, &mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use xen_console::{ring, MemoryPage};

    #[test]
    fn start_pv_serves_the_ring_on_the_domain_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("console");
        let page = Arc::new(MemoryPage::default());
        let kick = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        let pv = start_pv_in(
            &dir,
            "web",
            page.clone(),
            kick.try_clone().unwrap(),
            Box::new(|| {}),
        )
        .unwrap();
        assert_eq!(pv.socket(), dir.join("web.pv.sock"));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "console sockets are private");
        ring::guest::write_output(&*page, b"login: ");
        kick.write(1).unwrap();
        let mut c = std::os::unix::net::UnixStream::connect(pv.socket()).unwrap();
        let mut buf = [0u8; 7];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");
        drop(pv);
        assert!(!dir.join("web.pv.sock").exists());
    }

    #[test]
    fn serve_puts_the_serial_console_on_its_socket_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("console");
        let log = tmp.path().join("serial.log");
        let mut con = open(&SerialTarget::File(log.clone()), false).unwrap();
        con.serve_in(&dir, "web").unwrap();
        let mut w = con.writer().unwrap().unwrap();
        w.write_all(b"login: ").unwrap();
        let mut c = std::os::unix::net::UnixStream::connect(dir.join("web.serial.sock")).unwrap();
        let mut buf = [0u8; 7];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"login: ");
        assert_eq!(
            std::fs::read(&log).unwrap(),
            b"login: ",
            "the file still gets it"
        );
        drop(con);
        assert!(!dir.join("web.serial.sock").exists());

        // No serial port, no socket.
        let mut none = open(&SerialTarget::None, false).unwrap();
        none.serve_in(&dir, "quiet").unwrap();
        assert!(none.writer().unwrap().is_none());
        assert!(!dir.join("quiet.serial.sock").exists());
    }
}
