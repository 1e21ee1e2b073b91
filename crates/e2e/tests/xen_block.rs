//! PV block devices end to end: Debian guests under `oxl` use xen-blkfront disks that Oxen's
//! block backend serves from raw files and VHD images (plain, encrypted, snapshotted, resized,
//! hot-plugged), and the host checks what the guest left on them.
//!
//! Each test boots its own L1 host running `scenarios/xen-block.sh`; the guest runs
//! `guest/block.sh`, told what to do by `oxen.*` words on its command line. A test that reboots
//! the guest reads each boot's output from its own section (`phase 1`, `phase 2`); the host's
//! checks are in `check` (and `between`).

use std::path::Path;

use e2e::{base_args_with, guest_file, guest_initramfs_with, run_scenario, Outcome};

/// Runs xen-block.sh with `parts` (KIND:TEXT, see the scenario) on a guest that has blkfront,
/// ext4, loop, mkfs.ext4, e2fsck and block.sh as its /test.sh.
fn run(parts: &[&str]) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let script = guest_file("block.sh");
    let initrd = guest_initramfs_with(
        dir.path(),
        &["xen-blkfront", "crc32c_generic", "ext4", "loop"],
        &["/sbin/mkfs.ext4", "/sbin/e2fsck"],
        &[
            (&script, "/test.sh"),
            (Path::new("/etc/mke2fs.conf"), "/etc/mke2fs.conf"),
        ],
    );
    let mut args = base_args_with(initrd);
    // Time limit of each boot of the domain.
    args.push("240".into());
    args.extend(parts.iter().map(|s| s.to_string()));
    let o = run_scenario("xen-block.sh", &args, 600);
    // Shown by `--nocapture` (or when the test fails).
    println!("{}", o.log);
    o
}

/// Asserts the domain's boot `phase` powered off normally after the guest script ran to its end.
fn assert_boot_ok(o: &Outcome, phase: u32) {
    let section = format!("phase {phase}");
    o.assert_val(&section, "OXEN-BLOCK-DONE", "1");
    o.assert_val(&section, "OXL-EXIT", "0");
}

/// Asserts block.sh's fs case went well on guest disk `dev` in both boots, and the host's checks
/// of its image (labelled `label` in the check snippets) found a clean ext4 holding the files
/// the guest wrote.
fn assert_fs_disk(o: &Outcome, dev: &str, label: &str) {
    for key in ["MKFS", "MOUNT", "WRITE", "UMOUNT", "FSCK"] {
        o.assert_val("phase 1", &format!("OXEN-{dev}-{key}"), "0");
    }
    for key in ["MOUNT", "VERIFY", "UMOUNT", "FSCK"] {
        o.assert_val("phase 2", &format!("OXEN-{dev}-{key}"), "0");
    }
    o.assert_val("check", &format!("FSCK-{label}"), "0");
    o.assert_val("check", &format!("HOST-VERIFY-{label}"), "ok");
    // The host read back exactly the bytes the guest wrote.
    for file in ["big", "small1", "dir/small3"] {
        assert_eq!(
            o.val("check", &format!("HOST-SUM-{label}-{file}")),
            o.val("phase 1", &format!("OXEN-SUM-{dev}-{file}")),
            "{dev}:{file}:\n{}",
            o.log
        );
    }
}

/// The rows of `oxl block-list` an action printed with `prefix`, split into columns.
fn list_rows(o: &Outcome, prefix: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = o
        .section("phase 1")
        .log
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .skip(1) // the header
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    rows
}

/// The block-list row of device `devid` (xl's Vdev column; `name` accepted too).
fn list_row<'a>(rows: &'a [Vec<String>], devid: &str, name: &str) -> Option<&'a Vec<String>> {
    rows.iter()
        .find(|r| r.first().is_some_and(|v| v == devid || v == name))
}

