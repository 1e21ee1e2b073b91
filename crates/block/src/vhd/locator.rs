//! Parent locators: where a differencing disk records the path of its parent.
//!
//! Oxen writes three: `W2ru` (relative, UTF-16LE, as Windows and libvhdi expect), `W2ku`
//! (absolute, UTF-16LE) and `MacX` (relative `file://` URL in UTF-8, as blktap's vhd-util writes).

use std::path::{Component, Path, PathBuf};

use super::util::{be32, be64, put32, put64, utf16_decode, utf16_encode};

/// Number of locator slots in the dynamic header.
pub const LOCATOR_COUNT: usize = 8;
/// Size of one locator entry.
pub const LOCATOR_SIZE: usize = 24;
/// Largest locator payload we read (a path, so a few KiB is plenty).
pub const MAX_LOCATOR_DATA: u32 = 64 * 1024;

/// One parent locator entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locator {
    /// Platform code such as `W2ru`, or zeros for an unused slot.
    pub code: [u8; 4],
    /// Space reserved for the payload (bytes if a multiple of 512, else sectors).
    pub data_space: u32,
    /// Payload length in bytes.
    pub data_len: u32,
    /// Absolute file offset of the payload.
    pub data_offset: u64,
}

impl Locator {
    pub(crate) fn parse(b: &[u8]) -> Locator {
        let mut code = [0u8; 4];
        code.copy_from_slice(&b[0..4]);
        Locator {
            code,
            data_space: be32(b, 4),
            data_len: be32(b, 8),
            data_offset: be64(b, 16),
        }
    }

    pub(crate) fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.code);
        put32(b, 4, self.data_space);
        put32(b, 8, self.data_len);
        put64(b, 16, self.data_offset);
    }

    /// Whether the slot is in use.
    pub fn is_used(&self) -> bool {
        self.code != [0; 4]
    }

    /// Reserved payload space in bytes. The specification says sectors, but Windows and blktap
    /// store bytes; like blktap, treat a multiple of 512 as bytes.
    pub fn space_bytes(&self) -> u64 {
        if self.data_space.is_multiple_of(512) {
            u64::from(self.data_space)
        } else {
            u64::from(self.data_space) * 512
        }
    }

    /// Decodes the payload into a path, relative ones resolved against `child_dir`.
    pub fn decode_path(&self, payload: &[u8], child_dir: &Path) -> Option<PathBuf> {
        let text = match &self.code {
            b"W2ru" | b"W2ku" => utf16_decode(payload, false)?,
            b"MacX" => {
                let s = std::str::from_utf8(payload).ok()?;
                s.trim_end_matches('\0')
                    .strip_prefix("file://")
                    .unwrap_or(s)
                    .to_string()
            }
            _ => return None,
        };
        if text.is_empty() {
            return None;
        }
        Some(resolve(&text, child_dir))
    }

    /// Human-readable platform code.
    pub fn code_str(&self) -> String {
        String::from_utf8_lossy(&self.code).to_string()
    }
}

/// Turns a path as stored in an image (maybe with backslashes or a `.\` prefix) into a host path.
pub(crate) fn resolve(text: &str, child_dir: &Path) -> PathBuf {
    let unix = text.replace('\\', "/");
    let p = Path::new(&unix);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        child_dir.join(p)
    };
    // Drop "." components (".\\name" in W2ru) so the paths shown to users are clean.
    full.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Encodes the locator payloads for a parent at `parent` seen from a child in `child_dir`.
/// Returns (code, payload) pairs.
pub(crate) fn payloads(parent: &Path, child_dir: &Path) -> Vec<([u8; 4], Vec<u8>)> {
    let rel = relative_path(parent, child_dir);
    let rel_win = format!(".\\{}", rel.replace('/', "\\"));
    let abs = parent.to_string_lossy().to_string();
    vec![
        (*b"W2ru", utf16_encode(&rel_win, false)),
        (*b"W2ku", utf16_encode(&abs, false)),
        (*b"MacX", format!("file://./{rel}").into_bytes()),
    ]
}

/// Path of `target` relative to directory `base` (both absolute), using `..` as needed.
pub(crate) fn relative_path(target: &Path, base: &Path) -> String {
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/b/p.vhd"), Path::new("/a/b")),
            "p.vhd"
        );
        assert_eq!(
            relative_path(Path::new("/a/x/p.vhd"), Path::new("/a/b/c")),
            "../../x/p.vhd"
        );
    }

    #[test]
    fn payloads_decode_back() {
        let dir = Path::new("/imgs/child");
        let parent = Path::new("/imgs/base/p.vhd");
        for (code, data) in payloads(parent, dir) {
            let l = Locator {
                code,
                data_space: 512,
                data_len: data.len() as u32,
                data_offset: 0,
            };
            let got = l.decode_path(&data, dir).unwrap();
            let norm: PathBuf = got.components().fold(PathBuf::new(), |mut acc, c| {
                match c {
                    Component::ParentDir => {
                        acc.pop();
                    }
                    Component::CurDir => {}
                    other => acc.push(other),
                }
                acc
            });
            assert_eq!(norm, parent, "code {}", l.code_str());
        }
    }
}
