//! Loads a Linux kernel (bzImage or ELF vmlinux, see [`crate::kernel`]), its initrd and command
//! line, and writes the zero page, following Documentation/arch/x86/boot.rst.
//!
//! Loading is split so that the slow part, [`load_images`] (reading, unpacking and copying the
//! kernel and initrd), can run on its own thread ([`spawn`]) while the VM is set up; the zero
//! page, which needs the ACPI tables' address, is written after ([`write_boot_params`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use arch::layout::{self, CMDLINE, CMDLINE_MAX, HIGH_RAM_START, ZERO_PAGE};
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use vm_memory::{Bytes, GuestAddress};

use crate::kcache::KernelCache;
use crate::kernel::{self, Kernel};
use crate::memory::GuestRam;
use crate::payload;
use crate::timing::Phases;
use crate::{Error, Result};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Initrd limit for kernels whose header does not say (protocol < 2.03).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// Command-line limit for kernels whose header does not say.
const DEFAULT_CMDLINE_SIZE: usize = 2048;

/// What the boot vCPU needs after loading.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// 64-bit entry point.
    pub entry: u64,
}

/// The kernel and initrd in guest memory.
#[derive(Debug, Clone)]
pub struct Images {
    /// The kernel.
    pub kernel: Kernel,
    /// Guest-physical address and size of the initrd.
    pub initrd: Option<(u64, u64)>,
}

fn open(what: &str, path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::Boot(format!("{what} {}: {e}", path.display())))
}

/// Reads the initrd at `path` into the top of low RAM, below `max`.
fn load_initrd(ram: &GuestRam, path: &Path, max: u64) -> Result<(u64, u64)> {
    let mut phases = Phases::start("initrd");
    let mut f = open("ramdisk", path)?;
    let size = f
        .metadata()
        .map_err(|e| Error::Boot(format!("ramdisk {}: {e}", path.display())))?
        .len();
    let top = layout::low_ram_end(ram.size()).min(max + 1);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= HIGH_RAM_START);
    let Some(addr) = addr else {
        return Err(Error::Boot(format!(
            "ramdisk {} ({} MiB) does not fit in guest memory below {top:#x}; give the domain more memory",
            path.display(),
            size >> 20,
        )));
    };
    ram.mem
        .read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| Error::Boot(format!("reading ramdisk {}: {e}", path.display())))?;
    phases.lap("reading the initrd");
    Ok((addr, size))
}

fn panicked(what: &str, payload: Box<dyn std::any::Any + Send>) -> Error {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::Boot(format!("{what} panicked: {msg}"))
}

/// Loads the kernel and, on a second thread, the initrd. `cache` is the unpacked-kernel cache.
pub fn load_images(
    ram: &GuestRam,
    kernel_path: &Path,
    initrd: Option<&Path>,
    cache: Option<&KernelCache>,
) -> Result<Images> {
    let mut phases = Phases::start("kernel");
    let image = std::fs::read(kernel_path)
        .map_err(|e| Error::Boot(format!("kernel {}: {e}", kernel_path.display())))?;
    phases.lap("reading the kernel");
    let max = payload::setup_header_of(&image)
        .map(|h| u64::from(h.initrd_addr_max))
        .filter(|m| *m != 0)
        .unwrap_or(DEFAULT_INITRD_ADDR_MAX);
    let (kernel, initrd_addr) = std::thread::scope(|s| {
        let job = initrd.map(|p| {
            std::thread::Builder::new()
                .name("initrd-load".into())
                .spawn_scoped(s, move || load_initrd(ram, p, max))
        });
        let kernel = kernel::load(ram, kernel_path, &image, cache, &mut phases);
        let initrd = match job {
            None => Ok(None),
            Some(Err(e)) => Err(Error::Os {
                what: "spawning the initrd loader",
                source: e,
            }),
            Some(Ok(h)) => h
                .join()
                .map_err(|p| panicked("loading the initrd", p))
                .and_then(|r| r.map(Some)),
        };
        (kernel, initrd)
    });
    let (kernel, initrd_addr) = (kernel?, initrd_addr?);
    if let (Some((addr, size)), Some(path)) = (initrd_addr, initrd) {
        if addr < kernel.range.end {
            return Err(Error::Boot(format!(
                "ramdisk {} ({} MiB) does not fit in guest memory after the kernel (which ends at {:#x}); give the domain more memory",
                path.display(),
                size >> 20,
                kernel.range.end
            )));
        }
    }
    Ok(Images {
        kernel,
        initrd: initrd_addr,
    })
}

/// [`load_images`] running on its own thread.
#[derive(Debug)]
pub struct Loading(JoinHandle<Result<Images>>);

/// Starts [`load_images`] on a thread; guest memory is shared with the caller, who writes
/// only other ranges (ACPI and boot tables below 1 MiB) until [`Loading::join`].
pub fn spawn(
    ram: Arc<GuestRam>,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    cache: Option<KernelCache>,
) -> Result<Loading> {
    std::thread::Builder::new()
        .name("kernel-load".into())
        .spawn(move || load_images(&ram, &kernel, initrd.as_deref(), cache.as_ref()))
        .map(Loading)
        .map_err(|source| Error::Os {
            what: "spawning the kernel loader",
            source,
        })
}

