//! End-to-end test support: builds the test guest's initramfs, runs a scenario inside the L1
//! test host (`testhost/run`) and parses what the scenario printed.
//!
//! The tests themselves live in `tests/`; the scenarios (bash, run inside L1) in `scenarios/`,
//! and the guest's `/init` in `guest/init.sh`.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The release `oxl` binary the tests run (built by the test command before the tests run).
pub fn oxl() -> PathBuf {
    let p = target_dir().join("release/oxl");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release --workspace` first",
        p.display()
    );
    p
}

/// The kernel the guests boot (the test host's own Debian 6.12 kernel).
pub fn guest_kernel() -> PathBuf {
    let out = Command::new(repo_root().join("testhost/guest-kernel"))
        .output()
        .expect("running testhost/guest-kernel");
    assert!(
        out.status.success(),
        "testhost/guest-kernel failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Builds the test guest's initramfs (busybox, `guest/init.sh`, pvpanic module) into `dir`.
pub fn guest_initramfs(dir: &Path) -> PathBuf {
    guest_initramfs_with(dir, &[], &[], &[])
}

/// A file of this crate's `guest/` directory (guest-side scripts to ship with
/// [`guest_initramfs_with`]).
pub fn guest_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guest")
        .join(name)
}

/// Builds the test guest's initramfs into `dir` like [`guest_initramfs`], plus the kernel
/// `modules` (with their dependencies, for `modprobe`), host `binaries` (absolute paths; each
/// with the shared libraries it loads, at the same paths in the image) and `files` (host source,
/// absolute destination in the image; a `/test.sh` is what `oxen.action=script` runs).
pub fn guest_initramfs_with(
    dir: &Path,
    modules: &[&str],
    binaries: &[&str],
    files: &[(&Path, &str)],
) -> PathBuf {
    let out = dir.join("guest.cpio.gz");
    let mut cmd = Command::new(repo_root().join("testhost/mkguest"));
    cmd.arg("--init")
        .arg(guest_file("init.sh"))
        .arg("--out")
        .arg(&out);
    for m in std::iter::once(&"pvpanic-mmio").chain(modules) {
        cmd.arg("--module").arg(m);
    }
    for b in binaries {
        cmd.arg("--binary").arg(b);
    }
    for (src, dest) in files {
        let mut spec = src.as_os_str().to_owned();
        spec.push(":");
        spec.push(dest);
        cmd.arg("--file").arg(spec);
    }
    let status = cmd.status().expect("running testhost/mkguest");
    assert!(status.success(), "testhost/mkguest failed");
    out
}

/// Extracts the ELF vmlinux inside a bzImage (Debian compresses it with zstd) into `dir`.
pub fn extract_vmlinux(bzimage: &Path, dir: &Path) -> PathBuf {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let data = std::fs::read(bzimage).expect("reading the kernel");
    let at = data
        .windows(4)
        .position(|w| w == ZSTD_MAGIC)
        .expect("no zstd payload in the bzImage");
    let out = dir.join("vmlinux");
    let mut child = Command::new("zstd")
        .args(["-dc", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&out).expect("creating vmlinux"))
        .spawn()
        .expect("running zstd");
    // zstd stops at the end of the frame; the bytes after it are the bzImage's trailer.
    use std::io::Write;
    let _ = child
        .stdin
        .take()
        .expect("zstd stdin")
        .write_all(&data[at..]);
    let _ = child.wait();
    let head = std::fs::read(&out)
        .map(|d| d.get(..4).map(<[u8]>::to_vec))
        .ok()
        .flatten();
    assert_eq!(
        head.as_deref(),
        Some(&b"\x7fELF"[..]),
        "zstd did not produce an ELF vmlinux"
    );
    out
}

/// What a scenario printed, and its exit status.
#[derive(Debug)]
pub struct Outcome {
    /// The scenario's exit status (testhost/run's).
    pub status: i32,
    /// Everything the scenario printed.
    pub log: String,
}

impl Outcome {
    /// The value of the first line that starts with `KEY=` (leading blanks ignored).
    pub fn value(&self, key: &str) -> Option<String> {
        let pat = format!("{key}=");
        self.log.lines().find_map(|l| {
            l.trim_start()
                .strip_prefix(&pat)
                .map(|v| v.trim().to_string())
        })
    }

    /// Like [`Outcome::value`] but panics with the log if the key is missing.
    pub fn expect(&self, key: &str) -> String {
        self.value(key)
            .unwrap_or_else(|| panic!("no {key}= in the scenario output:\n{}", self.log))
    }

    /// The lines between the line `--- TITLE` and the next line starting with `---` (a part of
    /// the log a scenario set apart, e.g. one boot's serial output), as an outcome of its own
    /// with the same status. Empty if there is no such part.
    pub fn section(&self, title: &str) -> Outcome {
        let head = format!("--- {title}");
        let log = self
            .log
            .lines()
            .skip_while(|l| l.trim_end() != head)
            .skip(1)
            .take_while(|l| !l.starts_with("---"))
            .map(|l| format!("{l}\n"))
            .collect();
        Outcome {
            status: self.status,
            log,
        }
    }

    /// The value of `key` in `section` (see [`Outcome::section`]); panics with the whole log
    /// if it is missing.
    pub fn val(&self, section: &str, key: &str) -> String {
        self.section(section)
            .value(key)
            .unwrap_or_else(|| panic!("no {key}= in section {section:?}:\n{}", self.log))
    }

    /// Asserts `key` in `section` is `want`, showing the log otherwise.
    pub fn assert_val(&self, section: &str, key: &str, want: &str) {
        assert_eq!(
            self.val(section, key),
            want,
            "{key} in section {section:?}:\n{}",
            self.log
        );
    }

    /// Every value of lines that start with `KEY=` (leading blanks ignored), in order.
    pub fn values(&self, key: &str) -> Vec<String> {
        let pat = format!("{key}=");
        self.log
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix(&pat)
                    .map(|v| v.trim().to_string())
            })
            .collect()
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log.lines().filter(|l| l.contains(needle)).count()
    }

    /// Asserts `needle` appears, showing the log otherwise.
    pub fn assert_has(&self, needle: &str) {
        assert!(
            self.log.contains(needle),
            "expected {needle:?} in the scenario output:\n{}",
            self.log
        );
    }

    /// Asserts the scenario left no `oxl` process and no registered domain behind.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.count("STRAY-PROCESS"),
            0,
            "stray process:\n{}",
            self.log
        );
        let list = self.log.rsplit("--- oxl list").next().unwrap_or("");
        let rows = list
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("--- end"))
            .filter(|l| !l.trim().is_empty());
        assert_eq!(
            rows.count(),
            1,
            "only the header should remain in `oxl list`:\n{}",
            self.log
        );
    }
}

/// Runs `scenarios/NAME` inside the test host with `args`; returns what it printed.
pub fn run_scenario(name: &str, args: &[String], timeout_secs: u32) -> Outcome {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    let out_dir = tempfile::tempdir().expect("temp dir");
    let result = Command::new(repo_root().join("testhost/run"))
        .arg("--timeout")
        .arg(timeout_secs.to_string())
        .arg("--out")
        .arg(out_dir.path())
        .arg(&scenario)
        .args(args)
        .output()
        .expect("running testhost/run");
    let log = std::fs::read_to_string(out_dir.path().join("scenario.log"))
        .unwrap_or_else(|_| String::from_utf8_lossy(&result.stdout).into_owned());
    let status = result.status.code().unwrap_or(-1);
    assert!(
        status != 124 && status != 125,
        "the test host failed or timed out (status {status}):\n{log}\n--- stderr\n{}\n--- console tail\n{}",
        String::from_utf8_lossy(&result.stderr),
        std::fs::read_to_string(out_dir.path().join("console.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    Outcome { status, log }
}

/// Common arguments for scenarios: oxl, kernel and a fresh guest initramfs in `dir`.
pub fn base_args(dir: &Path) -> Vec<String> {
    base_args_with(guest_initramfs(dir))
}

/// Common arguments for scenarios with a given guest initramfs: oxl, kernel and `initrd`.
pub fn base_args_with(initrd: PathBuf) -> Vec<String> {
    [oxl(), guest_kernel(), initrd]
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}