/// The value of a VBD node the `xs_dump` of boot 1 showed: `kind` is `device` (the frontend's
/// directory) or `backend`, `node` the path below `vbd/` (backend: below the domain id).
fn xs_value(o: &Outcome, kind: &str, node: &str) -> Option<String> {
    let tail = format!("/{node} = \"");
    o.section("phase 1").log.lines().find_map(|l| {
        if !l.starts_with("/local/domain/") || !l.contains(&format!("/{kind}/vbd/")) {
            return None;
        }
        let at = l.find(&tail)?;
        Some(l[at + tail.len()..].trim_end_matches('"').to_string())
    })
}

#[test]
fn guest_block_tools_run_without_a_pv_disk() {
    // No PV disk: this checks the test's own machinery (the host's mkfs.ext4 and e2fsck in the
    // initramfs, blkfront and ext4 loaded, module options from the command line, block.sh's fs
    // case on a loop device).
    // The host half too: the check helpers on an ext4 the host made, raw, as a VHD and as an
    // encrypted VHD, and on one whose SUMS do not match its files.
    let o = run(&[
        "guest:oxen.tools=1 xen_blkfront.max_ring_page_order=2",
        "setup:mkdir $IMG_DIR/t && cd $IMG_DIR/t && head -c 3M /dev/urandom >big \
         && echo hello >small1 && sha256sum big small1 >SUMS \
         && ext4_img $IMG_DIR/t.img 32M $IMG_DIR/t && $VHD convert $IMG_DIR/t.img $IMG_DIR/t.vhd \
         && $VHD keygen $IMG_DIR/k && $VHD convert $IMG_DIR/t.img $IMG_DIR/te.vhd --key $IMG_DIR/k \
         && echo changed >small1 && ext4_img $IMG_DIR/bad.img 32M $IMG_DIR/t",
        "check:fsck_img raw $IMG_DIR/t.img; verify_img raw $IMG_DIR/t.img",
        "check:fsck_img vhd $IMG_DIR/t.vhd; verify_img vhd $IMG_DIR/t.vhd",
        "check:replay_fsck_img enc $IMG_DIR/te.vhd $IMG_DIR/k; verify_img enc $IMG_DIR/te.vhd $IMG_DIR/k",
        "check:verify_img bad $IMG_DIR/bad.img",
    ]);
    o.assert_val("setup", "SETUP-1-EXIT", "0");
    for label in ["raw", "vhd", "enc"] {
        o.assert_val("check", &format!("FSCK-{label}"), "0");
        o.assert_val("check", &format!("HOST-VERIFY-{label}"), "ok");
    }
    o.assert_val("check", "REPLAY-enc", "0");
    o.assert_val("check", "HOST-VERIFY-bad", "bad 1 of 2");
    assert_boot_ok(&o, 1);
    for key in ["OXEN-MKFS-RUNS", "OXEN-E2FSCK-RUNS", "OXEN-LOSETUP"] {
        o.assert_val("phase 1", key, "0");
    }
    for m in ["xen_blkfront", "ext4", "jbd2"] {
        o.assert_val("phase 1", &format!("OXEN-MODULE-{m}"), "1");
    }
    o.assert_val("phase 1", "OXEN-BLKFRONT-MAX-RING-PAGE-ORDER", "2");
    for key in ["MKFS", "MOUNT", "WRITE", "UMOUNT", "FSCK"] {
        o.assert_val("phase 1", &format!("OXEN-loop0-{key}"), "0");
    }
    o.assert_clean();
}

