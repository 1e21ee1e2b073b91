//! The fuzz target's body, shared by `fuzz/fuzz_targets/parse.rs` (cargo-fuzz) and a unit test
//! that feeds it corrupted images, so CI exercises it without cargo-fuzz.

use std::sync::Arc;

use crate::vhd::{check, OpenOptions, VhdImage};
use crate::{DiskImage, MemStorage, Storage};

/// Parses arbitrary bytes as a VHD, checks it, and if it opens, reads, writes, discards and
/// flushes through it. Must never panic, whatever the input.
pub fn fuzz_image(data: &[u8]) {
    let store: Arc<dyn Storage> = Arc::new(MemStorage::new(data.to_vec()));
    let _ = check::check_storage(store.clone());
    let opts = OpenOptions {
        writable: true,
        key: None,
        open_parent: false,
    };
    let Ok(img) = VhdImage::open_storage(store, "fuzz", &opts) else {
        return;
    };
    let size = img.size();
    let mut buf = vec![0u8; 8192];
    for off in [0, size / 2, size.saturating_sub(8192)] {
        let off = off / 512 * 512;
        let n = (size - off.min(size)).min(8192) as usize;
        let _ = img.read_at(&mut buf[..n], off);
    }
    let _ = img.write_at(&[0xa5; 1024], 0);
    let mid = size / 2 / 512 * 512;
    let _ = img.write_at(&[0x5a; 512], mid);
    let _ = img.discard(0, 512.min(size));
    let _ = img.flush();
    let _ = img.read_at(&mut buf[..512], 0);
    let _ = crate::vhd::ops::map(&img);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhd::{create_on, CreateOptions};

    fn sample_images() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for mut o in [
            CreateOptions::dynamic(8 << 20),
            CreateOptions::fixed(64 << 10),
        ] {
            if o.disk_type == crate::vhd::DiskType::Dynamic {
                o.block_size = 1 << 20;
            }
            let s = Arc::new(MemStorage::new(Vec::new()));
            create_on(s.as_ref(), &o).unwrap();
            let img = VhdImage::open_storage(s.clone(), "s", &OpenOptions::read_write()).unwrap();
            img.write_at(&[7u8; 4096], 512).unwrap();
            img.write_at(&[9u8; 512], img.size() - 512).unwrap();
            img.flush().unwrap();
            out.push(s.to_vec());
        }
        out
    }

    #[test]
    fn corrupted_images_never_panic() {
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for img in sample_images() {
            fuzz_image(&img);
            // Truncations.
            for cut in [
                0,
                1,
                511,
                512,
                1024,
                1536,
                2048,
                img.len() / 2,
                img.len() - 1,
            ] {
                fuzz_image(&img[..cut.min(img.len())]);
            }
            // Byte flips in the metadata at both ends, and absurd values in key fields.
            let n = img.len();
            for _ in 0..400 {
                let mut m = img.clone();
                let pos = match next() % 3 {
                    0 => (next() % 3072) as usize,
                    1 => n - 1 - (next() % 512) as usize,
                    _ => (next() % n as u64) as usize,
                };
                m[pos] = next() as u8;
                fuzz_image(&m);
            }
            for field in [16usize, 40, 48, 60] {
                let mut m = img.clone();
                m[n - 512 + field..n - 512 + field + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
                fuzz_image(&m);
                m[field..field + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
                fuzz_image(&m);
            }
        }
    }
}
