//! Interoperability with tools no one here wrote: qemu-img/qemu-io (-f vpc) and libvhdi's
//! vhdiinfo/vhdimount. These tools are installed by scripts/deps.d/30-vhd.sh; a missing tool
//! fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use block::vhd::{self, CreateOptions, OpenOptions, VhdImage};
use block::DiskImage;

const MIB: u64 = 1 << 20;
const OXEN: &str = env!("CARGO_BIN_EXE_oxen-vhd");

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} could not run ({e}); run scripts/install-deps"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (offset, length, byte) writes used on both sides.
const WRITES: &[(u64, u64, u8)] = &[
    (0, 4096, 0x11),
    (3 * MIB - 512, 8192, 0x22),
    (17 * MIB, MIB, 0x33),
    (63 * MIB, 512 * 3, 0x44),
];

fn qemu_write_patterns(img: &Path) {
    for &(o, l, b) in WRITES {
        run(
            "qemu-io",
            &["-f", "vpc", "-c", &format!("write -P {b} {o} {l}"), s(img)],
        );
    }
}

fn qemu_read_patterns(img: &Path) {
    for &(o, l, b) in WRITES {
        let out = run(
            "qemu-io",
            &["-f", "vpc", "-c", &format!("read -P {b} {o} {l}"), s(img)],
        );
        assert!(!out.contains("Pattern verification failed"), "{out}");
    }
    // A region nobody wrote reads as zeros.
    let out = run(
        "qemu-io",
        &[
            "-f",
            "vpc",
            "-c",
            &format!("read -P 0 {} 4096", 40 * MIB),
            s(img),
        ],
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");
}

fn oxen_write_patterns(img: &Path) {
    let i = VhdImage::open(img, &OpenOptions::read_write()).unwrap();
    for &(o, l, b) in WRITES {
        i.write_at(&vec![b; l as usize], o).unwrap();
    }
    i.flush().unwrap();
}

fn oxen_check_patterns(img: &Path) {
    let i = VhdImage::open(img, &OpenOptions::read_only()).unwrap();
    for &(o, l, b) in WRITES {
        let mut buf = vec![0u8; l as usize];
        i.read_at(&mut buf, o).unwrap();
        assert!(buf.iter().all(|&x| x == b), "pattern {b:#x} at {o}");
    }
    run(OXEN, &["check", s(img)]);
}

#[test]
fn qemu_made_images_are_read_and_written_by_oxen() {
    let d = tempfile::tempdir().unwrap();
    for sub in ["dynamic", "fixed"] {
        let img = d.path().join(format!("q-{sub}.vhd"));
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "vpc",
                "-o",
                &format!("subformat={sub}"),
                s(&img),
                "64M",
            ],
        );
        qemu_write_patterns(&img);
        oxen_check_patterns(&img);
        // Oxen writes more into qemu's image; qemu reads both its own and Oxen's data.
        let i = VhdImage::open(&img, &OpenOptions::read_write()).unwrap();
        i.write_at(&vec![0x55; 4096], 30 * MIB).unwrap();
        i.flush().unwrap();
        drop(i);
        qemu_read_patterns(&img);
        let out = run(
            "qemu-io",
            &[
                "-f",
                "vpc",
                "-c",
                &format!("read -P 0x55 {} 4096", 30 * MIB),
                s(&img),
            ],
        );
        assert!(!out.contains("verification failed"), "{out}");
        // Whole-disk comparison: qemu's raw export equals Oxen's.
        let qraw = d.path().join(format!("q-{sub}.qemu.raw"));
        let oraw = d.path().join(format!("q-{sub}.oxen.raw"));
        run(
            "qemu-img",
            &["convert", "-f", "vpc", "-O", "raw", s(&img), s(&qraw)],
        );
        run(OXEN, &["convert", s(&img), s(&oraw)]);
        run("cmp", &[s(&qraw), s(&oraw)]);
    }
}

#[test]
fn oxen_made_images_are_read_and_written_by_qemu() {
    let d = tempfile::tempdir().unwrap();
    // Dynamic with the default and with a 512 KiB block size, and fixed.
    for (name, block) in [("dyn", 2 * MIB), ("dyn512k", 512 * 1024), ("fixed", 0)] {
        let img = d.path().join(format!("o-{name}.vhd"));
        let mut o = CreateOptions::dynamic(64 * MIB);
        o.block_size = block as u32;
        if block == 0 {
            o = CreateOptions::fixed(64 * MIB);
        }
        vhd::create(&img, &o).unwrap();
        oxen_write_patterns(&img);
        qemu_read_patterns(&img);
        let info = run("qemu-img", &["info", "-f", "vpc", "--output=json", s(&img)]);
        assert!(info.contains("\"virtual-size\": 67108864"), "{info}");
        // qemu writes into Oxen's image; Oxen reads it back and still finds the image valid.
        run(
            "qemu-io",
            &[
                "-f",
                "vpc",
                "-c",
                &format!("write -P 0x66 {} 4096", 50 * MIB),
                s(&img),
            ],
        );
        let i = VhdImage::open(&img, &OpenOptions::read_only()).unwrap();
        let mut b = vec![0u8; 4096];
        i.read_at(&mut b, 50 * MIB).unwrap();
        assert!(b.iter().all(|&x| x == 0x66));
        oxen_check_patterns(&img);
        // qemu-img compare against the raw export made by Oxen.
        let raw = d.path().join(format!("o-{name}.raw"));
        run(OXEN, &["convert", s(&img), s(&raw)]);
        run(
            "qemu-img",
            &["compare", "-f", "vpc", "-F", "raw", s(&img), s(&raw)],
        );
    }
}

