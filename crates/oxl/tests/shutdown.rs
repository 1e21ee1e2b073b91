//! `oxl shutdown` and `oxl reboot` against a real `oxenstored`, with fake domain records.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_exit, wait_until, RunDir, Xenstored};

fn control(xs: &Xenstored, domid: u32) -> Option<String> {
    xs.client()
        .read(0, &format!("/local/domain/{domid}/control/shutdown"))
        .ok()
        .map(|v| String::from_utf8(v).unwrap())
}

fn oxl_ok(run: &RunDir, xs: &Xenstored, args: &[&str]) {
    let out = run
        .oxl(args)
        .env("XENSTORED_PATH", &xs.socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oxl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shutdown_and_reboot_write_control_shutdown() {
    let xs = Xenstored::start();
    let run = RunDir::new();
    run.register("web", 1, std::process::id(), 1);
    run.register("db", 2, std::process::id(), 1);
    oxl_ok(&run, &xs, &["shutdown", "web"]);
    assert_eq!(control(&xs, 1).as_deref(), Some("poweroff"));
    assert_eq!(control(&xs, 2), None, "only the named domain is asked");
    oxl_ok(&run, &xs, &["reboot", "2"]);
    assert_eq!(control(&xs, 2).as_deref(), Some("reboot"));
    oxl_ok(&run, &xs, &["shutdown", "-a"]);
    assert_eq!(control(&xs, 1).as_deref(), Some("poweroff"));
    assert_eq!(control(&xs, 2).as_deref(), Some("poweroff"));
}

#[test]
fn shutdown_wait_returns_when_the_domain_is_gone() {
    let xs = Xenstored::start();
    let run = RunDir::new();
    // The "VMM" of the domain: a process the test ends once the request is seen.
    let mut vmm = Command::new("sleep").arg("60").spawn().unwrap();
    run.register("web", 1, vmm.id(), 1);
    let mut oxl = run
        .oxl(&["shutdown", "-w", "web"])
        .env("XENSTORED_PATH", &xs.socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the request", || {
        control(&xs, 1).as_deref() == Some("poweroff")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(oxl.try_wait().unwrap().is_none(), "-w returned early");
    vmm.kill().unwrap();
    vmm.wait().unwrap();
    assert!(wait_exit(&mut oxl).success());
}

#[test]
fn reboot_wait_returns_when_the_domain_restarts() {
    let xs = Xenstored::start();
    let run = RunDir::new();
    run.register("web", 1, std::process::id(), 1);
    let mut oxl = run
        .oxl(&["reboot", "-w", "web"])
        .env("XENSTORED_PATH", &xs.socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the request", || {
        control(&xs, 1).as_deref() == Some("reboot")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(oxl.try_wait().unwrap().is_none(), "-w returned early");
    // The restarted guest shows as a new start time.
    run.register("web", 1, std::process::id(), 2);
    assert!(wait_exit(&mut oxl).success());
}

#[test]
fn clear_errors() {
    let run = RunDir::new();
    run.register("web", 1, std::process::id(), 1);
    let missing = run.path().join("no-xenstored");
    let out = run
        .oxl(&["shutdown", "web"])
        .env("XENSTORED_PATH", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach xenstored") && err.contains(&*missing.to_string_lossy()),
        "{err}"
    );
    let out = run
        .oxl(&["reboot", "nosuch"])
        .env("XENSTORED_PATH", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("domain 'nosuch' does not exist"), "{err}");
}
