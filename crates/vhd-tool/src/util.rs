//! Helpers shared by the commands: sizes, keys, progress bars, image kinds.

use std::path::Path;

use anyhow::{Context, Result};
use block::crypt::Key;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Parses "10G", "512M", "4k", "1048576" (binary units).
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid size {s:?} (use e.g. 512M, 10G)"))?;
    n.checked_mul(mult)
        .with_context(|| format!("size {s:?} is too large"))
}

/// Reads an optional key file.
pub fn load_key(p: Option<&Path>) -> Result<Option<Key>> {
    p.map(|p| Key::from_file(p).with_context(|| format!("loading key {}", p.display())))
        .transpose()
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