impl Loading {
    /// Waits for the images; a panic in the loader is an error.
    pub fn join(self) -> Result<Images> {
        self.0
            .join()
            .map_err(|p| panicked("loading the kernel", p))?
    }
}

/// Writes the command line and the zero page for `images`. `rsdp` is the ACPI root pointer.
pub fn write_boot_params(ram: &GuestRam, images: &Images, cmdline: &str, rsdp: u64) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(hdr) = images.kernel.header {
        params.hdr = hdr;
    } else {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;

    // Command line, bounded by what this kernel accepts.
    let limit = match params.hdr.cmdline_size {
        0 => DEFAULT_CMDLINE_SIZE,
        n => (n as usize).min(CMDLINE_MAX - 1),
    };
    if cmdline.len() > limit {
        return Err(Error::Boot(format!(
            "the command line is {} bytes long; this kernel accepts at most {limit}",
            cmdline.len()
        )));
    }
    let mut cl = Cmdline::new(limit + 1).map_err(|e| Error::Boot(format!("command line: {e}")))?;
    if !cmdline.is_empty() {
        cl.insert_str(cmdline)
            .map_err(|e| Error::Boot(format!("command line: {e}")))?;
    }
    linux_loader::loader::load_cmdline(&ram.mem, GuestAddress(CMDLINE), &cl)
        .map_err(|e| Error::Boot(format!("writing the command line: {e}")))?;
    params.hdr.cmd_line_ptr = CMDLINE as u32;
    params.hdr.cmdline_size = cmdline.len() as u32 + 1;

    if let Some((addr, size)) = images.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let map = layout::e820_map(ram.size());
    for (i, (addr, size, ty)) in map.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *ty as u32,
        };
    }
    params.e820_entries = map.len() as u8;
    params.acpi_rsdp_addr = rsdp;

    LinuxBootConfigurator::write_bootparams::<vm_memory::GuestMemoryMmap>(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE)),
        &ram.mem,
    )
    .map_err(|e| Error::Boot(format!("writing the zero page: {e}")))
}

/// Loads everything (without the cache, on this thread) and writes the zero page.
pub fn load(
    ram: &GuestRam,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    rsdp: u64,
) -> Result<Loaded> {
    let images = load_images(ram, kernel, initrd, None)?;
    write_boot_params(ram, &images, cmdline, rsdp)?;
    Ok(Loaded {
        entry: images.kernel.entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn missing_kernel_is_named() {
        let ram = GuestRam::new(32 << 20).unwrap();
        let e = load(&ram, Path::new("/nonexistent/vmlinuz"), None, "", 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel /nonexistent/vmlinuz: No such file"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_not_a_kernel() {
        let ram = GuestRam::new(32 << 20).unwrap();
        let f = temp(&[0x42; 8192]);
        let e = load(&ram, f.path(), None, "", 0).unwrap_err().to_string();
        assert!(
            e.contains("is not a loadable bzImage or ELF vmlinux"),
            "{e}"
        );
        let empty = temp(&[]);
        let e = load(&ram, empty.path(), None, "", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a loadable"), "{e}");
        let mut elf = b"\x7fELF".to_vec();
        elf.write_all(&[0u8; 100]).unwrap();
        let e = load(&ram, temp(&elf).path(), None, "", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a loadable"), "{e}");
    }

    #[test]
    fn loads_kernel_and_initrd_side_by_side() {
        let ram = Arc::new(GuestRam::new(64 << 20).unwrap());
        let vmlinux = crate::elf::tests::elf(&[(0x100_0000, vec![0x90; 5000], 0x10_0000)]);
        let initrd: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (k, i) = (temp(&vmlinux), temp(&initrd));
        let images = spawn(
            ram.clone(),
            k.path().to_path_buf(),
            Some(i.path().to_path_buf()),
            None,
        )
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(images.kernel.entry, 0x100_0000);
        let (addr, size) = images.initrd.unwrap();
        assert_eq!(size, initrd.len() as u64);
        assert!(addr >= 0x110_0000 && addr + size <= 64 << 20);
        let mut back = vec![0u8; initrd.len()];
        ram.mem.read_slice(&mut back, GuestAddress(addr)).unwrap();
        assert_eq!(back, initrd);
        write_boot_params(&ram, &images, "console=ttyS0", 0xe0000).unwrap();
        let params: boot_params = ram.mem.read_obj(GuestAddress(ZERO_PAGE)).unwrap();
        assert_eq!({ params.hdr.ramdisk_image } as u64, addr);
        assert_eq!({ params.acpi_rsdp_addr }, 0xe0000);

        // A ramdisk that does not fit is named.
        let small = Arc::new(GuestRam::new(32 << 20).unwrap());
        let big = temp(&vec![1u8; 40 << 20]);
        let e = spawn(small, k.path().into(), Some(big.path().into()), None)
            .unwrap()
            .join()
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not fit"), "{e}");
    }

    #[test]
    fn a_panicking_loader_is_an_error() {
        let job = Loading(std::thread::spawn(|| -> Result<Images> {
            panic!("boom");
        }));
        let e = job.join().unwrap_err().to_string();
        assert!(e.contains("loading the kernel panicked: boom"), "{e}");
    }
}