#[test]
fn raw_disk_keeps_its_files_across_a_reboot_and_a_read_only_disk_refuses_writes() {
    let o = run(&[
        "phases:2",
        "setup:truncate -s 64M $IMG_DIR/a.img",
        "setup:mkdir $IMG_DIR/ro && echo 'read-only hello' >$IMG_DIR/ro/hello \
         && ext4_img $IMG_DIR/ro.img 32M $IMG_DIR/ro \
         && echo HOST-HELLO-SUM=$(sha256sum <$IMG_DIR/ro/hello | cut -d' ' -f1) \
         && echo RO-IMG-SUM=$(sha256sum <$IMG_DIR/ro.img | cut -d' ' -f1)",
        "cfg:disk = [ 'format=raw,vdev=xvda,access=rw,target=$IMG_DIR/a.img', \
         'format=raw,vdev=xvdb,access=ro,target=$IMG_DIR/ro.img' ]",
        "guest:oxen.fs=xvda oxen.ro=xvdb",
        "check:fsck_img raw $IMG_DIR/a.img; verify_img raw $IMG_DIR/a.img",
        "check:fsck_img ro $IMG_DIR/ro.img; \
         echo RO-IMG-SUM=$(sha256sum <$IMG_DIR/ro.img | cut -d' ' -f1)",
    ]);
    assert_boot_ok(&o, 1);
    assert_boot_ok(&o, 2);
    // 64 MiB in 512-byte sectors.
    o.assert_val("phase 1", "OXEN-xvda-SECTORS", "131072");
    assert_fs_disk(&o, "xvda", "raw");

    // The read-only disk: blkfront marked it read-only, a write to the device failed, a
    // read-only mount works and shows the host's file, and the image did not change.
    for phase in ["phase 1", "phase 2"] {
        o.assert_val(phase, "OXEN-xvdb-GETRO", "1");
        assert_ne!(o.val(phase, "OXEN-xvdb-DD-WRITE"), "0", "{}", o.log);
        o.assert_val(phase, "OXEN-xvdb-MOUNT-RO", "0");
        assert_ne!(o.val(phase, "OXEN-xvdb-TOUCH"), "0", "{}", o.log);
        assert_eq!(
            o.val(phase, "OXEN-SUM-xvdb-hello"),
            o.val("setup", "HOST-HELLO-SUM"),
            "{}",
            o.log
        );
    }
    assert_eq!(
        o.val("check", "RO-IMG-SUM"),
        o.val("setup", "RO-IMG-SUM"),
        "the read-only image changed:\n{}",
        o.log
    );
    o.assert_val("check", "FSCK-ro", "0");
    o.assert_clean();
}

#[test]
fn vhd_and_encrypted_vhd_keep_their_files_across_a_reboot() {
    let o = run(&[
        "phases:2",
        "setup:$VHD create $IMG_DIR/d.vhd -s 64M && $VHD keygen $IMG_DIR/k.key \
         && $VHD create $IMG_DIR/e.vhd -s 64M --key $IMG_DIR/k.key",
        "cfg:disk = [ 'format=vhd,vdev=xvda,access=rw,target=$IMG_DIR/d.vhd', \
         'format=vhd,vdev=xvdb,access=rw,key=$IMG_DIR/k.key,target=$IMG_DIR/e.vhd' ]",
        "guest:oxen.fs=xvda,xvdb",
        "check:$VHD check $IMG_DIR/d.vhd; echo VHD-CHECK-vhd=$?",
        "check:$VHD check --key $IMG_DIR/k.key $IMG_DIR/e.vhd; echo VHD-CHECK-enc=$?",
        "check:fsck_img vhd $IMG_DIR/d.vhd; verify_img vhd $IMG_DIR/d.vhd",
        "check:fsck_img enc $IMG_DIR/e.vhd $IMG_DIR/k.key; \
         verify_img enc $IMG_DIR/e.vhd $IMG_DIR/k.key",
        // A small file's text is in the plain image's bytes, never in the encrypted one's.
        "check:echo PLAIN-HITS=$(grep -a -c 'small file on xvda' $IMG_DIR/d.vhd); \
         echo ENC-HITS=$(grep -a -c 'small file on xvdb' $IMG_DIR/e.vhd)",
    ]);
    assert_boot_ok(&o, 1);
    assert_boot_ok(&o, 2);
    for dev in ["xvda", "xvdb"] {
        o.assert_val("phase 1", &format!("OXEN-{dev}-SECTORS"), "131072");
    }
    assert_fs_disk(&o, "xvda", "vhd");
    assert_fs_disk(&o, "xvdb", "enc");
    o.assert_val("check", "VHD-CHECK-vhd", "0");
    o.assert_val("check", "VHD-CHECK-enc", "0");
    assert_ne!(o.val("check", "PLAIN-HITS"), "0", "{}", o.log);
    o.assert_val("check", "ENC-HITS", "0");
    o.assert_clean();
}

