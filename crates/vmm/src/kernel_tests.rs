//! Loading kernels through the unpacked-kernel cache: a hit leaves guest memory exactly as a
//! miss does, and every doubtful entry is a miss.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;
use crate::elf::tests::{elf, patterned};
use crate::kcache::KEEP;
use crate::payload::tests::bzimage;

const RAM: u64 = 64 << 20;

/// A bzImage whose zstd payload is an ELF vmlinux with two segments (zero pages included);
/// `seed` varies the contents.
fn kernel(seed: u8) -> Vec<u8> {
    let a = patterned(40 * 4096 + 123, seed);
    let b = patterned(9 * 4096, seed.wrapping_add(1));
    let vmlinux = elf(&[
        (0x100_0000, a.clone(), a.len() as u64 + 0x8000),
        (0x180_0000, b.clone(), b.len() as u64),
    ]);
    let mut z = zstd::encode_all(&vmlinux[..], 3).unwrap();
    // Linux appends the unpacked size.
    z.extend_from_slice(&(vmlinux.len() as u32).to_le_bytes());
    bzimage(&z, 0x20f)
}

fn memory_of(ram: &GuestRam) -> Vec<u8> {
    let mut all = vec![0u8; ram.size() as usize];
    ram.file.read_exact_at(&mut all, 0).unwrap();
    all
}

/// Loads `image` into fresh RAM; returns how it loaded and the memory.
fn boot(image: &[u8], cache: Option<&KernelCache>) -> (Kernel, Vec<u8>) {
    let ram = GuestRam::new(RAM).unwrap();
    let k = load(
        &ram,
        Path::new("test-bzImage"),
        image,
        cache,
        &mut Phases::start("test"),
    )
    .unwrap();
    (k, memory_of(&ram))
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "oxk"));
    v
}

#[test]
fn a_hit_loads_exactly_what_unpacking_does() {
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::at(dir.path().join("kernels"));
    let image = kernel(1);
    let (plain, reference) = boot(&image, None);
    assert_eq!(plain.source, Source::Unpacked);
    assert_eq!(plain.entry, 0x100_0000);
    assert_eq!(plain.range, 0x100_0000..0x180_0000 + 9 * 4096);
    assert!(plain.header.is_some());

    let (miss, m1) = boot(&image, Some(&cache));
    assert_eq!(miss.source, Source::Unpacked);
    assert_eq!(entries(cache.dir()).len(), 1);
    let (hit, m2) = boot(&image, Some(&cache));
    assert_eq!(hit.source, Source::Cache);
    assert_eq!((hit.entry, hit.range.clone()), (plain.entry, plain.range));
    assert!(hit.header.is_some());
    assert!(m1 == reference && m2 == reference, "guest memory differs");
}

#[test]
fn a_changed_kernel_misses() {
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::at(dir.path());
    boot(&kernel(1), Some(&cache));
    let changed = kernel(2);
    let (k, mem) = boot(&changed, Some(&cache));
    assert_eq!(k.source, Source::Unpacked);
    assert!(mem == boot(&changed, None).1);
    assert_eq!(entries(cache.dir()).len(), 2);
    // One flipped byte anywhere in the bzImage is another key.
    let mut flipped = kernel(1);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_ne!(Key::of(&flipped), Key::of(&kernel(1)));
}

/// Damages the only entry with `damage`, then checks the next boot unpacks again, loads the
/// right memory and leaves a good entry behind.
fn survives(damage: impl FnOnce(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::at(dir.path());
    let image = kernel(3);
    let (_, reference) = boot(&image, None);
    boot(&image, Some(&cache));
    let entry = entries(cache.dir()).pop().unwrap();
    damage(&entry);
    let (k, mem) = boot(&image, Some(&cache));
    assert_eq!(k.source, Source::Unpacked, "a damaged entry was used");
    assert!(
        mem == reference,
        "guest memory differs after a damaged entry"
    );
    let (k, mem) = boot(&image, Some(&cache));
    assert_eq!(k.source, Source::Cache, "the entry was not rewritten");
    assert!(mem == reference);
}

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

#[test]
fn corrupt_data_is_detected() {
    // Byte 100 is in the first extent's data.
    survives(|p| flip(p, 100));
}

#[test]
fn corrupt_index_is_detected() {
    survives(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        flip(p, len - 56); // the entry point
    });
}

