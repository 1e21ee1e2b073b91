//! oxend over its real socket, with a fake VMM standing in for `oxl create` (no KVM needed).

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;

use harness::{alive, code, eventually, kill, Host};
use serde_json::{json, Value};
use toolstack::{Action, CreateArgs, ErrorCode, State};

/// Sends raw lines and returns the raw answers.
fn raw(host: &Host, lines: &[&str]) -> Vec<Value> {
    let mut s = UnixStream::connect(host.socket()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    lines
        .iter()
        .map(|l| {
            s.write_all(format!("{l}\n").as_bytes()).unwrap();
            let mut answer = String::new();
            r.read_line(&mut answer).unwrap();
            serde_json::from_str(&answer).unwrap()
        })
        .collect()
}

#[test]
fn create_list_info_destroy_round_trip() {
    let mut host = Host::new();
    host.start(&[]);
    let cfg = host.cfg("web", "on_crash = 'preserve'", "");
    let mut c = host.client();
    let d = c
        .create(CreateArgs {
            config: cfg.clone(),
            overrides: vec!["memory=96".into()],
            paused: true,
        })
        .unwrap();
    assert_eq!(
        (d.name.as_str(), d.domid, d.state),
        ("web", 1, State::Paused)
    );
    assert_eq!(
        (d.memory_mib, d.vcpus, d.on_crash, d.on_reboot),
        (96, 2, Action::Preserve, Action::Restart)
    );
    assert_eq!(d.config.as_deref(), Some(cfg.as_path()));
    assert_eq!(d.overrides, vec!["memory=96".to_string()]);
    assert!(alive(d.pid));

    // Another domain; the table follows the VMM's own record (SIGUSR1 unpauses the fake).
    let db = host.create(&host.cfg("db", "", "")).unwrap();
    assert_eq!((db.domid, db.state), (2, State::Running));
    kill(d.pid, libc::SIGUSR1);
    host.wait_info("web", "web running", |i| i.state == State::Running);
    let list = c.list().unwrap();
    assert_eq!(
        list.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["web", "db"]
    );
    assert_eq!(c.info(2).unwrap().name, "db");
    assert_eq!(c.info("1").unwrap().name, "web");
    assert_eq!(
        (c.domid("db").unwrap(), c.domid("Domain-0").unwrap()),
        (2, 0)
    );
    assert_eq!(
        (c.domname(1).unwrap(), c.domname(0).unwrap()),
        ("web".to_string(), "Domain-0".to_string())
    );

    // The VMM's output is the domain's log.
    let log = std::fs::read_to_string(host.run().join("logs/web.log")).unwrap();
    assert!(
        log.contains("oxend: starting domain 'web'") && log.contains("fake: starting domain 'web'"),
        "{log}"
    );

    let gone = c.destroy("web").unwrap();
    assert_eq!((gone.name.as_str(), gone.state), ("web", State::Dying));
    assert!(!alive(d.pid));
    assert_eq!(code(c.info("web")), ErrorCode::NoSuchDomain);
    assert!(!host.run().join("domains/web.json").exists());
    assert!(!host.run().join("oxend/web.json").exists());
    assert!(std::fs::read_to_string(host.run().join("logs/web.log"))
        .unwrap()
        .contains("destroyed"));
    c.destroy(2).unwrap();
    assert!(c.list().unwrap().is_empty());
}

#[test]
fn errors_unknown_domains_bad_requests_and_versions() {
    let mut host = Host::new();
    host.start(&[]);
    let mut c = host.client();
    assert_eq!(code(c.info("nope")), ErrorCode::NoSuchDomain);
    assert_eq!(code(c.destroy(7)), ErrorCode::NoSuchDomain);
    assert_eq!(code(c.domid("nope")), ErrorCode::NoSuchDomain);
    assert_eq!(code(c.domname(9)), ErrorCode::NoSuchDomain);
    assert_eq!(
        code(c.call("reboot-all", Value::Null)),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(c.call("info", json!({"domain": "x", "force": true}))),
        ErrorCode::BadRequest
    );
    let create = |config: &str, overrides: Vec<&str>| {
        host.client()
            .call("create", json!({"config": config, "overrides": overrides}))
    };
    assert_eq!(code(create("relative.cfg", vec![])), ErrorCode::BadRequest);
    assert_eq!(code(create("/no/such.cfg", vec![])), ErrorCode::BadRequest);
    let cfg = host.cfg("bad", "colour = 'red'", "");
    assert_eq!(
        code(create(cfg.to_str().unwrap(), vec![])),
        ErrorCode::BadRequest
    );
    let cfg = host.cfg("ok", "", "");
    assert_eq!(
        code(create(cfg.to_str().unwrap(), vec!["memory"])),
        ErrorCode::BadRequest
    );

    // A VMM that fails before registering: the error quotes its log, and the name is free.
    let failing = host.cfg("boom", "", "fake.fail");
    match host.create(&failing) {
        Err(toolstack::ClientError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert!(
                e.msg.contains("code 1") && e.msg.contains("fake: cannot start domain 'boom'"),
                "{}",
                e.msg
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(c.list().unwrap().is_empty());

    let answers = raw(
        &host,
        &[
            r#"{"v":2,"id":11,"op":"list"}"#,
            "this is not json",
            r#"{"v":1,"id":12,"op":"list","args":"all"}"#,
            r#"{"v":1,"id":13,"op":"version","future":1}"#,
        ],
    );
    assert_eq!(
        (
            answers[0]["id"].as_u64(),
            answers[0]["err"]["code"].as_str()
        ),
        (Some(11), Some("version"))
    );
    assert_eq!(answers[1]["err"]["code"], "bad-request");
    assert_eq!(
        (
            answers[2]["id"].as_u64(),
            answers[2]["err"]["code"].as_str()
        ),
        (Some(12), Some("bad-request"))
    );
    assert_eq!(answers[3]["ok"]["protocol"], 1);
    assert_eq!(answers[3]["v"], 1);
}

#[test]
fn killed_vmms_get_their_on_crash_and_exits_their_actions() {
    let mut host = Host::new();
    host.start(&[]);
    let mut c = host.client();
    let mut pids = Vec::new();
    for (name, lines, fake) in [
        ("again", "on_crash = 'restart'", ""),
        ("kept", "on_crash = 'preserve'", ""),
        ("gone", "on_crash = 'destroy'", ""),
        (
            "rebooted",
            "on_reboot = 'preserve'",
            "fake.exit=3 fake.after_ms=300",
        ),
        (
            "crashed",
            "on_crash = 'coredump-restart'",
            "fake.exit=4 fake.after_ms=300",
        ),
        (
            "off",
            "on_crash = 'preserve'",
            "fake.exit=0 fake.after_ms=300",
        ),
    ] {
        pids.push(host.create(&host.cfg(name, lines, fake)).unwrap().pid);
    }
    for pid in &pids[..3] {
        kill(*pid, libc::SIGKILL);
    }
    let again = host.wait_info("again", "restarted", |i| {
        i.pid != pids[0] && i.restarts == 1
    });
    assert_eq!(
        (again.state, again.on_crash),
        (State::Running, Action::Restart)
    );
    assert!(alive(again.pid));
    let kept = host.wait_info("kept", "preserved", |i| i.state == State::Crashed);
    assert_eq!(kept.pid, pids[1]);
    assert!(
        !host.run().join("domains/kept.json").exists(),
        "the stale record is removed"
    );
    host.wait_gone("gone");
    assert!(!host.run().join("domains/gone.json").exists());
    // Exit code 3 (rebooted) takes on_reboot, 4 (crashed) on_crash, 0 is the end.
    host.wait_info("rebooted", "rebooted and kept", |i| {
        i.state == State::Shutdown
    });
    host.wait_info("crashed", "crashed and restarted", |i| i.restarts >= 1);
    host.wait_gone("off");

    // A preserved domain is removed by destroy.
    assert_eq!(c.destroy("kept").unwrap().state, State::Dying);
    assert_eq!(code(c.info("kept")), ErrorCode::NoSuchDomain);
    assert!(!host.run().join("oxend/kept.json").exists());
}

#[test]
fn destroy_kills_a_vmm_that_ignores_sigterm() {
    let mut host = Host::new();
    host.start(&[]);
    let d = host
        .create(&host.cfg("stubborn", "on_crash = 'restart'", "fake.ignore_term"))
        .unwrap();
    let t = std::time::Instant::now();
    host.client().destroy("stubborn").unwrap();
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(900),
        "waited for the grace period"
    );
    assert!(!alive(d.pid));
    // Killed while dying: forgotten, not restarted.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(host.client().list().unwrap().is_empty());
}

#[test]
fn a_restarted_oxend_finds_its_domains_again() {
    let mut host = Host::new();
    host.start(&[]);
    let web = host
        .create(&host.cfg("web", "on_crash = 'restart'", ""))
        .unwrap();
    let db = host
        .create(&host.cfg("db", "on_crash = 'preserve'", ""))
        .unwrap();
    host.kill_oxend();
    // The domains do not depend on oxend.
    assert!(alive(web.pid) && alive(db.pid));
    // One dies while oxend is away; one is started by hand (as `oxl create` does today).
    kill(db.pid, libc::SIGKILL);
    eventually("db dead", || !alive(db.pid));
    let mut outsider = std::process::Command::new(harness::fake_vmm())
        .arg("create")
        .arg(host.cfg("outsider", "", ""))
        .env("OXEN_RUN_DIR", host.run())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("outsider registered", || {
        host.run().join("domains/outsider.json").exists()
    });

    host.start(&[]);
    let mut c = host.client();
    let found = c.info("web").unwrap();
    assert_eq!(
        (found.pid, found.domid, found.on_crash),
        (web.pid, web.domid, Action::Restart)
    );
    assert_eq!(found.config, web.config);
    let db_now = c.info("db").unwrap();
    assert_eq!((db_now.state, db_now.pid), (State::Crashed, db.pid));
    let out = c.info("outsider").unwrap();
    assert_eq!((out.pid, out.config), (outsider.id(), None));

    // Adopted VMMs are supervised too: killing one applies its on_crash.
    kill(web.pid, libc::SIGKILL);
    let again = host.wait_info("web", "restarted", |i| i.pid != web.pid);
    assert_eq!(again.restarts, 1);
    c.destroy("outsider").unwrap();
    let _ = outsider.wait();
    assert_eq!(
        c.list()
            .unwrap()
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .len(),
        2
    );
}

#[test]
fn concurrent_creates_of_one_name_let_one_win() {
    let mut host = Host::new();
    host.start(&[]);
    let cfg = host.cfg("race", "", "");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| host.create(&cfg))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.into_iter().filter(|r| r.is_err()) {
        assert_eq!(code(r), ErrorCode::Exists);
    }
    assert_eq!(host.client().list().unwrap().len(), 1);
}

#[test]
fn one_oxend_per_host_and_a_private_socket() {
    let mut host = Host::new();
    host.start(&["--group", "root"]);
    let out = host.run_to_end(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another oxend is already running"), "{err}");
    // The first one still serves.
    host.client().version().unwrap();
    let meta = std::fs::metadata(host.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 0);

    let out = host.run_to_end(&["--group", "no-such-group-oxen"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("group 'no-such-group-oxen' does not exist")
    );
}
