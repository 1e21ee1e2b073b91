//! AES-XTS over any image: every sector of the inner image is stored encrypted.

use super::{Key, KeyTag, SectorCipher};
use crate::{DiskImage, Error, Result, SECTOR_SIZE};

/// An encrypting view of another image (a raw file, a VHD chain, ...).
///
/// Every sector below is ciphertext, so the inner image must start out written with encrypted
/// zeros: use [`CryptImage::format`] on a new image. (Encrypted VHDs do not need this: they
/// encrypt per layer and know which sectors were never written.)
#[derive(Debug)]
pub struct CryptImage<D> {
    inner: D,
    cipher: SectorCipher,
}

fn check_aligned(offset: u64, len: u64) -> Result<()> {
    if !offset.is_multiple_of(SECTOR_SIZE) || !len.is_multiple_of(SECTOR_SIZE) {
        return Err(Error::Unaligned { offset, len });
    }
    Ok(())
}

impl<D: DiskImage> CryptImage<D> {
    /// Wraps `inner`, refusing a key that does not match `tag` (stored by the caller with the
    /// image).
    pub fn new(inner: D, key: &Key, tag: &KeyTag, name: &str) -> Result<Self> {
        if !tag.matches(key) {
            return Err(Error::WrongKey(name.to_string()));
        }
        Ok(CryptImage {
            inner,
            cipher: SectorCipher::new(key),
        })
    }

    /// Fills a new inner image with encrypted zeros and returns the view and its key tag.
    pub fn format(inner: D, key: &Key) -> Result<(Self, KeyTag)> {
        let tag = KeyTag::new(key)?;
        let img = CryptImage {
            inner,
            cipher: SectorCipher::new(key),
        };
        img.zero_fill(0, img.inner.size())?;
        Ok((img, tag))
    }

    /// The wrapped image.
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn zero_fill(&self, offset: u64, len: u64) -> Result<()> {
        let chunk = len.min(1 << 20) as usize;
        let zeros = vec![0u8; chunk];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk as u64) as usize;
            self.write_at(&zeros[..n], offset + done)?;
            done += n as u64;
        }
        Ok(())
    }
}

impl<D: DiskImage> DiskImage for CryptImage<D> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_aligned(offset, buf.len() as u64)?;
        self.inner.read_at(buf, offset)?;
        self.cipher.decrypt(buf, offset / SECTOR_SIZE);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_aligned(offset, buf.len() as u64)?;
        let mut tmp = buf.to_vec();
        self.cipher.encrypt(&mut tmp, offset / SECTOR_SIZE);
        self.inner.write_at(&tmp, offset)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn flush_unsynced(&self) -> Result<()> {
        self.inner.flush_unsynced()
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        // Zero bytes below would decrypt to noise: the discarded range gets encrypted zeros.
        check_aligned(offset, len)?;
        self.zero_fill(offset, len)
    }

    fn resize(&self, new_size: u64) -> Result<()> {
        check_aligned(new_size, 0)?;
        let old = self.inner.size();
        self.inner.resize(new_size)?;
        if new_size > old {
            self.zero_fill(old, new_size - old)?;
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawImage;

    #[test]
    fn encrypts_raw_images_and_refuses_wrong_keys() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.img");
        let key = Key::generate().unwrap();
        let (img, tag) = CryptImage::format(RawImage::create(&p, 64 << 10).unwrap(), &key).unwrap();
        let mut b = vec![1u8; 4096];
        img.read_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|&x| x == 0), "a formatted image reads zeros");
        img.write_at(&[0x42; 1024], 2048).unwrap();
        img.discard(2048, 512).unwrap();
        img.resize(128 << 10).unwrap();
        img.flush().unwrap();
        drop(img);
        let raw = std::fs::read(&p).unwrap();
        assert!(
            !raw.windows(512).any(|w| w.iter().all(|&x| x == 0x42)),
            "plaintext on disk"
        );
        let again = CryptImage::new(RawImage::open(&p, false).unwrap(), &key, &tag, "r").unwrap();
        let mut all = vec![0u8; 128 << 10];
        again.read_at(&mut all, 0).unwrap();
        assert!(all[..2560].iter().all(|&x| x == 0));
        assert!(all[2560..3072].iter().all(|&x| x == 0x42));
        assert!(all[3072..].iter().all(|&x| x == 0));
        assert!(matches!(
            again.read_at(&mut all[..100], 0),
            Err(Error::Unaligned { .. })
        ));
        let wrong = Key::generate().unwrap();
        let e = CryptImage::new(RawImage::open(&p, false).unwrap(), &wrong, &tag, "r.img");
        assert!(matches!(e, Err(Error::WrongKey(_))));
    }
}
