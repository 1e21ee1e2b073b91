//! Crash safety: a writer is killed with SIGKILL at random moments, many times; after each kill
//! the image must be valid and hold every write acknowledged as flushed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use block::vhd::{self, check, CreateOptions, OpenOptions, VhdImage};
use block::DiskImage;

#[path = "../src/torture.rs"]
#[allow(dead_code)]
mod torture;

const OXEN: &str = env!("CARGO_BIN_EXE_oxen-vhd");
const SIZE: u64 = 32 << 20;
const RUN_GAP: u64 = 10_000_000;

fn decode(sector: &[u8]) -> u64 {
    u64::from_le_bytes(sector[..8].try_into().unwrap())
}

/// Sequence number marking the base image's own sectors in the differencing test.
const BASE_SEQ: u64 = u64::MAX;

#[test]
fn killed_writer_never_corrupts_or_loses_flushed_data() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("crash.vhd");
    let mut o = CreateOptions::dynamic(SIZE);
    o.block_size = 64 * 1024; // small blocks: allocations happen all the time
    vhd::create(&img, &o).unwrap();
    kill_and_verify(&img, false);
}

#[test]
fn killed_writer_on_differencing_disk_keeps_parent_data() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.vhd");
    let mut o = CreateOptions::dynamic(SIZE);
    o.block_size = 64 * 1024;
    vhd::create(&base, &o).unwrap();
    // Every base sector holds a recognisable record, so a child sector that wrongly stops
    // showing its parent (a bitmap bit persisted before its data) is caught.
    let b = VhdImage::open(&base, &OpenOptions::read_write()).unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    for chunk in 0..SIZE >> 20 {
        buf.clear();
        for k in 0..2048 {
            buf.extend_from_slice(&torture::record_sector(BASE_SEQ, chunk * 2048 + k));
        }
        b.write_at(&buf, chunk << 20).unwrap();
    }
    b.flush().unwrap();
    drop(b);
    let child = d.path().join("child.vhd");
    vhd::create_child(&child, &base, None).unwrap();
    kill_and_verify(&child, true);
}

fn kill_and_verify(img: &std::path::Path, has_base: bool) {
    let sectors = SIZE / 512;
    // Model: for each sector, the newest flushed write covering it.
    let mut model: Vec<Option<u64>> = vec![None; sectors as usize];
    let mut rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {rng}");
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let began = Instant::now();
    let mut runs = 0u64;
    let mut total_flushed = 0u64;
    while runs < 30 && (began.elapsed() < Duration::from_secs(5) || runs < 10) {
        let start = runs * RUN_GAP;
        let mut child = Command::new(OXEN)
            .args([
                "torture",
                img.to_str().unwrap(),
                "--start",
                &start.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning oxen-vhd torture");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("flushed ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        // Every other run first waits for one flush, so a slow, loaded machine still
        // exercises flushed data; the others are killed at any moment from start-up on.
        let mut first = None;
        if runs % 2 == 1 {
            first = rx.recv_timeout(Duration::from_secs(20)).ok();
        }
        std::thread::sleep(Duration::from_millis(2 + next() % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Everything up to the last reported flush is durable.
        let flushed_end = rx.try_iter().last().or(first).unwrap_or(start);
        for seq in start..flushed_end {
            let (s0, len) = torture::record_place(seq, sectors);
            for k in 0..len {
                model[(s0 + k) as usize] = Some(seq);
            }
        }
        total_flushed += flushed_end - start;
        runs += 1;

        let report = check::check(img, None, &|_, _| {}).unwrap();
        assert!(
            report.is_ok(),
            "run {runs}: image invalid after kill: {:?}",
            report.problems
        );
        let r = VhdImage::open(img, &OpenOptions::read_only()).unwrap();
        let mut data = vec![0u8; SIZE as usize];
        r.read_at(&mut data, 0).unwrap();
        for (s, want) in model.iter().enumerate() {
            let sec = &data[s * 512..s * 512 + 512];
            let shows_below = if has_base {
                sec == &torture::record_sector(BASE_SEQ, s as u64)[..]
            } else {
                sec.iter().all(|&b| b == 0)
            };
            if shows_below {
                assert!(
                    want.is_none(),
                    "run {runs}: sector {s} lost flushed write {want:?}"
                );
                continue;
            }
            // Whatever is there must be an intact sector of some write covering this sector,
            // no older than the newest flushed one.
            let seq = decode(sec);
            let (s0, len) = torture::record_place(seq, sectors);
            assert!(
                (s0..s0 + len).contains(&(s as u64)),
                "run {runs}: sector {s} holds data of write {seq}, which never covered it"
            );
            assert_eq!(
                sec,
                &torture::record_sector(seq, s as u64 - s0)[..],
                "run {runs}: sector {s} is torn"
            );
            if let Some(w) = want {
                assert!(
                    seq >= *w,
                    "run {runs}: sector {s} went back from write {w} to {seq}"
                );
            }
        }
    }
    assert!(
        total_flushed > 0,
        "the writer never got to flush: the test proved nothing"
    );
    eprintln!("{runs} kills, {total_flushed} flushed writes verified");
}
