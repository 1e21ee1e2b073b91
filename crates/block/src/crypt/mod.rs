//! AES-XTS sector encryption, as blktap's crypto driver offered: the sector cipher and key check
//! used by encrypted VHDs, and [`CryptImage`], the same over any [`crate::DiskImage`].
//!
//! Key file: 64 raw bytes, or 128 hexadecimal characters (whitespace ignored) — two AES-256 keys
//! for XTS. The image stores a key check value (SHA-256 over a domain string, a random salt and
//! the key), so a wrong key is refused before any data is decrypted.

use std::path::Path;

mod image;
pub use image::CryptImage;

use aes::cipher::KeyInit;
use aes::Aes256;
use sha2::{Digest, Sha256};
use xts_mode::{get_tweak_default, Xts128};

use crate::{Error, Result};

/// Length of an XTS-AES-256 key.
pub const KEY_LEN: usize = 64;
const SECTOR: usize = 512;

/// A 512-bit XTS key.
#[derive(Clone)]
pub struct Key([u8; KEY_LEN]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// Key from raw bytes.
    pub fn from_bytes(b: [u8; KEY_LEN]) -> Key {
        Key(b)
    }

    /// A fresh random key.
    pub fn generate() -> Result<Key> {
        let mut k = [0u8; KEY_LEN];
        getrandom::getrandom(&mut k)
            .map_err(|e| Error::io("reading random bytes for a key", std::io::Error::other(e)))?;
        Ok(Key(k))
    }

    /// Parses a key file's contents (raw or hex).
    pub fn parse(data: &[u8]) -> Result<Key> {
        if data.len() == KEY_LEN {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(data);
            return Ok(Key(k));
        }
        let text: Vec<u8> = data
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if text.len() != KEY_LEN * 2 {
            return Err(Error::InvalidArgument(format!(
                "key file must hold {KEY_LEN} raw bytes or {} hex digits, found {} bytes",
                KEY_LEN * 2,
                data.len()
            )));
        }
        let mut k = [0u8; KEY_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            let s = std::str::from_utf8(pair).ok();
            k[i] = s
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| Error::InvalidArgument("key file has a non-hex character".into()))?;
        }
        Ok(Key(k))
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Key> {
        let data = std::fs::read(path)
            .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
        Key::parse(&data)
    }

    /// The key as hex, the format `oxen-vhd keygen` writes.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Key check value for `salt`.
    pub fn check_value(&self, salt: &[u8; 16]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"oxen-vhd key check v1");
        h.update(salt);
        h.update(self.0);
        h.finalize().into()
    }
}

/// Key check value: stored with an encrypted image so a wrong key is refused before any data is
/// decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTag {
    /// Random salt mixed into the check value.
    pub salt: [u8; 16],
    /// SHA-256 over a domain string, the salt and the key.
    pub check: [u8; 32],
}

impl KeyTag {
    /// A fresh tag (new random salt) for `key`.
    pub fn new(key: &Key) -> Result<KeyTag> {
        let mut salt = [0u8; 16];
        getrandom::getrandom(&mut salt)
            .map_err(|e| Error::io("reading random bytes", std::io::Error::other(e)))?;
        Ok(KeyTag {
            salt,
            check: key.check_value(&salt),
        })
    }

    /// Whether `key` is the key this tag was made for.
    pub fn matches(&self, key: &Key) -> bool {
        key.check_value(&self.salt) == self.check
    }
}

/// Encrypts and decrypts whole sectors; the tweak is the virtual sector number, so the same data
/// at the same place encrypts the same in every image of a chain.
pub struct SectorCipher {
    xts: Xts128<Aes256>,
}

impl std::fmt::Debug for SectorCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SectorCipher(AES-256-XTS)")
    }
}

impl SectorCipher {
    /// Cipher for `key`.
    pub fn new(key: &Key) -> SectorCipher {
        let c1 = Aes256::new_from_slice(&key.0[..32]).expect("32-byte AES key");
        let c2 = Aes256::new_from_slice(&key.0[32..]).expect("32-byte AES key");
        SectorCipher {
            xts: Xts128::new(c1, c2),
        }
    }

    /// Encrypts `data` (whole sectors) in place; `first_sector` is its virtual sector number.
    pub fn encrypt(&self, data: &mut [u8], first_sector: u64) {
        debug_assert_eq!(data.len() % SECTOR, 0);
        self.xts
            .encrypt_area(data, SECTOR, u128::from(first_sector), get_tweak_default);
    }

    /// Decrypts `data` (whole sectors) in place.
    pub fn decrypt(&self, data: &mut [u8], first_sector: u64) {
        debug_assert_eq!(data.len() % SECTOR, 0);
        self.xts
            .decrypt_area(data, SECTOR, u128::from(first_sector), get_tweak_default);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tweak() {
        let key = Key::from_bytes([5; KEY_LEN]);
        let c = SectorCipher::new(&key);
        let plain = vec![0xabu8; 1024];
        let mut a = plain.clone();
        c.encrypt(&mut a, 10);
        assert_ne!(a, plain);
        // The second sector encrypted alone at sector 11 matches: the tweak is per sector.
        let mut b = plain[512..].to_vec();
        c.encrypt(&mut b, 11);
        assert_eq!(&a[512..], &b[..]);
        c.decrypt(&mut a, 10);
        assert_eq!(a, plain);
    }

    #[test]
    fn key_parsing() {
        let k = Key::generate().unwrap();
        let hex = k.to_hex() + "\n";
        let k2 = Key::parse(hex.as_bytes()).unwrap();
        assert_eq!(k.0, k2.0);
        assert!(Key::parse(b"short")
            .unwrap_err()
            .to_string()
            .contains("hex digits"));
        let salt = [1; 16];
        assert_ne!(
            k.check_value(&salt),
            Key::from_bytes([0; 64]).check_value(&salt)
        );
    }
}
