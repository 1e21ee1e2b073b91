//! Restart without loss: stop oxenstored (SIGTERM, as an upgrade does), start it again on the
//! same state file, and find every node, permission and domain record; clients reconnect.

mod common;

use std::time::Duration;

use common::Daemon;
use xenstore::client::{Client, ClientError};
use xenstore::XsError;

#[test]
fn upgrade_keeps_nodes_perms_and_domains() {
    let mut d = Daemon::start(&[]);
    let mut c = Client::connect(&d.socket).unwrap();
    c.write(0, "/local/domain/7/name", b"guest7").unwrap();
    c.write(0, "/local/domain/7/data/bin", &[0, 1, 2, 255])
        .unwrap();
    c.set_perms(0, "/local/domain/7", &["n7", "r0"]).unwrap();
    c.introduce(7, 0xfeffc, 3).unwrap();
    d.ok("xenstore-chmod", &["/local/domain/7/name", "r7", "w9"]);
    let tx = c.transaction_start().unwrap();
    c.write(tx, "/tool/committed", b"yes").unwrap();
    c.transaction_end(tx, true).unwrap();

    d.stop();
    // While the daemon is down the client's calls fail...
    assert!(matches!(
        c.read(0, "/tool/committed"),
        Err(ClientError::Io { .. })
    ));
    d.restart(&[]);
    // ...and after reconnecting it finds everything.
    c.reconnect(Duration::from_secs(5)).unwrap();
    assert_eq!(c.read(0, "/local/domain/7/name").unwrap(), b"guest7");
    assert_eq!(
        c.read(0, "/local/domain/7/data/bin").unwrap(),
        [0, 1, 2, 255]
    );
    assert_eq!(c.get_perms(0, "/local/domain/7").unwrap(), ["n7", "r0"]);
    assert_eq!(
        c.get_perms(0, "/local/domain/7/name").unwrap(),
        ["r7", "w9"]
    );
    assert_eq!(c.read(0, "/tool/committed").unwrap(), b"yes");
    assert!(c.is_domain_introduced(7).unwrap());
    assert!(!c.is_domain_introduced(8).unwrap());
    // Introducing again with the same ring is accepted, with another ring refused.
    c.introduce(7, 0xfeffc, 3).unwrap();
    assert!(matches!(
        c.introduce(7, 1, 3),
        Err(ClientError::Xs(XsError::Exist))
    ));
    // Xen's tools see the restored tree too.
    assert_eq!(d.ok("xenstore-read", &["/local/domain/7/name"]), "guest7\n");
}

#[test]
fn changes_are_saved_without_a_clean_stop() {
    let mut d = Daemon::start(&["--save-interval-ms", "50"]);
    let mut c = Client::connect(&d.socket).unwrap();
    c.write(0, "/tool/periodic", b"saved").unwrap();
    // Wait (bounded) for the periodic save to reach the disk.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&d.state)
        .unwrap_or_default()
        .contains("/tool/periodic")
    {
        assert!(
            std::time::Instant::now() < end,
            "no periodic save within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A crash: SIGKILL, no chance to save at exit.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    d.restart(&[]);
    c.reconnect(Duration::from_secs(5)).unwrap();
    assert_eq!(c.read(0, "/tool/periodic").unwrap(), b"saved");
}

#[test]
fn corrupt_state_file_is_refused() {
    let mut d = Daemon::start(&[]);
    d.stop();
    std::fs::write(&d.state, b"{\"format\": 1, \"nodes\": [").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxenstored"))
        .arg("--socket")
        .arg(&d.socket)
        .arg("--state-file")
        .arg(&d.state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    // Keep Drop from killing a pid that is gone: restart a healthy daemon.
    std::fs::remove_file(&d.state).unwrap();
    d.restart(&[]);
}
