//! Boot, shutdown and failure paths of `oxl create`, with a real Debian kernel inside the test
//! host. Each test boots its own L1 host, so they can run in parallel.

use e2e::{base_args, run_scenario, Outcome};

fn run(settings: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut args = base_args(dir.path());
    args.push("240".into());
    args.extend(settings.iter().map(|s| s.to_string()));
    run_scenario("oxl-run.sh", &args, 480)
}

fn memtotal_mib(o: &Outcome) -> u64 {
    o.expect("OXEN-MEMTOTAL-KB").parse::<u64>().unwrap() >> 10
}

#[test]
fn one_vcpu_guest_boots_and_powers_off() {
    let o = run(&["vcpus = 1", "memory = 256"]);
    o.assert_has("OXEN-GUEST-UP");
    o.assert_has("OXEN-SLEPT");
    assert_eq!(o.expect("OXEN-CPUS-ONLINE"), "0");
    assert_eq!(o.expect("OXEN-NPROC"), "1");
    // The kernel keeps some memory for itself; what it reports must be close to what we gave.
    let mib = memtotal_mib(&o);
    assert!(
        (180..=256).contains(&mib),
        "MemTotal {mib} MiB for a 256 MiB domain:\n{}",
        o.log
    );
    o.assert_has("Hypervisor detected");
    o.assert_has("oxl: domain 'e2e' powered off");
    assert_eq!(o.expect("OXL-EXIT"), "0", "{}", o.log);
    o.assert_clean();
}

#[test]
fn four_vcpu_guest_brings_all_cpus_up() {
    let o = run(&["vcpus = 4", "memory = 512"]);
    assert_eq!(o.expect("OXEN-CPUS-ONLINE"), "0-3", "{}", o.log);
    assert_eq!(o.expect("OXEN-NPROC"), "4");
    let mib = memtotal_mib(&o);
    assert!(
        (420..=512).contains(&mib),
        "MemTotal {mib} MiB for a 512 MiB domain:\n{}",
        o.log
    );
    o.assert_has("OXEN-SLEPT");
    assert_eq!(o.expect("OXL-EXIT"), "0", "{}", o.log);
    o.assert_clean();
}

#[test]
fn reboot_with_on_reboot_destroy_exits_3() {
    let o = run(&[
        "extra = 'console=ttyS0 quiet oxen.action=reboot'",
        "on_reboot = 'destroy'",
    ]);
    o.assert_has("OXEN-ACTION=reboot");
    o.assert_has("oxl: domain 'e2e' rebooted");
    assert_eq!(o.expect("OXL-EXIT"), "3", "{}", o.log);
    o.assert_clean();
}

#[test]
fn paused_domain_waits_for_unpause_and_restarts_on_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_scenario("reboot-restart.sh", &base_args(dir.path()), 480);
    assert_eq!(
        o.expect("PAUSED-BOOTS"),
        "0",
        "a paused domain ran its guest:\n{}",
        o.log
    );
    let paused = o
        .log
        .split("--- oxl list while paused")
        .nth(1)
        .unwrap_or("");
    assert!(
        paused
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("e2e") && l.contains("--p---")),
        "{}",
        o.log
    );
    let boots: u32 = o.expect("BOOTS").parse().unwrap();
    assert!(
        boots >= 2,
        "the domain did not come back after rebooting:\n{}",
        o.log
    );
    o.assert_has("restarting domain 'e2e'");
    // While running, `oxl list` showed the domain.
    let listing = o
        .log
        .split("--- oxl list while running")
        .nth(1)
        .unwrap_or("");
    assert!(
        listing.lines().nth(2).is_some_and(|l| l.starts_with("e2e")),
        "{}",
        o.log
    );
    o.assert_has("oxl: domain 'e2e' destroyed");
    assert_eq!(o.expect("OXL-EXIT"), "0");
    o.assert_clean();
}

#[test]
fn elf_vmlinux_boots() {
    let dir = tempfile::tempdir().unwrap();
    let vmlinux = e2e::extract_vmlinux(&e2e::guest_kernel(), dir.path());
    let kernel = format!("kernel = '{}'", vmlinux.display());
    let o = run(&[&kernel, "vcpus = 2"]);
    o.assert_has("OXEN-GUEST-UP");
    assert_eq!(o.expect("OXEN-CPUS-ONLINE"), "0-1", "{}", o.log);
    assert_eq!(o.expect("OXL-EXIT"), "0", "{}", o.log);
    o.assert_clean();
}

#[test]
fn guest_panic_is_reported_as_a_crash() {
    let o = run(&[
        "extra = 'console=ttyS0 quiet oxen.action=panic'",
        "on_crash = 'coredump-destroy'",
    ]);
    o.assert_has("OXEN-ACTION=panic");
    assert_eq!(o.count("OXEN-ERROR"), 0, "{}", o.log);
    o.assert_has("oxl: domain 'e2e' crashed: the guest kernel panicked");
    o.assert_has("core dump written to");
    assert_eq!(o.expect("OXL-EXIT"), "4", "{}", o.log);
    o.assert_clean();
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_scenario("bad-input.sh", &base_args(dir.path()), 480);
    let case = |name: &str, message: &str| {
        let block = o
            .log
            .split(&format!("CASE {name} "))
            .nth(1)
            .unwrap_or_else(|| panic!("no case {name}:\n{}", o.log));
        let block: String = block
            .lines()
            .take_while(|l| !l.starts_with("CASE "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            block.starts_with("EXIT=1"),
            "case {name} should exit 1:\n{block}"
        );
        assert!(
            block.contains(message),
            "case {name}: expected {message:?} in:\n{block}"
        );
        assert!(
            !block.contains("panicked"),
            "case {name} panicked:\n{block}"
        );
    };
    case(
        "missing-kernel",
        "kernel /nonexistent/vmlinuz: No such file or directory",
    );
    case("not-a-kernel", "is not a loadable bzImage or ELF vmlinux");
    case(
        "missing-ramdisk",
        "ramdisk /nonexistent/initrd.gz: No such file or directory",
    );
    case("zero-vcpus", "'vcpus': 0 is out of range (1 to 512)");
    case(
        "huge-memory",
        "memory=1048576 MiB is more than this host has",
    );
    case(
        "misspelled-key",
        "'memroy': unknown setting (did you mean 'memory'?)",
    );
    case(
        "vcpus-above-max",
        "'maxvcpus': maxvcpus (2) is below vcpus (4)",
    );
    o.assert_clean();
}
