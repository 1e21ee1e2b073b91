//! Xen's own command-line clients (Debian's xenstore-utils) against oxenstored.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{tool_path, Daemon};

#[test]
fn write_read_ls_rm() {
    let d = Daemon::start(&["--no-persist"]);
    d.ok(
        "xenstore-write",
        &["/vm/name", "guest1", "/vm/uuid", "1234"],
    );
    assert_eq!(d.ok("xenstore-read", &["/vm/name"]), "guest1\n");
    assert_eq!(
        d.ok("xenstore-read", &["/vm/name", "/vm/uuid"]),
        "guest1\n1234\n"
    );
    assert_eq!(
        d.ok("xenstore-ls", &["/vm"]),
        "name = \"guest1\"\nuuid = \"1234\"\n"
    );
    let root = d.ok("xenstore-ls", &["/"]);
    assert!(root.starts_with("local = \"\"\n domain = \"\"\n"), "{root}");
    assert!(
        root.contains("vm = \"\"\n name = \"guest1\"\n uuid = \"1234\"\n"),
        "{root}"
    );
    assert_eq!(d.ok("xenstore-list", &["/vm"]), "name\nuuid\n");
    assert_eq!(d.ok("xenstore-exists", &["/vm/uuid"]), "");
    d.ok("xenstore-rm", &["/vm/uuid"]);
    assert!(!d.tool("xenstore-exists", &["/vm/uuid"]).status.success());
    let missing = d.tool("xenstore-read", &["/vm/uuid"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("couldn't read path"));
    // Relative paths from the socket are dom0's: /local/domain/0/...
    d.ok("xenstore-write", &["rel/key", "v"]);
    assert_eq!(d.ok("xenstore-read", &["/local/domain/0/rel/key"]), "v\n");
    d.ok("xenstore-rm", &["/vm"]);
    assert_eq!(d.ok("xenstore-list", &["/"]), "local\ntool\n");
}

#[test]
fn chmod_and_permissions_listing() {
    let d = Daemon::start(&["--no-persist"]);
    d.ok("xenstore-write", &["/dev/a", "1", "/dev/a/b", "2"]);
    d.ok("xenstore-chmod", &["/dev/a", "n1", "r2", "w3", "b4"]);
    let ls = d.ok("xenstore-ls", &["-p", "/dev"]);
    assert!(ls.contains("(n1,r2,w3,b4)"), "{ls}");
    assert!(ls.contains("(n0)"), "{ls}");
    d.ok("xenstore-chmod", &["-r", "/dev", "r5"]);
    let ls = d.ok("xenstore-ls", &["-p", "/dev"]);
    assert_eq!(ls.matches("(r5)").count(), 2, "{ls}");
    assert!(!d.tool("xenstore-chmod", &["/dev/a", "x9"]).status.success());
}

#[test]
fn watch_reports_changes() {
    let d = Daemon::start(&["--no-persist"]);
    d.ok("xenstore-write", &["/w", ""]);
    let mut child = Command::new(tool_path("xenstore-watch"))
        .args(["-n", "3", "/w"])
        .env("XENSTORED_PATH", &d.socket)
        .stdout(Stdio::piped())
        .spawn()
        .expect("xenstore-watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The first event comes when the watch is set up.
    assert_eq!(lines.next().unwrap().unwrap(), "/w");
    d.ok("xenstore-write", &["/w/x", "1"]);
    assert_eq!(lines.next().unwrap().unwrap(), "/w/x");
    d.ok("xenstore-write", &["/other", "1"]);
    d.ok("xenstore-rm", &["/w"]);
    assert_eq!(lines.next().unwrap().unwrap(), "/w");
    let status = child.wait().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn control_commands() {
    let d = Daemon::start(&["--no-persist"]);
    assert_eq!(d.ok("xenstore-control", &["check"]), "OK\n");
    let help = d.ok("xenstore-control", &["help"]);
    assert!(help.contains("quota"), "{help}");
    let quota = d.ok("xenstore-control", &["quota"]);
    assert!(quota.contains("nodes: 1000"), "{quota}");
    d.ok("xenstore-control", &["quota", "set", "nodes", "50"]);
    assert!(d.ok("xenstore-control", &["quota"]).contains("nodes: 50"));
    assert!(!d
        .tool("xenstore-control", &["no-such-command"])
        .status
        .success());
}
