//! A streaming loader for the ELF64 vmlinux: it reads the file front to back once (so it can
//! take a decompressor's output without holding it in memory) and hands the loadable bytes to a
//! [`Sink`], skipping whole pages of zeros: guest RAM starts out zeroed, so writing them would
//! only fault in pages (a vmlinux's `.bss` is stored as zeros; a quarter of Debian's).

use std::io::{self, Read};
use std::ops::Range;

/// Granularity of the zero-page check (guest pages).
pub(crate) const PAGE: u64 = 4096;
/// Bytes read from the stream at a time.
const CHUNK: usize = 1 << 20;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
/// More program headers than any kernel has: refuse instead of allocating for garbage.
const MAX_PHDRS: usize = 64;
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;

/// Why a stream could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The stream does not start with an ELF header.
    NotElf,
    /// An ELF file this loader refuses, a read error or a write error (the message says which).
    Bad(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::NotElf => f.write_str("not an ELF file"),
            LoadError::Bad(m) => f.write_str(m),
        }
    }
}

fn bad(msg: impl Into<String>) -> LoadError {
    LoadError::Bad(msg.into())
}

/// What was loaded: the entry point and the guest range the kernel occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// 64-bit entry point (physical; a vmlinux's `e_entry`).
    pub entry: u64,
    /// Lowest guest-physical byte of any loadable segment.
    pub start: u64,
    /// One past the highest guest-physical byte of any segment, `.bss` included.
    pub end: u64,
}

