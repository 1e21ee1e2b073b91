//! PV network end to end: Debian guests under `oxl` use xen-netfront interfaces that Oxen's
//! network back end connects to taps on host bridges. Everything stays inside the L1 test host:
//! DHCP from the host's udhcpd, pings both ways, TCP transfers checked by sum in both
//! directions, two guests on one bridge, a hot-attached second NIC, and a rate limit.
//!
//! Each test boots its own L1 host running `scenarios/xen-net.sh`; guests run `guest/net.sh`,
//! told what to do by `oxen.*` words on their command line; `scenarios/netcheck.py` is the
//! host's end of the transfers.

use std::path::Path;

use e2e::{base_args_with, guest_file, guest_initramfs_with, run_scenario, Outcome};

/// Runs xen-net.sh with `parts` (KIND:TEXT, see the scenario).
fn run(parts: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let script = guest_file("net.sh");
    let dhcp = guest_file("udhcpc.sh");
    let initrd = guest_initramfs_with(
        dir.path(),
        &["xen-netfront"],
        &[],
        &[(&script, "/test.sh"), (Path::new(&dhcp), "/udhcpc.sh")],
    );
    let mut args = base_args_with(initrd);
    // Time limit of each domain.
    args.push("300".into());
    args.extend(parts.iter().map(|s| s.to_string()));
    let o = run_scenario("xen-net.sh", &args, 900);
    // Shown by `--nocapture` (or when the test fails).
    println!("{}", o.log);
    o
}

/// Asserts domain `name` ran net.sh to its end and powered off.
fn assert_dom_ok(o: &Outcome, name: &str) {
    let s = format!("dom {name}");
    o.assert_val(&s, "OXEN-NET-DONE", "1");
    o.assert_val(&s, "OXEN-SCRIPT-EXIT", "0");
    o.assert_val(&s, "OXL-EXIT", "0");
}

/// Asserts what one side sent (`from`'s `send_key`) arrived whole at the other (`to`'s keys).
fn assert_transfer(o: &Outcome, from: (&str, &str), to: (&str, &str, &str), bytes: u64) {
    let sent = o.val(from.0, from.1);
    assert_eq!(sent.len(), 32, "{} is not an md5 sum:\n{}", from.1, o.log);
    assert_eq!(
        o.val(to.0, to.1),
        sent,
        "the data changed on the way:\n{}",
        o.log
    );
    o.assert_val(to.0, to.2, &bytes.to_string());
}

#[test]
fn dhcp_ping_and_tcp_in_both_directions() {
    let o = run(&[
        "dom:n1",
        "cfg:n1:vif = [ 'mac=00:16:3e:00:01:01,bridge=xenbr0' ]",
        "lease:00:16:3e:00:01:01/169.254.99.11",
        "guest:n1:oxen.dhcp=eth0 oxen.ping=169.254.99.1 oxen.recv=5001 oxen.send=169.254.99.1/5002/4096",
        "action:$NETCHECK recv 5002 >$TMPDIR/recv-5002.out 2>&1 &",
        "action:wait_for n1 OXEN-LISTENING=5001 && busybox ping -c 3 -W 5 169.254.99.11 >/dev/null; echo HOST-PING=$?",
        "action:$OXL network-list n1 | sed 's/^/LIST: /'",
        "action:$NETCHECK send 169.254.99.11 5001 4096",
        "check:cat $TMPDIR/recv-5002.out",
    ]);
    assert_dom_ok(&o, "n1");
    // The guest's address came from udhcpd: the fixed lease of its MAC.
    o.assert_val("dom n1", "OXEN-eth0-MAC", "00:16:3e:00:01:01");
    o.assert_val("dom n1", "OXEN-DHCP-eth0", "0");
    o.assert_val("dom n1", "OXEN-IP-eth0", "169.254.99.11");
    o.assert_val("dom n1", "OXEN-PING-169.254.99.1", "0");
    o.assert_val("actions", "HOST-PING", "0");
    // Host to guest, then guest to host, 4 MiB each.
    o.assert_val("actions", "HOST-SEND-EXIT-5001", "0");
    assert_transfer(
        &o,
        ("actions", "HOST-SEND-SUM-5001"),
        ("dom n1", "OXEN-RECV-SUM-5001", "OXEN-RECV-BYTES-5001"),
        4 << 20,
    );
    o.assert_val("dom n1", "OXEN-SEND-EXIT-5002", "0");
    assert_transfer(
        &o,
        ("dom n1", "OXEN-SEND-SUM-5002"),
        ("check", "HOST-RECV-SUM-5002", "HOST-RECV-BYTES-5002"),
        4 << 20,
    );
    // network-list (after the guest had used the vif) showed it connected (state 4).
    let row = o
        .section("actions")
        .log
        .lines()
        .find(|l| l.starts_with("LIST: ") && l.contains("00:16:3e:00:01:01"))
        .unwrap_or_else(|| panic!("no vif in network-list:\n{}", o.log))
        .to_string();
    assert_eq!(
        row.split_whitespace().nth(5),
        Some("4"),
        "network-list row {row:?}"
    );
    o.assert_clean();
}