#[test]
fn multi_queue_large_ring_and_persistent_grant_disks_keep_their_files() {
    let o = run(&[
        "phases:2",
        "setup:for d in a b c; do truncate -s 64M $IMG_DIR/$d.img; done",
        // As many vCPUs as xvda's queues. (With 4 vCPUs the guest's first block I/O hangs on
        // this test host: a known bug, see the session notes.)
        "cfg:vcpus = 2",
        "cfg:disk = [ 'format=raw,vdev=xvda,access=rw,queues=2,ring-page-order=2,target=$IMG_DIR/a.img', \
         'format=raw,vdev=xvdb,access=rw,persistent-grants,ring-page-order=0,target=$IMG_DIR/b.img', \
         'format=raw,vdev=xvdc,access=rw,no-persistent-grants,target=$IMG_DIR/c.img' ]",
        // Linux's blkfront asks for a one-page ring unless told it may use more: allowed the
        // most (16 pages), it takes xvda's backend limit. 4 MiB files keep the three disks quick.
        // With persistent grants blkfront allocates a page per segment of every ring slot up
        // front: 4 queues of 16-page rings would not fit this 256 MiB guest, so xvdb keeps
        // one-page rings.
        "guest:oxen.fs=xvda,xvdb,xvdc oxen.bigmb=4 xen_blkfront.max_ring_page_order=4",
        // What the two ends agreed on, while the disks are connected.
        "action1:wait_for OXEN-xvdc-SECTORS && xs_dump | grep /vbd/",
        "check:for d in a b c; do fsck_img $d $IMG_DIR/$d.img; verify_img $d $IMG_DIR/$d.img; done",
    ]);
    assert_boot_ok(&o, 1);
    assert_boot_ok(&o, 2);
    assert_fs_disk(&o, "xvda", "a");
    assert_fs_disk(&o, "xvdb", "b");
    assert_fs_disk(&o, "xvdc", "c");
    // xvda: two queues and a four-page ring on each, as its disk line says.
    o.assert_val("phase 1", "OXEN-xvda-QUEUES", "2");
    for (kind, node, want) in [
        ("backend", "51712/multi-queue-max-queues", "2"),
        ("backend", "51712/max-ring-page-order", "2"),
        ("device", "51712/multi-queue-num-queues", "2"),
        ("device", "51712/ring-page-order", "2"),
        ("backend", "51728/feature-persistent", "1"),
        ("backend", "51744/feature-persistent", "0"),
    ] {
        assert_eq!(
            xs_value(&o, kind, node).as_deref(),
            Some(want),
            "{kind} node {node}:\n{}",
            o.log
        );
    }
    // Four ring pages per queue.
    assert!(
        xs_value(&o, "device", "51712/queue-1/ring-ref3").is_some(),
        "{}",
        o.log
    );
    let p1 = o.section("phase 1");
    // blkfront's own report of each disk.
    let blkfront = |dev: &str| {
        p1.log
            .lines()
            .find(|l| l.starts_with(&format!("OXEN-BLKFRONT-{dev}: ")))
            .unwrap_or_else(|| panic!("no blkfront line for {dev}:\n{}", o.log))
            .to_string()
    };
    assert!(
        blkfront("xvdb").contains("persistent grants: enabled"),
        "{}",
        o.log
    );
    assert!(
        blkfront("xvdc").contains("persistent grants: disabled"),
        "{}",
        o.log
    );
    o.assert_clean();
}