/// Receives a segment's non-zero data, page run by page run, in stream order.
pub trait Sink {
    /// `data` belongs at guest-physical `gpa`.
    fn write(&mut self, gpa: u64, data: &[u8]) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    paddr: u64,
    filesz: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

/// A reader that knows its position, so it can skip forward to an offset.
struct Stream<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Stream<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), LoadError> {
        self.inner.read_exact(buf).map_err(|e| {
            bad(format!(
                "reading {} bytes at offset {:#x}: {e}",
                buf.len(),
                self.pos
            ))
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip_to(&mut self, offset: u64) -> Result<(), LoadError> {
        let n = offset - self.pos;
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
            .map_err(|e| bad(format!("reading up to offset {offset:#x}: {e}")))?;
        if copied != n {
            return Err(bad(format!("the file ends before offset {offset:#x}")));
        }
        self.pos = offset;
        Ok(())
    }
}

/// Whether `b` is all zeros (vectorised per 64 bytes, early exit on the first non-zero block).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    b.chunks(64).all(|c| c.iter().fold(0u8, |a, x| a | x) == 0)
}

/// Passes the non-zero pages of `data` (which belongs at `gpa`) to `sink`, in runs.
fn write_nonzero(sink: &mut dyn Sink, gpa: u64, data: &[u8]) -> io::Result<()> {
    let mut run: Option<usize> = None; // start of the current non-zero run in `data`
    let mut at = 0usize;
    while at < data.len() {
        // Pieces end on guest page boundaries, so a skipped page is a whole zero page.
        let page_end = ((gpa + at as u64) | (PAGE - 1)) + 1 - gpa;
        let end = (page_end as usize).min(data.len());
        if is_zero(&data[at..end]) {
            if let Some(s) = run.take() {
                sink.write(gpa + s as u64, &data[s..at])?;
            }
        } else if run.is_none() {
            run = Some(at);
        }
        at = end;
    }
    if let Some(s) = run {
        sink.write(gpa + s as u64, &data[s..])?;
    }
    Ok(())
}

/// Loads the ELF64 x86-64 executable `r` into `sink`. Every segment must lie in `bounds`
/// (guest-physical), and the program headers must precede the segments in the file (as in every
/// vmlinux) so that one forward pass suffices.
pub fn load(r: impl Read, bounds: Range<u64>, sink: &mut dyn Sink) -> Result<Image, LoadError> {
    let mut s = Stream { inner: r, pos: 0 };
    let mut ehdr = [0u8; EHDR_LEN];
    // A stream shorter than the magic is not ELF; one shorter than the header is a bad ELF.
    s.read_exact(&mut ehdr[..4])
        .map_err(|_| LoadError::NotElf)?;
    if &ehdr[..4] != b"\x7fELF" {
        return Err(LoadError::NotElf);
    }
    s.read_exact(&mut ehdr[4..])?;
    if ehdr[4] != 2 || ehdr[5] != 1 || u16_at(&ehdr, 18) != EM_X86_64 {
        return Err(bad("not a little-endian 64-bit x86 ELF file"));
    }
    let entry = u64_at(&ehdr, 24);
    let phoff = u64_at(&ehdr, 32);
    let (phentsize, phnum) = (
        usize::from(u16_at(&ehdr, 54)),
        usize::from(u16_at(&ehdr, 56)),
    );
    if phentsize != PHDR_LEN || phnum == 0 || phnum > MAX_PHDRS || phoff < EHDR_LEN as u64 {
        return Err(bad(format!(
            "unusable program header table ({phnum} entries of {phentsize} bytes at {phoff:#x})"
        )));
    }
    s.skip_to(phoff)?;
    let mut table = vec![0u8; phnum * PHDR_LEN];
    s.read_exact(&mut table)?;

    let (mut start, mut end) = (u64::MAX, 0u64);
    let mut segments = Vec::new();
    for ph in table.chunks_exact(PHDR_LEN) {
        if u32_at(ph, 0) != PT_LOAD {
            continue;
        }
        let seg = Segment {
            offset: u64_at(ph, 8),
            paddr: u64_at(ph, 24),
            filesz: u64_at(ph, 32),
        };
        let memsz = u64_at(ph, 40);
        let seg_end = seg.paddr.checked_add(memsz);
        match seg_end {
            Some(e) if seg.filesz <= memsz && seg.paddr >= bounds.start && e <= bounds.end => {
                start = start.min(seg.paddr);
                end = end.max(e);
            }
            _ => {
                return Err(bad(format!(
                    "segment at {:#x} ({memsz:#x} bytes, {:#x} in the file) is not within guest RAM {:#x}..{:#x}",
                    seg.paddr, seg.filesz, bounds.start, bounds.end
                )))
            }
        }
        if seg.filesz > 0 {
            segments.push(seg);
        }
    }
    if segments.is_empty() {
        return Err(bad("no loadable segment"));
    }
    if !(start..end).contains(&entry) {
        return Err(bad(format!(
            "entry point {entry:#x} is outside the kernel ({start:#x}..{end:#x})"
        )));
    }
    segments.sort_by_key(|g| g.offset);

    let mut buf = vec![0u8; CHUNK];
    for seg in segments {
        if seg.offset < s.pos {
            return Err(bad(format!(
                "segment data at offset {:#x} overlaps the headers or another segment",
                seg.offset
            )));
        }
        s.skip_to(seg.offset)?;
        let mut done = 0u64;
        while done < seg.filesz {
            let n = (seg.filesz - done).min(CHUNK as u64) as usize;
            s.read_exact(&mut buf[..n])?;
            write_nonzero(sink, seg.paddr + done, &buf[..n])
                .map_err(|e| bad(format!("storing the segment at {:#x}: {e}", seg.paddr)))?;
            done += n as u64;
        }
    }
    Ok(Image { entry, start, end })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects what a load writes, to check it against the segments.
    #[derive(Default)]
    pub(crate) struct Collect(pub Vec<(u64, Vec<u8>)>);

    impl Sink for Collect {
        fn write(&mut self, gpa: u64, data: &[u8]) -> io::Result<()> {
            self.0.push((gpa, data.to_vec()));
            Ok(())
        }
    }

    /// An x86-64 ELF executable: `(paddr, data, memsz)` segments, laid out after the headers
    /// in the given order, with entry at the first segment.
    pub(crate) fn elf(segs: &[(u64, Vec<u8>, u64)]) -> Vec<u8> {
        let mut f = vec![0u8; EHDR_LEN + segs.len() * PHDR_LEN];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&segs[0].0.to_le_bytes());
        f[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (paddr, data, memsz)) in segs.iter().enumerate() {
            let offset = f.len().next_multiple_of(PAGE as usize);
            f.resize(offset, 0);
            f.extend_from_slice(data);
            let ph = EHDR_LEN + i * PHDR_LEN;
            f[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            f[ph + 8..ph + 16].copy_from_slice(&(offset as u64).to_le_bytes());
            f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            f[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        f
    }

    /// Bytes with whole zero pages and a non-page-multiple length.
    pub(crate) fn patterned(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if (i / PAGE as usize) % 3 == 1 {
                    0
                } else {
                    (i % 251) as u8 ^ seed
                }
            })
            .collect()
    }

    #[test]
    fn loads_segments_and_skips_zero_pages() {
        let a = patterned(5 * PAGE as usize + 100, 1);
        let b = patterned(3 * PAGE as usize, 7);
        let file = elf(&[
            (0x100_0000, a.clone(), a.len() as u64 + 0x5000),
            (0x200_0800, b.clone(), b.len() as u64),
        ]);
        let mut sink = Collect::default();
        let img = load(&file[..], 0x10_0000..0x400_0000, &mut sink).unwrap();
        assert_eq!(
            img,
            Image {
                entry: 0x100_0000,
                start: 0x100_0000,
                end: 0x200_0800 + b.len() as u64
            }
        );
        // Rebuild both segments from the writes: zero pages were skipped, the rest is exact.
        let mut mem = vec![0u8; 0x400_0000];
        let mut written = 0;
        for (gpa, data) in &sink.0 {
            assert!(!is_zero(data));
            mem[*gpa as usize..*gpa as usize + data.len()].copy_from_slice(data);
            written += data.len();
        }
        assert_eq!(&mem[0x100_0000..0x100_0000 + a.len()], &a[..]);
        assert_eq!(&mem[0x200_0800..0x200_0800 + b.len()], &b[..]);
        assert!(written < a.len() + b.len(), "zero pages were written");
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        let mut sink = Collect::default();
        let ok = elf(&[(0x100_0000, vec![1; 100], 100)]);
        assert!(matches!(
            load(&b"MZ"[..], 0..u64::MAX, &mut sink),
            Err(LoadError::NotElf)
        ));
        let e = load(&ok[..], 0x200_0000..0x300_0000, &mut sink).unwrap_err();
        assert!(e.to_string().contains("not within guest RAM"), "{e}");
        let e = load(&ok[..ok.len() - 1], 0..u64::MAX, &mut sink).unwrap_err();
        assert!(e.to_string().contains("reading"), "{e}");
        let mut bad_class = ok.clone();
        bad_class[4] = 1;
        assert!(load(&bad_class[..], 0..u64::MAX, &mut sink).is_err());
        let mut many = ok.clone();
        many[56..58].copy_from_slice(&1000u16.to_le_bytes());
        assert!(load(&many[..], 0..u64::MAX, &mut sink).is_err());
        let mut bad_entry = ok;
        bad_entry[24..32].copy_from_slice(&0x10u64.to_le_bytes());
        let e = load(&bad_entry[..], 0..u64::MAX, &mut sink).unwrap_err();
        assert!(e.to_string().contains("entry point"), "{e}");
    }
}