#[test]
fn truncated_entries_are_detected() {
    survives(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
    survives(|p| std::fs::write(p, b"").unwrap());
}

#[test]
fn an_unusable_cache_directory_still_boots() {
    let dir = tempfile::tempdir().unwrap();
    let image = kernel(4);
    let (_, reference) = boot(&image, None);
    // A regular file where the directory should be: nothing can be created under it.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let (k, mem) = boot(&image, Some(&KernelCache::at(file.join("kernels"))));
    assert_eq!(k.source, Source::Unpacked);
    assert!(mem == reference);
    // A directory others may write to is not trusted: no entry is written or used.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache = KernelCache::at(&open);
    boot(&image, Some(&cache));
    assert!(entries(&open).is_empty());
}

#[test]
fn the_cache_keeps_the_most_recent_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::at(dir.path());
    for seed in 10..10 + KEEP as u8 + 2 {
        boot(&kernel(seed), Some(&cache));
    }
    assert_eq!(entries(cache.dir()).len(), KEEP);
    // The latest is among them.
    assert_eq!(
        boot(&kernel(10 + KEEP as u8 + 1), Some(&cache)).0.source,
        Source::Cache
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), KEEP);
}

#[test]
fn an_unpackable_payload_falls_back_to_the_guest_decompressor() {
    // A zstd payload that is not an ELF file: nothing is cached, the bzImage loads as is.
    let dir = tempfile::tempdir().unwrap();
    let cache = KernelCache::at(dir.path());
    let mut z = zstd::encode_all(&b"not an ELF file"[..], 3).unwrap();
    z.extend_from_slice(&15u32.to_le_bytes());
    let ram = GuestRam::new(RAM).unwrap();
    let r = load(
        &ram,
        Path::new("x"),
        &bzimage(&z, 0x20f),
        Some(&cache),
        &mut Phases::start("test"),
    );
    // The minimal test bzImage is too short for linux-loader's bzImage loader, so reaching it
    // is an error from that loader; and nothing was cached.
    let e = r.unwrap_err().to_string();
    assert!(e.contains("failed to load bzImage"), "{e}");
    assert!(entries(cache.dir()).is_empty());
}

/// With `OXEN_TEST_BZIMAGE=/path/to/bzImage`: a real kernel loads the same from the cache as
/// unpacked (`cargo test -p vmm -- --ignored real_kernel --nocapture` prints the times).
#[test]
#[ignore]
fn real_kernel_round_trip() {
    let Some(path) = std::env::var_os("OXEN_TEST_BZIMAGE") else {
        return;
    };
    let image = std::fs::read(path).unwrap();
    let dir = match std::env::var_os("OXEN_TEST_CACHE_IN") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let cache = KernelCache::at(dir.path());
    let timed = |cache: Option<&KernelCache>| {
        let ram = GuestRam::new(256 << 20).unwrap();
        let t = std::time::Instant::now();
        let k = load(
            &ram,
            Path::new("bz"),
            &image,
            cache,
            &mut Phases::start("t"),
        )
        .unwrap();
        eprintln!("{:?}: {:?}", k.source, t.elapsed());
        (k.source, memory_of(&ram))
    };
    let (s0, m0) = timed(None);
    let (s1, m1) = timed(Some(&cache));
    let (s2, m2) = timed(Some(&cache));
    assert_eq!(
        (s0, s1, s2),
        (Source::Unpacked, Source::Unpacked, Source::Cache)
    );
    assert!(m0 == m1 && m1 == m2);
    // The same memory as linux-loader's ELF loader given the whole unpacked vmlinux.
    let ram = GuestRam::new(256 << 20).unwrap();
    let t = std::time::Instant::now();
    let vmlinux = payload::decompress(&image, 1 << 30).unwrap();
    linux_loader::loader::elf::Elf::load(
        &ram.mem,
        None,
        &mut Cursor::new(&vmlinux[..]),
        Some(GuestAddress(HIGH_RAM_START)),
    )
    .unwrap();
    eprintln!("unpacked whole, then linux-loader: {:?}", t.elapsed());
    assert!(memory_of(&ram) == m0, "differs from linux-loader's load");
}
