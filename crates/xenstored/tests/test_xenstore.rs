//! Xen's own test-xenstore (from xen-utils-4.17) against oxenstored: every listed test, the
//! whole suite with 100 iterations, and the random mode.

mod common;

use common::{tool_path, Daemon};

fn run(d: &Daemon, args: &[&str]) -> String {
    let out = d.tool("test-xenstore", args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.contains("failed"),
        "test-xenstore {args:?}: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn test_names(d: &Daemon) -> Vec<String> {
    let list = run(d, &["-l"]);
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim_end().to_string()))
        .collect();
    assert!(names.len() >= 12, "test list: {list}");
    names
}

#[test]
fn every_listed_test_passes() {
    tool_path("test-xenstore");
    let d = Daemon::start(&["--no-persist"]);
    for name in test_names(&d) {
        let out = run(&d, &["-t", &name]);
        // Each test prints its timing line when it passed.
        assert!(out.contains(&format!("{name:<10}:")), "{name}: {out}");
        assert!(out.contains(" ns"), "{name}: {out}");
    }
}

#[test]
fn whole_suite_with_100_iterations() {
    let d = Daemon::start(&["--no-persist"]);
    let names = test_names(&d);
    let out = run(&d, &["-i", "100"]);
    for name in names {
        assert!(out.contains(&format!("{name:<10}: avg:")), "{name}: {out}");
    }
}

#[test]
fn random_mode() {
    let d = Daemon::start(&["--no-persist"]);
    run(&d, &["-r", "2"]);
    run(&d, &["-r", "1", "-i", "10"]);
    // The suite cleans up after itself.
    let left = d.ok("xenstore-ls", &["/local/domain/0"]);
    assert!(!left.contains("xenstore-test"), "{left}");
}

#[test]
fn concurrent_suites_in_random_mode() {
    let d = Daemon::start(&["--no-persist"]);
    let path = tool_path("test-xenstore");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&path)
                .args(["-r", "2"])
                .env("XENSTORED_PATH", &d.socket)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("test-xenstore")
        })
        .collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("failed"),
            "{stdout}"
        );
    }
}
