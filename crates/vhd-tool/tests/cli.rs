//! The CLI verbs end to end.

use std::path::Path;
use std::process::{Command, Output};

const OXEN: &str = env!("CARGO_BIN_EXE_oxen-vhd");

fn oxen(args: &[&str]) -> Output {
    Command::new(OXEN)
        .args(args)
        .output()
        .expect("running oxen-vhd")
}

fn ok(args: &[&str]) -> String {
    let o = oxen(args);
    assert!(
        o.status.success(),
        "oxen-vhd {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verbs_work_together() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.vhd");
    let snap = d.path().join("snap.vhd");
    ok(&["create", s(&base), "-s", "64M", "--block-size", "512K"]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--json", s(&base)])).unwrap();
    assert_eq!(info["type"], "dynamic");
    assert_eq!(info["virtual_size"], 64u64 << 20);
    assert_eq!(info["block_size"], 512u64 << 10);
    ok(&["snapshot", "-n", s(&snap), "-p", s(&base)]);
    let q = ok(&["query", "-n", s(&snap), "-v", "-p", "-d"]);
    assert!(
        q.contains("64\n") && q.contains("base.vhd") && q.contains("chain depth: 2"),
        "{q}"
    );
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--json", s(&snap)])).unwrap();
    assert_eq!(info["type"], "differencing");
    assert_eq!(
        info["chain"][0]["uuid"],
        serde_json::from_str::<serde_json::Value>(&ok(&["info", "--json", s(&base)])).unwrap()
            ["uuid"]
    );
    // Data written through convert lands in the map.
    let raw = d.path().join("in.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[9u8; 4096], 1 << 20).unwrap();
    let conv = d.path().join("conv.vhd");
    ok(&["convert", s(&raw), s(&conv)]);
    let map: serde_json::Value = serde_json::from_str(&ok(&["map", "--json", s(&conv)])).unwrap();
    let held: Vec<_> = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["depth"].is_null())
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["offset"], 0);
    assert_eq!(held[0]["length"], 2u64 << 20); // a whole dynamic block
    let scan = ok(&["scan", s(d.path())]);
    assert!(
        scan.contains("snap.vhd") && scan.contains("parent=") && scan.contains("base.vhd"),
        "{scan}"
    );
    ok(&["set", "-n", s(&base), "-f", "hidden", "-v", "1"]);
    assert!(ok(&["query", "-n", s(&base), "-f"]).contains("hidden: 1"));
    ok(&["resize", s(&conv), "-s", "1G"]);
    assert!(ok(&["query", "-n", s(&conv), "-v"]).starts_with("1024"));
    assert!(ok(&["read", s(&conv), "--bat", "--bitmap", "0"]).contains("block 0: sector"));
    ok(&["check", s(&conv)]);
    ok(&["coalesce", s(&snap)]);
}

#[test]
fn check_repair_and_keys_report_clearly() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.vhd");
    ok(&["create", s(&img), "-s", "8M"]);
    let mut bytes = std::fs::read(&img).unwrap();
    let n = bytes.len();
    bytes[n - 300] ^= 0x40;
    std::fs::write(&img, &bytes).unwrap();
    let o = oxen(&["check", s(&img)]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("footer") && out.contains("checksum") && out.contains("repairable"),
        "{out}"
    );
    assert!(ok(&["repair", s(&img)]).contains("footer"));
    ok(&["check", s(&img)]);

    let key = d.path().join("k");
    let wrong = d.path().join("w");
    ok(&["keygen", s(&key)]);
    ok(&["keygen", s(&wrong)]);
    let enc = d.path().join("e.vhd");
    ok(&["create", s(&enc), "-s", "8M", "--key", s(&key)]);
    ok(&["info", s(&enc), "--key", s(&key)]);
    let o = oxen(&["info", s(&enc), "--key", s(&wrong)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong key"));
    let o = oxen(&["info", s(&enc)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("key file is required"));
    let o = oxen(&["info", s(&d.path().join("k"))]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("too short")
            || String::from_utf8_lossy(&o.stderr).contains("footer")
    );
}