#[test]
fn hot_attach_detach_and_online_resize() {
    let o = run(&[
        "setup:$VHD create $IMG_DIR/a.vhd -s 64M",
        // The disk to hot-plug: a known MiB at its start.
        "setup:head -c 1M /dev/urandom >$IMG_DIR/pattern && truncate -s 16M $IMG_DIR/b.img \
         && dd if=$IMG_DIR/pattern of=$IMG_DIR/b.img conv=notrunc status=none \
         && echo PATTERN-SUM=$(sha256sum <$IMG_DIR/pattern | cut -d' ' -f1)",
        "cfg:disk = [ 'format=vhd,vdev=xvda,access=rw,target=$IMG_DIR/a.vhd' ]",
        "guest:oxen.hotplug=xvdb oxen.resize=xvda",
        "action1:wait_for OXEN-HOTPLUG-READY \
         && { $OXL block-list $NAME | sed 's/^/LIST-BEFORE: /'; \
              $OXL block-attach $NAME \"format=raw,vdev=xvdb,access=rw,target=$IMG_DIR/b.img\"; \
              echo ATTACH-EXIT=$?; \
              $OXL block-list $NAME | sed 's/^/LIST-ATTACHING: /'; }",
        "action1:wait_for OXEN-HOTPLUG-READ-DONE \
         && { $OXL block-list $NAME | sed 's/^/LIST-ATTACHED: /'; \
              $OXL block-detach $NAME xvdb; echo DETACH-EXIT=$?; \
              $OXL block-list $NAME | sed 's/^/LIST-DETACHED: /'; }",
        "action1:wait_for OXEN-RESIZE-READY && { $OXL block-resize $NAME xvda 128M; echo RESIZE-EXIT=$?; }",
        "check:echo VHD-SIZE-MB=$($VHD query -n $IMG_DIR/a.vhd -v)",
        "check:$VHD check $IMG_DIR/a.vhd; echo VHD-CHECK=$?",
    ]);
    assert_boot_ok(&o, 1);
    // Hot attach: listed, seen by the guest with the host's bytes on it; then gone again.
    o.assert_val("phase 1", "ATTACH-EXIT", "0");
    o.assert_val("phase 1", "OXEN-xvdb-SECTORS", "32768");
    assert_eq!(
        o.val("phase 1", "OXEN-SUM-xvdb-head"),
        o.val("setup", "PATTERN-SUM"),
        "{}",
        o.log
    );
    o.assert_val("phase 1", "DETACH-EXIT", "0");
    o.assert_val("phase 1", "OXEN-xvdb-GONE", "1");
    let before = list_rows(&o, "LIST-BEFORE: ");
    let attaching = list_rows(&o, "LIST-ATTACHING: ");
    let attached = list_rows(&o, "LIST-ATTACHED: ");
    let detached = list_rows(&o, "LIST-DETACHED: ");
    assert!(list_row(&before, "51712", "xvda").is_some(), "{}", o.log);
    assert!(list_row(&before, "51728", "xvdb").is_none(), "{}", o.log);
    // Listed as soon as block-attach returns; connected (state 4) once the guest used it.
    assert!(list_row(&attaching, "51728", "xvdb").is_some(), "{}", o.log);
    let row = list_row(&attached, "51728", "xvdb")
        .unwrap_or_else(|| panic!("xvdb not in block-list after attach:\n{}", o.log));
    // xl's columns: Vdev BE handle state evt-ch ring-ref BE-path; state 4 is Connected.
    assert_eq!(row.len(), 7, "block-list row {row:?}:\n{}", o.log);
    assert_eq!(row[3], "4", "block-list row {row:?}:\n{}", o.log);
    assert!(
        row[4].parse::<u32>().is_ok(),
        "evt-ch of {row:?}:\n{}",
        o.log
    );
    assert!(list_row(&attached, "51712", "xvda").is_some(), "{}", o.log);
    assert!(list_row(&detached, "51728", "xvdb").is_none(), "{}", o.log);
    assert!(list_row(&detached, "51712", "xvda").is_some(), "{}", o.log);

    // Online resize: the guest saw 64 MiB, then 128 MiB without a reboot, and the new space
    // holds data; the image itself grew.
    o.assert_val("phase 1", "OXEN-xvda-SECTORS", "131072");
    o.assert_val("phase 1", "RESIZE-EXIT", "0");
    o.assert_val("phase 1", "OXEN-xvda-RESIZED-SECTORS", "262144");
    o.assert_val("phase 1", "OXEN-xvda-TAIL-WRITE", "0");
    o.assert_val("phase 1", "OXEN-xvda-TAIL-MATCH", "1");
    o.assert_val("check", "VHD-SIZE-MB", "128");
    o.assert_val("check", "VHD-CHECK", "0");
    o.assert_clean();
}