#[test]
fn two_guests_on_one_bridge_talk_to_each_other() {
    let o = run(&[
        "dom:a",
        "dom:b",
        "cfg:a:vif = [ 'mac=00:16:3e:00:02:01,bridge=xenbr0' ]",
        "cfg:b:vif = [ 'mac=00:16:3e:00:02:02,bridge=xenbr0' ]",
        "lease:00:16:3e:00:02:01/169.254.99.21",
        "lease:00:16:3e:00:02:02/169.254.99.22",
        "guest:a:oxen.dhcp=eth0 oxen.ping=169.254.99.22 oxen.send=169.254.99.22/5003/2048",
        "guest:b:oxen.dhcp=eth0 oxen.recv=5003",
    ]);
    assert_dom_ok(&o, "a");
    assert_dom_ok(&o, "b");
    o.assert_val("dom a", "OXEN-IP-eth0", "169.254.99.21");
    o.assert_val("dom b", "OXEN-IP-eth0", "169.254.99.22");
    o.assert_val("dom a", "OXEN-PING-169.254.99.22", "0");
    o.assert_val("dom a", "OXEN-SEND-EXIT-5003", "0");
    assert_transfer(
        &o,
        ("dom a", "OXEN-SEND-SUM-5003"),
        ("dom b", "OXEN-RECV-SUM-5003", "OXEN-RECV-BYTES-5003"),
        2 << 20,
    );
    o.assert_clean();
}

#[test]
fn hot_attached_nic_works_and_a_rate_limit_holds() {
    // 1 Mb/s is 125,000 bytes a second; 1 MiB takes at least 8 s through it.
    const LIMIT: u64 = 125_000;
    let o = run(&[
        "dom:n3",
        "cfg:n3:vif = [ 'mac=00:16:3e:00:03:01,bridge=xenbr0,rate=1Mb/s' ]",
        "lease:00:16:3e:00:03:01/169.254.99.31",
        "guest:n3:oxen.dhcp=eth0 oxen.send=169.254.99.1/5004/1024 oxen.hotplug=eth1/169.254.98.2/24/169.254.98.1",
        "action:$NETCHECK recv 5004 >$TMPDIR/recv-5004.out 2>&1 &",
        "action:wait_for n3 OXEN-HOTPLUG-WAITING 240 && $OXL network-attach n3 mac=00:16:3e:00:03:02,bridge=xenbr1",
        "action:$OXL network-list n3 | sed 's/^/LIST1: /'",
        "action:wait_for n3 OXEN-HOTPLUG-PING= 240 && $OXL network-detach n3 00:16:3e:00:03:02",
        "action:$OXL network-list n3 | sed 's/^/LIST2: /'",
        "check:cat $TMPDIR/recv-5004.out",
    ]);
    assert_dom_ok(&o, "n3");
    // The rate-limited transfer arrived whole, no faster than the limit (one interval's credit
    // of slack for the burst at the start).
    assert_transfer(
        &o,
        ("dom n3", "OXEN-SEND-SUM-5004"),
        ("check", "HOST-RECV-SUM-5004", "HOST-RECV-BYTES-5004"),
        1 << 20,
    );
    let bps: u64 = o.val("check", "HOST-RECV-BPS-5004").parse().unwrap();
    assert!(
        bps <= LIMIT * 11 / 10,
        "{bps} B/s through a vif limited to {LIMIT} B/s:\n{}",
        o.log
    );
    // The second NIC appeared in the guest, carried a ping, and went away on detach.
    o.assert_val("dom n3", "OXEN-eth1-MAC", "00:16:3e:00:03:02");
    o.assert_val("dom n3", "OXEN-HOTPLUG-PING", "0");
    o.assert_val("dom n3", "OXEN-HOTPLUG-GONE", "1");
    for step in ["ACTION-2-EXIT", "ACTION-4-EXIT"] {
        o.assert_val("actions", step, "0");
    }
    let listed = |prefix: &str| {
        o.section("actions")
            .log
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains("00:16:3e:00:03:0"))
            .count()
    };
    assert_eq!(listed("LIST1: "), 2, "both vifs listed:\n{}", o.log);
    assert_eq!(listed("LIST2: "), 1, "one vif after detach:\n{}", o.log);
    o.assert_clean();
}
