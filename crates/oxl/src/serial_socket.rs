//! The serial console on `<run_dir>/console/NAME.serial.sock`, next to wherever else it goes
//! (terminal, pty, file), so `oxl console DOMAIN` can join it.
//!
//! The UART's output is written by vCPU threads, which must never wait for a console client:
//! a [`Tap`] copies it into a non-blocking pipe (what does not fit is dropped from the socket's
//! copy only), and a [`ConsoleServer`] thread reads the pipe and serves the clients.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use xen_console::{Backend, ConsoleServer};

/// Output bytes taken from the pipe per wakeup.
const CHUNK: usize = 64 << 10;
/// Pipe capacity asked for: room for bursts while the server thread is busy.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Where typed input goes: returns how many bytes the guest accepted.
pub type InputSink = Box<dyn Fn(&[u8]) -> usize + Send>;

/// A serial console served on a socket; stops when dropped.
#[derive(Debug)]
pub struct SerialSocket {
    _server: ConsoleServer,
    tap: Arc<File>,
}

impl SerialSocket {
    /// Serves the serial console at `socket`, giving typed input to `input`.
    pub fn start(socket: &Path, input: InputSink) -> Result<SerialSocket> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error()).context("creating the serial tap pipe");
        }
        // SAFETY: pipe2 succeeded; both descriptors are new and owned here.
        let (rx, tx) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // Best effort: a larger pipe only means fewer dropped bytes under load.
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        unsafe { libc::fcntl(tx.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let server = ConsoleServer::start(SerialBackend { rx, input }, socket, None)
            .with_context(|| format!("serving the serial console on {}", socket.display()))?;
        Ok(SerialSocket {
            _server: server,
            tap: Arc::new(tx),
        })
    }

    /// Wraps a serial writer so its output also reaches the socket's clients.
    pub fn tap(&self, inner: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
        Box::new(Tap {
            inner,
            tap: self.tap.clone(),
        })
    }
}

/// Writes to the console's own writer and, without ever blocking, to the socket's pipe.
struct Tap {
    inner: Box<dyn Write + Send>,
    tap: Arc<File>,
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(buf)?;
        // A full pipe means the socket's clients miss these bytes; the guest never waits.
        let _ = (&*self.tap).write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct SerialBackend {
    rx: File,
    input: InputSink,
}

impl Backend for SerialBackend {
    fn wake_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    fn woken(&mut self) {}

    fn read_output(&mut self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        out.resize(start + CHUNK, 0);
        let mut got = 0;
        while got < CHUNK {
            match self.rx.read(&mut out[start + got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out.truncate(start + got);
        got == CHUNK
    }

    fn write_input(&mut self, data: &[u8]) -> usize {
        (self.input)(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    fn read_until(c: &mut UnixStream, want: &[u8]) -> Vec<u8> {
        let end = Instant::now() + Duration::from_secs(10);
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(want.len()).any(|w| w == want) {
            assert!(
                Instant::now() < end,
                "got {:?}",
                String::from_utf8_lossy(&got)
            );
            if let Ok(n) = c.read(&mut buf) {
                assert!(n > 0, "console closed");
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    }

    #[test]
    fn output_is_teed_to_clients_and_input_waits_for_a_slow_uart() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("web.serial.sock");
        // A UART that takes one byte per call, like a full FIFO draining.
        let typed = Arc::new(Mutex::new(Vec::new()));
        let t = typed.clone();
        let serial = SerialSocket::start(
            &sock,
            Box::new(move |d: &[u8]| {
                t.lock().unwrap().extend_from_slice(&d[..1]);
                1
            }),
        )
        .unwrap();
        let log = tmp.path().join("log");
        let mut w = serial.tap(Box::new(File::create(&log).unwrap()));
        w.write_all(b"Booting\nlogin: ").unwrap();
        let mut c = UnixStream::connect(&sock).unwrap();
        // The scrollback brings what was written before the client came.
        read_until(&mut c, b"login: ");
        w.write_all(b"more").unwrap();
        read_until(&mut c, b"more");
        assert_eq!(std::fs::read(&log).unwrap(), b"Booting\nlogin: more");
        c.write_all(b"root\n").unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        while typed.lock().unwrap().as_slice() != b"root\n" {
            assert!(Instant::now() < end, "input: {:?}", typed.lock().unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(serial);
        assert!(!sock.exists());
        // The guest's writer outlives the server and still works.
        w.write_all(b"!").unwrap();
    }
}