#[test]
fn live_snapshot_during_writes_is_consistent_and_its_clone_boots() {
    let o = run(&[
        "phases:2",
        "setup:$VHD create $IMG_DIR/d.vhd -s 128M",
        "cfg1:disk = [ 'format=vhd,vdev=xvda,access=rw,target=$IMG_DIR/d.vhd' ]",
        "guest1:oxen.snapwrite=xvda",
        "action1:wait_for OXEN-SNAP-WRITING && sleep 3 \
         && { $OXL block-snapshot $NAME xvda $IMG_DIR/snap.vhd; echo SNAPSHOT-EXIT=$?; }",
        // The snapshot alone: a crash-consistent ext4 (clean once its journal is replayed).
        "between:replay_fsck_img snap $IMG_DIR/snap.vhd",
        "between:echo ACTIVE-PARENT=$($VHD query -n $IMG_DIR/d.vhd -p)",
        "between:$VHD clone $IMG_DIR/snap.vhd $IMG_DIR/clone.vhd; echo CLONE-EXIT=$?",
        // A second domain on a clone of the snapshot.
        "cfg2:disk = [ 'format=vhd,vdev=xvda,access=rw,target=$IMG_DIR/clone.vhd' ]",
        "guest2:oxen.snapcheck=xvda",
        "check:fsck_img active $IMG_DIR/d.vhd; fsck_img clone $IMG_DIR/clone.vhd",
        "check:$VHD check $IMG_DIR/d.vhd; echo VHD-CHECK-active=$?",
        "check:$VHD check $IMG_DIR/clone.vhd; echo VHD-CHECK-clone=$?",
    ]);
    assert_boot_ok(&o, 1);
    o.assert_val("phase 1", "SNAPSHOT-EXIT", "0");
    // The domain went on writing on the new child and all its files are intact.
    o.assert_val("phase 1", "OXEN-xvda-VERIFY", "0");
    o.assert_val("phase 1", "OXEN-xvda-FSCK", "0");
    let written: u32 = o.val("phase 1", "OXEN-SNAP-FILES").parse().unwrap();
    o.assert_val("check", "FSCK-active", "0");
    o.assert_val("check", "VHD-CHECK-active", "0");
    // d.vhd is the live child of the snapshot.
    assert!(
        o.val("between", "ACTIVE-PARENT").ends_with("/snap.vhd"),
        "{}",
        o.log
    );
    let replay = o.val("between", "REPLAY-snap");
    assert!(
        replay == "0" || replay == "1",
        "journal replay: {replay}\n{}",
        o.log
    );
    o.assert_val("between", "FSCK-snap", "0");
    o.assert_val("between", "CLONE-EXIT", "0");

    // The clone boots, mounts, and every file the snapshot recorded as complete is intact; the
    // snapshot was taken in the middle of the writing.
    assert_boot_ok(&o, 2);
    o.assert_val("phase 2", "OXEN-xvda-MOUNT", "0");
    o.assert_val("phase 2", "OXEN-xvda-VERIFY", "0");
    o.assert_val("phase 2", "OXEN-xvda-FSCK", "0");
    let in_snapshot: u32 = o.val("phase 2", "OXEN-CLONE-FILES").parse().unwrap();
    assert!(
        (3..written).contains(&in_snapshot),
        "the snapshot holds {in_snapshot} of {written} files:\n{}",
        o.log
    );
    o.assert_val("check", "FSCK-clone", "0");
    o.assert_val("check", "VHD-CHECK-clone", "0");
    o.assert_clean();
}
