//! The Xen HVM interface with a real Debian kernel inside the test host: the guest detects Xen,
//! uses its event channels, timers and Xenstore, talks on the PV console, and shuts down and
//! crashes the Xen way. Each test boots its own L1 host running `oxenstored` and `oxl`.

use e2e::{base_args, run_scenario, Outcome};

/// Runs xen-run.sh: `cfg` lines go into the domain's config, `actions` run while it is up.
fn run(cfg: &[&str], actions: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut args = base_args(dir.path());
    args.push("300".into());
    args.push(cfg.len().to_string());
    args.extend(cfg.iter().map(|s| s.to_string()));
    args.extend(actions.iter().map(|s| s.to_string()));
    run_scenario("xen-run.sh", &args, 600)
}

const UUID: &str = "6f1c2a3e-0b5d-4e8f-9a7c-2d4e6f8a0b1c";

#[test]
fn xen_guest_has_xenbus_timers_pv_console_and_shuts_down_through_xenstore() {
    let uuid = format!("uuid = '{UUID}'");
    let o = run(
        &[
            "vcpus = 4",
            "memory = 512",
            &uuid,
            "extra = 'console=ttyS0 quiet oxen.action=xen'",
        ],
        &[
            // A command typed on the PV console through `oxl console` is answered by the
            // guest's shell on hvc0.
            "wait_for OXEN-XEN-READY && \
             (echo 'echo OXEN-HVC-ANSWER-$((6*7))'; sleep 3) | timeout 8 $OXL console -t pv $NAME; true",
            // xl's way to stop a guest: control/shutdown in Xenstore, then wait.
            "timeout 120 $OXL shutdown -w $NAME; echo SHUTDOWN-EXIT=$?",
        ],
    );
    // Detection and the Xen features Linux took up.
    o.assert_has("Hypervisor detected: Xen HVM");
    o.assert_has("Xen version 4.17");
    o.assert_has("Xen HVM callback vector for event delivery is enabled");
    assert_eq!(o.expect("OXEN-CPUS-ONLINE"), "0-3", "{}", o.log);
    for cpu in 0..4 {
        o.assert_has(&format!("installing Xen timer for CPU {cpu}"));
    }
    assert_eq!(o.expect("OXEN-CS"), "xen", "{}", o.log);
    // The platform PCI device's BAR took the grant frames (add_to_physmap, setup_table).
    o.assert_has("xen-platform-pci 0000:00:02.0: enabling device");
    o.assert_has("Grant table initialized");
    for cpu in 0..4 {
        assert_eq!(
            o.expect(&format!("OXEN-CE-clockevent{cpu}")),
            "xen",
            "{}",
            o.log
        );
    }
    // The domain handle (XENVER_guest_handle) is the configured UUID.
    assert_eq!(o.expect("OXEN-HV-TYPE"), "xen", "{}", o.log);
    assert_eq!(o.expect("OXEN-HV-VERSION"), "4.17", "{}", o.log);
    assert_eq!(o.expect("OXEN-HV-UUID"), UUID, "{}", o.log);
    // The PV console answered.
    o.assert_has("OXEN-HVC-ANSWER-42");
    // Shutdown through Xenstore reached the guest's init, the guest powered off.
    o.assert_has("OXEN-GOT-POWEROFF");
    o.assert_has("oxl: domain 'e2e' powered off");
    o.assert_has("SHUTDOWN-EXIT=0");
    assert_eq!(o.expect("OXL-EXIT"), "0", "{}", o.log);
    // The domain's Xenstore entries went with it.
    assert_eq!(o.count("XS-AFTER: "), 0, "{}", o.log);
    o.assert_clean();
}

#[test]
fn xen_reboot_request_and_crash_take_the_xen_path() {
    let o = run(
        &[
            "extra = 'console=ttyS0 quiet oxen.action=xen'",
            "on_reboot = 'destroy'",
        ],
        &["wait_for OXEN-XEN-READY && $OXL reboot $NAME; echo REBOOT-EXIT=$?"],
    );
    o.assert_has("REBOOT-EXIT=0");
    o.assert_has("OXEN-GOT-REBOOT");
    o.assert_has("oxl: domain 'e2e' rebooted");
    assert_eq!(o.expect("OXL-EXIT"), "3", "{}", o.log);
    o.assert_clean();

    // A panic with no pvpanic driver: Linux HVM guests report it with SCHEDOP_shutdown(crash)
    // when booted with xen_legacy_crash (without it they reboot, as on Xen).
    let o = run(
        &[
            "extra = 'console=ttyS0 quiet xen_legacy_crash oxen.action=xenpanic'",
            "on_crash = 'destroy'",
        ],
        &[],
    );
    o.assert_has("oxl: domain 'e2e' crashed: the guest reported a crash");
    assert_eq!(o.expect("OXL-EXIT"), "4", "{}", o.log);
    o.assert_clean();
}

#[test]
fn create_c_without_serial_attaches_the_pv_console() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = base_args(dir.path());
    args.push("240".into());
    args.push("extra = 'console=hvc0 quiet'".into());
    let o = run_scenario("xen-create-c.sh", &args, 480);
    // The guest's init prints on its console, which is hvc0 here: it reached oxl's terminal.
    o.assert_has("OXEN-GUEST-UP");
    o.assert_has("OXEN-DMESG: [    0.000000] Hypervisor detected: Xen HVM");
    o.assert_has("oxl: domain 'e2e' powered off");
    assert_eq!(o.expect("OXL-EXIT"), "0", "{}", o.log);
    o.assert_clean();
}