#[test]
fn convert_raw_to_vhd_is_sparse_and_qemu_agrees() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("in.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(256 * MIB).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&vec![0xabu8; 3 * MIB as usize], 10 * MIB)
        .unwrap();
    f.write_all_at(&vec![0u8; 4 * MIB as usize], 100 * MIB)
        .unwrap(); // allocated zeros
    f.write_all_at(&[1u8; 512], 255 * MIB).unwrap();
    drop(f);
    let v = d.path().join("out.vhd");
    run(OXEN, &["convert", s(&raw), s(&v)]);
    let img = VhdImage::open(&v, &OpenOptions::read_only()).unwrap();
    // 10..13 MiB spans blocks 5 and 6; 255 MiB is block 127. Zero data stays unallocated.
    let blocks: Vec<u64> = img.allocated_blocks().iter().map(|b| b.0).collect();
    assert_eq!(blocks, vec![5, 6, 127]);
    run(
        "qemu-img",
        &["compare", "-f", "vpc", "-F", "raw", s(&v), s(&raw)],
    );
    let back = d.path().join("back.raw");
    run(OXEN, &["convert", s(&v), s(&back)]);
    run("cmp", &[s(&raw), s(&back)]);
    let fixed = d.path().join("fixed.vhd");
    run(OXEN, &["convert", "-O", "vhd-fixed", s(&raw), s(&fixed)]);
    run(
        "qemu-img",
        &["compare", "-f", "vpc", "-F", "raw", s(&fixed), s(&raw)],
    );
}

fn chain(d: &Path) -> (PathBuf, Vec<u8>) {
    let base = d.join("base.vhd");
    vhd::create(&base, &CreateOptions::dynamic(16 * MIB)).unwrap();
    let mut want = vec![0u8; 16 * MIB as usize];
    let put = |p: &Path, want: &mut Vec<u8>, off: u64, len: u64, b: u8| {
        let i = VhdImage::open(p, &OpenOptions::read_write()).unwrap();
        i.write_at(&vec![b; len as usize], off).unwrap();
        i.flush().unwrap();
        want[off as usize..(off + len) as usize].fill(b);
    };
    put(&base, &mut want, 0, 6 * MIB, 0x01);
    let mid = d.join("mid.vhd");
    run(OXEN, &["snapshot", "-n", s(&mid), "-p", s(&base)]);
    // 4 KiB-aligned writes: libvhdi 20210425 misreads sector bitmaps whose bytes are only partly
    // set (it takes the whole byte from the child), see docs/VHD.md.
    put(&mid, &mut want, 4096, 8192, 0x02);
    put(&mid, &mut want, 9 * MIB, 4096, 0x03);
    let top = d.join("top.vhd");
    run(OXEN, &["clone", s(&mid), s(&top)]);
    put(&top, &mut want, 8192, 4096, 0x04);
    put(&top, &mut want, 15 * MIB, MIB, 0x05);
    (top, want)
}

#[test]
fn oxen_chains_are_read_by_libvhdi() {
    let d = tempfile::tempdir().unwrap();
    let (top, want) = chain(d.path());
    let info = run("vhdiinfo", &[s(&top)]);
    assert!(info.contains("Differential"), "{info}");
    assert!(info.contains("Parent filename\t\t: mid.vhd"), "{info}");
    let f = VhdImage::open(&top, &OpenOptions::read_only())
        .unwrap()
        .footer();
    let mid_uuid = VhdImage::open(d.path().join("mid.vhd"), &OpenOptions::read_only())
        .unwrap()
        .footer()
        .uuid;
    assert!(info.contains(&vhd::uuid_string(&mid_uuid)), "{info}");
    assert!(info.contains(&vhd::uuid_string(&f.uuid)), "{info}");
    // vhdimount resolves the chain itself and exposes the virtual disk through FUSE.
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run("vhdimount", &[s(&top), s(&mnt)]);
    // vhdimount exposes every layer: vhdi1 is the base, the highest number is the image given.
    let got = std::fs::read(mnt.join("vhdi3"));
    let _ = Command::new("umount").arg(&mnt).status();
    let got = got.expect("reading vhdimount's view of the chain");
    assert_eq!(got.len(), want.len());
    assert!(got == want, "libvhdi reads different data from the chain");
}
