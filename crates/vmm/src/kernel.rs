//! Puts the kernel image in guest memory: an ELF vmlinux as it is; a bzImage as the vmlinux
//! inside it, unpacked on the host (or read from the unpacked-kernel cache, [`crate::kcache`]);
//! a bzImage whose payload Oxen cannot unpack the classic way, for the guest to decompress.

use std::io::{self, Cursor};
use std::ops::Range;
use std::path::Path;

use arch::layout::{self, HIGH_RAM_START};
use linux_loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress};

use crate::elf::{self, LoadError, Sink};
use crate::kcache::{KernelCache, Key, Writer};
use crate::memory::GuestRam;
use crate::payload;
use crate::timing::Phases;
use crate::{Error, Result};

/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY: u64 = 0x200;
/// Largest vmlinux we unpack on the host (a decompression bomb gets no further).
const MAX_UNPACKED_KERNEL: u64 = 1 << 30;

/// The kernel as loaded.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// 64-bit entry point.
    pub entry: u64,
    /// Guest-physical range the kernel occupies (for a bzImage the guest decompresses, its
    /// compressed image).
    pub range: Range<u64>,
    /// The bzImage's setup header, for the zero page.
    pub header: Option<setup_header>,
    /// Where the loaded bytes came from.
    pub source: Source,
}

/// Where a loaded kernel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An ELF vmlinux file.
    Elf,
    /// The unpacked-kernel cache.
    Cache,
    /// A bzImage's payload, unpacked on the host.
    Unpacked,
    /// A bzImage the guest decompresses.
    Bzimage,
}

/// Where a kernel may be loaded: above the BIOS area, in the RAM below the MMIO gap.
pub fn bounds(ram: &GuestRam) -> Range<u64> {
    HIGH_RAM_START..layout::low_ram_end(ram.size())
}

/// Writes the loader's output to guest memory and, on a bzImage's first boot, to the cache.
struct GuestSink<'a> {
    ram: &'a GuestRam,
    cache: Option<Writer>,
    written: Vec<(u64, u64)>,
}

impl Sink for GuestSink<'_> {
    fn write(&mut self, gpa: u64, data: &[u8]) -> io::Result<()> {
        self.ram
            .mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(io::Error::other)?;
        self.written.push((gpa, data.len() as u64));
        if let Some(c) = &mut self.cache {
            c.append(gpa, data);
        }
        Ok(())
    }
}

impl GuestSink<'_> {
    /// Zeroes what a failed load wrote, so the fallback starts from clean memory.
    fn undo(&mut self) {
        for (gpa, len) in self.written.drain(..) {
            let _ = self.ram.discard(gpa, len);
        }
    }
}

/// Loads kernel `image` (read from `path`) into `ram`.
pub fn load(
    ram: &GuestRam,
    path: &Path,
    image: &[u8],
    cache: Option<&KernelCache>,
    phases: &mut Phases,
) -> Result<Kernel> {
    let bad_kernel = |e: &dyn std::fmt::Display| {
        Error::Boot(format!(
            "kernel {} is not a loadable bzImage or ELF vmlinux: {e}",
            path.display()
        ))
    };
    let bounds = bounds(ram);
    let mut sink = GuestSink {
        ram,
        cache: None,
        written: Vec::new(),
    };
    if image.starts_with(b"\x7fELF") {
        let img = elf::load(image, bounds, &mut sink).map_err(|e| bad_kernel(&e))?;
        phases.lap("loading the ELF kernel");
        return Ok(Kernel {
            entry: img.entry,
            range: img.start..img.end,
            header: None,
            source: Source::Elf,
        });
    }

    // A bzImage whose payload we can unpack loads as the vmlinux inside it, keeping the
    // bzImage's setup header.
    let header = payload::setup_header_of(image);
    let limit = ram.size().min(MAX_UNPACKED_KERNEL);
    let skip = match payload::stream(image, limit) {
        Ok(stream) => {
            // The key costs a pass over the bzImage: only with a cache.
            let cache = cache.map(|c| {
                let key = Key::of(image);
                phases.lap("hashing the bzImage");
                (c, key)
            });
            if let Some(img) = cache
                .as_ref()
                .and_then(|(c, key)| c.load(key, ram, bounds.clone()))
            {
                phases.lap("loading the cached kernel");
                return Ok(Kernel {
                    entry: img.entry,
                    range: img.start..img.end,
                    header,
                    source: Source::Cache,
                });
            }
            sink.cache = cache.and_then(|(c, key)| c.writer(&key));
            match elf::load(stream, bounds, &mut sink) {
                Ok(img) => {
                    phases.lap("unpacking the kernel");
                    if let Some(w) = sink.cache.take() {
                        w.finish(&img);
                        phases.lap("caching the kernel");
                    }
                    return Ok(Kernel {
                        entry: img.entry,
                        range: img.start..img.end,
                        header,
                        source: Source::Unpacked,
                    });
                }
                Err(e) => {
                    sink.undo();
                    match e {
                        LoadError::NotElf => payload::Skip::NotElf,
                        LoadError::Bad(m) => payload::Skip::Bad(m),
                    }
                }
            }
        }
        Err(skip) => skip,
    };
    // The guest's own decompressor makes the boot several times slower: worth a warning when
    // the payload is broken rather than merely in a format we leave to the guest.
    if matches!(skip, payload::Skip::Bad(_)) {
        tracing::warn!(?skip, "booting the bzImage with its own decompressor");
    } else {
        tracing::debug!(?skip, "booting the bzImage with its own decompressor");
    }
    let r = BzImage::load(
        &ram.mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(HIGH_RAM_START)),
    )
    .map_err(|e| bad_kernel(&e))?;
    phases.lap("loading the bzImage");
    Ok(Kernel {
        entry: r.kernel_load.0 + BZIMAGE_64BIT_ENTRY,
        range: r.kernel_load.0..r.kernel_end,
        header: r.setup_header,
        source: Source::Bzimage,
    })
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
