//! Host-side decompression of a bzImage's payload.
//!
//! A bzImage carries the real kernel, an ELF vmlinux, compressed; normally a decompressor inside
//! the guest unpacks it before Linux starts. In a guest every page that decompressor touches is
//! a fresh nested page fault, so unpacking on the host and entering the vmlinux directly (as
//! Firecracker does with vmlinux) saves most of the time before the kernel's first instruction.
//! Formats Oxen does not unpack fall back to the guest's own decompressor.

use std::io::Read;

use linux_loader::bootparam::setup_header;
use vm_memory::ByteValued;

/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// The "HdrS" signature at 0x202.
const HDR_MAGIC_OFFSET: usize = 0x202;
/// `payload_offset` and `payload_length` exist from boot protocol 2.08.
const MIN_PROTOCOL_WITH_PAYLOAD: u16 = 0x0208;

/// Reads the setup header of a bzImage, if `image` is one.
pub fn setup_header_of(image: &[u8]) -> Option<setup_header> {
    if image.get(HDR_MAGIC_OFFSET..HDR_MAGIC_OFFSET + 4) != Some(b"HdrS") {
        return None;
    }
    let mut hdr = setup_header::default();
    let len = std::mem::size_of::<setup_header>();
    hdr.as_mut_slice()
        .copy_from_slice(image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + len)?);
    Some(hdr)
}

/// Why the payload was not unpacked on the host (the guest will do it instead).
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not a bzImage, or its header is too old to locate the payload.
    NoPayload,
    /// A compression format Oxen does not unpack.
    UnknownFormat,
    /// The stream is corrupt or bigger than `limit`.
    Bad(String),
    /// It unpacked to something other than an ELF file.
    NotElf,
}

/// A reader of the unpacked payload of bzImage `image`, producing at most `limit` bytes (a
/// longer stream reads as an error).
pub fn stream(image: &[u8], limit: u64) -> Result<Box<dyn Read + Send + '_>, Skip> {
    let hdr = setup_header_of(image).ok_or(Skip::NoPayload)?;
    if hdr.version < MIN_PROTOCOL_WITH_PAYLOAD {
        return Err(Skip::NoPayload);
    }
    // Protected-mode code starts after the boot sector and the setup sectors (0 means 4).
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + hdr.payload_offset as usize;
    let payload = image
        .get(start..start + hdr.payload_length as usize)
        .ok_or(Skip::NoPayload)?;
    let reader: Box<dyn Read + Send> = match payload {
        // Linux's build appends the unpacked size (4 bytes) after the frame: read one frame
        // only, or the decoder takes those bytes for a second, corrupt frame.
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(
            zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| Skip::Bad(format!("zstd: {e}")))?
                .single_frame(),
        ),
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(payload)),
        _ => return Err(Skip::UnknownFormat),
    };
    Ok(Box::new(Limited {
        inner: reader,
        left: limit,
        limit,
    }))
}

/// Fails a read past `left` bytes instead of ending the stream quietly.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the payload unpacks to more than {} bytes", self.limit),
            )
        })?;
        Ok(n)
    }
}

/// Unpacks the ELF vmlinux inside bzImage `image`, producing at most `limit` bytes.
pub fn decompress(image: &[u8], limit: u64) -> Result<Vec<u8>, Skip> {
    let mut out = Vec::new();
    stream(image, limit)?
        .read_to_end(&mut out)
        .map_err(|e| Skip::Bad(e.to_string()))?;
    if !out.starts_with(b"\x7fELF") {
        return Err(Skip::NotElf);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal bzImage: boot sector + 1 setup sector, then `payload` as protected-mode code.
    pub(crate) fn bzimage(payload: &[u8], version: u16) -> Vec<u8> {
        let mut img = vec![0u8; 1024];
        img[SETUP_HEADER_OFFSET] = 1; // setup_sects
        img[HDR_MAGIC_OFFSET..HDR_MAGIC_OFFSET + 4].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes()); // payload_offset
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(payload);
        img
    }

    fn elf_body() -> Vec<u8> {
        let mut v = b"\x7fELF".to_vec();
        v.extend((0..100_000u32).map(|i| (i % 251) as u8));
        v
    }

    #[test]
    fn unpacks_payloads_with_linux_size_trailer() {
        // Linux appends the unpacked size, little-endian, after the compressed stream.
        let body = elf_body();
        let mut z = zstd::encode_all(&body[..], 3).unwrap();
        z.extend_from_slice(&(body.len() as u32).to_le_bytes());
        assert_eq!(decompress(&bzimage(&z, 0x20f), 1 << 20).unwrap(), body);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        let mut gz = gz.finish().unwrap();
        gz.extend_from_slice(&(body.len() as u32).to_le_bytes());
        assert_eq!(decompress(&bzimage(&gz, 0x20f), 1 << 20).unwrap(), body);
    }

    #[test]
    fn unpacks_zstd_and_gzip_payloads() {
        let body = elf_body();
        let z = zstd::encode_all(&body[..], 3).unwrap();
        assert_eq!(decompress(&bzimage(&z, 0x20f), 1 << 20).unwrap(), body);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).unwrap();
        assert_eq!(
            decompress(&bzimage(&gz.finish().unwrap(), 0x20f), 1 << 20).unwrap(),
            body
        );
    }

    #[test]
    fn refuses_what_it_cannot_or_must_not_unpack() {
        let body = elf_body();
        let z = zstd::encode_all(&body[..], 3).unwrap();
        assert!(
            matches!(decompress(&bzimage(&z, 0x20f), 1000), Err(Skip::Bad(m)) if m.contains("more than 1000"))
        );
        assert_eq!(
            decompress(&bzimage(&z, 0x207), 1 << 20),
            Err(Skip::NoPayload)
        );
        assert_eq!(
            decompress(&bzimage(b"\x5d\x00\x00\x80xx", 0x20f), 1 << 20),
            Err(Skip::UnknownFormat)
        );
        let not_elf = zstd::encode_all(&b"hello"[..], 3).unwrap();
        assert_eq!(
            decompress(&bzimage(&not_elf, 0x20f), 1 << 20),
            Err(Skip::NotElf)
        );
        assert!(matches!(
            decompress(&bzimage(&z[..z.len() / 2], 0x20f), 1 << 20),
            Err(Skip::Bad(_))
        ));
        assert_eq!(decompress(b"garbage", 1 << 20), Err(Skip::NoPayload));
        // A payload length pointing past the end of the file.
        let mut img = bzimage(&z, 0x20f);
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decompress(&img, 1 << 20), Err(Skip::NoPayload));
    }
}
