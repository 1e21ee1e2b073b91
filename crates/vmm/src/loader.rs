//! Loads a Linux kernel (bzImage or ELF vmlinux), its initrd and command line, and writes the
//! zero page, following Documentation/arch/x86/boot.rst.

use std::fs::File;
use std::io::Cursor;
use std::path::Path;

use arch::layout::{self, CMDLINE, CMDLINE_MAX, HIGH_RAM_START, ZERO_PAGE};
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestRam;
use crate::payload;
use crate::{Error, Result};

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// Initrd limit for kernels whose header does not say (protocol < 2.03).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;
/// Largest vmlinux we unpack on the host (a decompression bomb gets no further).
const MAX_UNPACKED_KERNEL: u64 = 1 << 30;
/// Command-line limit for kernels whose header does not say.
const DEFAULT_CMDLINE_SIZE: usize = 2048;

/// What the boot vCPU needs after loading.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// 64-bit entry point.
    pub entry: u64,
}

fn open(what: &str, path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::Boot(format!("{what} {}: {e}", path.display())))
}

/// Loads everything and writes the zero page. `rsdp` is the ACPI root pointer.
pub fn load(
    ram: &GuestRam,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    rsdp: u64,
) -> Result<Loaded> {
    let image = std::fs::read(kernel)
        .map_err(|e| Error::Boot(format!("kernel {}: {e}", kernel.display())))?;
    let bad_kernel = |e: linux_loader::loader::Error| {
        Error::Boot(format!(
            "kernel {} is not a loadable bzImage or ELF vmlinux: {e}",
            kernel.display()
        ))
    };
    let highmem = Some(GuestAddress(HIGH_RAM_START));
    let load_elf =
        |elf: &[u8]| Elf::load(&ram.mem, None, &mut Cursor::new(elf), highmem).map_err(bad_kernel);

    // An ELF vmlinux loads as is; a bzImage whose payload we can unpack loads as the vmlinux
    // inside it, keeping the bzImage's setup header; anything else boots the classic way, with
    // the guest decompressing itself.
    let (result, entry, header) = if image.starts_with(b"\x7fELF") {
        let r = load_elf(&image)?;
        (r, r.kernel_load.0, None)
    } else {
        let limit = ram.size().min(MAX_UNPACKED_KERNEL);
        match payload::decompress(&image, limit) {
            Ok(vmlinux) => {
                let r = load_elf(&vmlinux)?;
                (r, r.kernel_load.0, payload::setup_header_of(&image))
            }
            Err(skip) => {
                // A corrupt or oversized payload is worth a warning: the guest's own
                // decompressor makes the boot several times slower.
                if matches!(skip, payload::Skip::Bad(_)) {
                    tracing::warn!(?skip, "booting the bzImage with its own decompressor");
                } else {
                    tracing::debug!(?skip, "booting the bzImage with its own decompressor");
                }
                let r = BzImage::load(&ram.mem, None, &mut Cursor::new(&image[..]), highmem)
                    .map_err(bad_kernel)?;
                (r, r.kernel_load.0 + BZIMAGE_64BIT_ENTRY, r.setup_header)
            }
        }
    };

    let mut params = boot_params::default();
    if let Some(hdr) = header {
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

    let mem_bytes = ram.size();
    if let Some(path) = initrd {
        let mut f = open("ramdisk", path)?;
        let size = f
            .metadata()
            .map_err(|e| Error::Boot(format!("ramdisk {}: {e}", path.display())))?
            .len();
        let max = match u64::from(params.hdr.initrd_addr_max) {
            0 => DEFAULT_INITRD_ADDR_MAX,
            m => m,
        };
        let top = layout::low_ram_end(mem_bytes).min(max + 1);
        let kernel_end = result.kernel_load.0 + result.kernel_end;
        let addr = top
            .checked_sub(size)
            .map(|a| a & !0xfff)
            .filter(|a| *a >= kernel_end.max(HIGH_RAM_START));
        let Some(addr) = addr else {
            return Err(Error::Boot(format!(
                "ramdisk {} ({} MiB) does not fit in guest memory below {:#x} after the kernel; give the domain more memory",
                path.display(),
                size >> 20,
                top
            )));
        };
        ram.mem
            .read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
            .map_err(|e| Error::Boot(format!("reading ramdisk {}: {e}", path.display())))?;
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }

    let map = layout::e820_map(mem_bytes);
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
    .map_err(|e| Error::Boot(format!("writing the zero page: {e}")))?;
    Ok(Loaded { entry })
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
}
