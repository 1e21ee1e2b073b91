//! `oxl console` against a PV console backend served on the domain's socket, with the console
//! page in host memory playing the guest.

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::{wait_exit, wait_until, RunDir};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use xen_console::ring::guest;
use xen_console::{MemoryPage, PvConsole};

struct Guest {
    page: Arc<MemoryPage>,
    kick: EventFd,
    console: PvConsole,
}

fn pv_console(run: &RunDir, name: &str) -> Guest {
    run.register(name, 1, std::process::id(), 1);
    let page = Arc::new(MemoryPage::default());
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let console = PvConsole::start(
        page.clone(),
        kick.try_clone().unwrap(),
        Box::new(|| {}),
        &run.console_socket(name, "pv"),
        None,
    )
    .unwrap();
    Guest {
        page,
        kick,
        console,
    }
}

impl Guest {
    fn write(&self, s: &[u8]) {
        assert_eq!(guest::write_output(&*self.page, s), s.len());
        self.kick.write(1).unwrap();
    }

    /// Reads the in ring until `want` has arrived.
    fn expect_input(&self, want: &[u8]) {
        let mut got = Vec::new();
        wait_until(
            &format!("{:?} in the in ring", String::from_utf8_lossy(want)),
            || {
                got.extend(guest::read_input(&*self.page));
                got == want
            },
        );
    }
}

/// Collects a reader's bytes in the background.
fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    out
}

fn contains(buf: &Mutex<Vec<u8>>, s: &str) -> bool {
    String::from_utf8_lossy(&buf.lock().unwrap()).contains(s)
}

#[test]
fn output_reaches_stdout_and_piped_input_reaches_the_guest() {
    let run = RunDir::new();
    let g = pv_console(&run, "web");
    // Written before anyone is connected: the scrollback shows it to the late client.
    g.write(b"Debian GNU/Linux 12 web hvc0\n\nweb login: ");
    let mut child = run
        .oxl(&["console", "-t", "pv", "web"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    wait_until("the login prompt on stdout", || {
        contains(&stdout, "web login: ")
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"root\n").unwrap();
    drop(stdin);
    g.expect_input(b"root\n");
    // Input ended, but output keeps flowing until the console closes.
    g.write(b"root@web:~# ");
    wait_until("the shell prompt on stdout", || {
        contains(&stdout, "root@web:~# ")
    });
    drop(g.console);
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    wait_until("the closing note", || contains(&stderr, "closed"));
}

#[test]
fn ctrl_close_bracket_detaches_and_the_domain_keeps_its_console() {
    let run = RunDir::new();
    let g = pv_console(&run, "db");
    let mut child = run
        .oxl(&["console", "-t", "pv", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ls\n\x1dreboot\n").unwrap();
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status}");
    assert!(contains(&stderr, "detached"));
    g.expect_input(b"ls\n");
    // What followed the escape never reached the guest; a new client still works.
    let mut c = std::os::unix::net::UnixStream::connect(g.console.socket()).unwrap();
    c.write_all(b"x").unwrap();
    g.expect_input(b"x");
}

#[test]
fn unknown_domain_or_console_is_a_clear_error() {
    let run = RunDir::new();
    let out = run.oxl(&["console", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("domain 'nosuch' does not exist"), "{err}");

    let _g = pv_console(&run, "web");
    // HVM domains default to the serial console, which this one does not serve.
    let out = run.oxl(&["console", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("domain 'web' has no serial console") && err.contains("-t pv"),
        "{err}"
    );
}
