//! `check` finds every problem in an image's metadata; `repair` fixes those that can be fixed
//! without guessing (footer copies, table entries that point nowhere, a footer missing after a
//! crash).

use std::path::Path;
use std::sync::Arc;

use super::bat::UNUSED;
use super::footer::{DiskType, Footer, FOOTER_SIZE};
use super::header::{DynHeader, HEADER_SIZE};
use super::image::VhdImage;
use super::open::{locator_payload, OpenOptions};
use super::util::{align_up, be32, uuid_string};
use crate::crypt::Key;
use crate::{DiskImage, Error, FileStorage, Result, Storage, SECTOR_SIZE};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, naming the structure.
    pub what: String,
    /// Whether `repair` can fix it.
    pub repairable: bool,
}

/// Result of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Problems: the image is not valid while any remain.
    pub problems: Vec<Problem>,
    /// Notes that do not make the image invalid.
    pub warnings: Vec<String>,
}

impl Report {
    /// No problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn bad(&mut self, what: impl Into<String>, repairable: bool) {
        self.problems.push(Problem {
            what: what.into(),
            repairable,
        });
    }
}

fn read(store: &dyn Storage, len: usize, off: u64) -> Option<Vec<u8>> {
    let mut b = vec![0u8; len];
    store.read_exact_at(&mut b, off).ok().map(|_| b)
}

/// What the metadata scan learnt, shared by check and repair.
struct Scan {
    footer: Option<Footer>,
    end_footer_ok: bool,
    header: Option<DynHeader>,
    bat: Vec<u32>,
    /// BAT indices whose entries are invalid.
    bad_entries: Vec<usize>,
    /// End of the last valid structure (where a footer belongs).
    used_end: u64,
}

fn scan(store: &dyn Storage, r: &mut Report, progress: &dyn Fn(u64, u64)) -> Scan {
    let mut s = Scan {
        footer: None,
        end_footer_ok: false,
        header: None,
        bat: Vec::new(),
        bad_entries: Vec::new(),
        used_end: 0,
    };
    let len = store.len().unwrap_or(0);
    if len < FOOTER_SIZE as u64 {
        r.bad(
            format!("file is {len} bytes, too short for a VHD footer"),
            false,
        );
        return s;
    }
    let end = read(store, FOOTER_SIZE, len - FOOTER_SIZE as u64).map(|b| Footer::parse(&b));
    let copy = read(store, FOOTER_SIZE, 0).map(|b| Footer::parse(&b));
    match (end, copy) {
        (Some(Ok(f)), copy) => {
            s.end_footer_ok = true;
            if f.disk_type != DiskType::Fixed {
                match copy {
                    Some(Ok(c)) if c == f => {}
                    Some(Ok(_)) => r.bad("footer copy at offset 0 differs from the footer", true),
                    Some(Err(e)) => r.bad(format!("footer copy at offset 0: {e}"), true),
                    None => r.bad("footer copy at offset 0 unreadable", true),
                }
            }
            s.footer = Some(f);
        }
        (Some(Err(e)), Some(Ok(c))) if c.disk_type != DiskType::Fixed => {
            r.bad(
                format!("footer at the end of the file: {e} (the copy at offset 0 is valid)"),
                true,
            );
            s.footer = Some(c);
        }
        (Some(Err(e)), _) => {
            r.bad(format!("footer: {e}"), false);
            return s;
        }
        (None, _) => {
            r.bad("footer unreadable", false);
            return s;
        }
    }
    let Some(f) = s.footer.clone() else { return s };
    let foot_off = if s.end_footer_ok {
        len - FOOTER_SIZE as u64
    } else {
        len
    };
    if f.disk_type == DiskType::Fixed {
        if foot_off != f.current_size {
            r.bad(
                format!(
                    "fixed disk of {} bytes but the file holds {} data bytes",
                    f.current_size, foot_off
                ),
                foot_off > f.current_size,
            );
        }
        s.used_end = f.current_size;
        return s;
    }
    let hoff = f.data_offset;
    let Some(hb) = hoff
        .is_multiple_of(SECTOR_SIZE)
        .then(|| read(store, HEADER_SIZE, hoff))
        .flatten()
    else {
        r.bad(
            format!("dynamic header offset {hoff:#x} is outside the file or unaligned"),
            false,
        );
        return s;
    };
    let h = match DynHeader::parse(&hb) {
        Ok(h) => h,
        Err(e) => {
            r.bad(format!("dynamic header: {e}"), false);
            return s;
        }
    };
    let bs = u64::from(h.block_size);
    if u64::from(h.max_table_entries) * bs < f.current_size {
        r.bad(
            format!(
                "BAT has {} entries of {bs} bytes, less than the disk size {}",
                h.max_table_entries, f.current_size
            ),
            false,
        );
    }
    let bat_bytes = h.bat_bytes();
    if u64::from(h.max_table_entries) * bs > super::MAX_DISK_SIZE + bs {
        r.bad(
            format!("BAT claims {} entries, an absurd size", h.max_table_entries),
            false,
        );
        s.header = Some(h);
        return s;
    }
    let Some(raw) = read(store, bat_bytes as usize, h.table_offset) else {
        r.bad(
            format!(
                "BAT at byte {} extends past the end of the file",
                h.table_offset
            ),
            false,
        );
        s.header = Some(h);
        return s;
    };
    s.used_end = (hoff + HEADER_SIZE as u64).max(h.table_offset + bat_bytes);
    for l in h.locators.iter().filter(|l| l.is_used()) {
        match locator_payload(store, l, foot_off) {
            Ok(_) => {
                s.used_end = s
                    .used_end
                    .max(l.data_offset + l.space_bytes().max(u64::from(l.data_len)))
            }
            Err(e) => r.bad(format!("{e}"), false),
        }
    }
    let bitmap_bytes = align_up(bs / SECTOR_SIZE / 8, SECTOR_SIZE);
    let meta = [
        (0u64, FOOTER_SIZE as u64),
        (hoff, HEADER_SIZE as u64),
        (h.table_offset, bat_bytes),
    ];
    let mut blocks: Vec<(u64, usize)> = Vec::new();
    let n = h.max_table_entries as usize;
    s.bat = (0..n).map(|i| be32(&raw, i * 4)).collect();
    for (i, &e) in s.bat.iter().enumerate() {
        if i % 4096 == 0 {
            progress(i as u64, n as u64);
        }
        if e == UNUSED {
            continue;
        }
        let start = u64::from(e) * SECTOR_SIZE;
        let bend = start + bitmap_bytes + bs;
        if bend > foot_off {
            r.bad(
                format!("BAT entry {i} points to sector {e}: the block ends at byte {bend}, past the end of the data ({foot_off})"),
                true,
            );
            s.bad_entries.push(i);
            continue;
        }
        if let Some((ro, _)) = meta.iter().find(|(ro, rl)| start < ro + rl && *ro < bend) {
            r.bad(
                format!("BAT entry {i} points to sector {e}, overlapping metadata at byte {ro}"),
                true,
            );
            s.bad_entries.push(i);
            continue;
        }
        if i as u64 * bs >= f.current_size {
            r.warnings
                .push(format!("BAT entry {i} is allocated beyond the disk size"));
        }
        blocks.push((start, i));
        s.used_end = s.used_end.max(bend);
    }
    blocks.sort_unstable();
    for w in blocks.windows(2) {
        if w[0].0 + bitmap_bytes + bs > w[1].0 {
            r.bad(
                format!("blocks {} and {} overlap in the file", w[0].1, w[1].1),
                false,
            );
        }
    }
    progress(n as u64, n as u64);
    s.header = Some(h);
    s
}

/// Checks the image at `path` and its parent chain.
pub fn check(path: &Path, key: Option<&Key>, progress: &dyn Fn(u64, u64)) -> Result<Report> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let store = FileStorage::new(file);
    let mut r = Report::default();
    scan(&store, &mut r, progress);
    if !r.is_ok() {
        return Ok(r);
    }
    let opts = OpenOptions::read_only().with_key(key.cloned());
    match VhdImage::open(path, &opts) {
        Ok(img) => chain_checks(&img, &mut r),
        Err(Error::KeyRequired(_)) => {
            r.warnings.push(
                "image is encrypted and no key was given: data and parent not checked".into(),
            );
        }
        Err(e) => r.bad(e.to_string(), false),
    }
    Ok(r)
}

/// Checks an image held in memory (no parent resolution); used by the fuzz target.
pub fn check_storage(store: Arc<dyn Storage>) -> Report {
    let mut r = Report::default();
    let _ = scan(store.as_ref(), &mut r, &|_, _| {});
    r
}

fn chain_checks(img: &VhdImage, r: &mut Report) {
    let mut cur = img;
    while let (Some(h), Some(p)) = (cur.header(), cur.parent()) {
        let pf = p.footer();
        if pf.timestamp != h.parent_timestamp {
            r.warnings.push(format!(
                "{}: parent {} timestamp {} differs from the recorded {} (parent modified after the snapshot?)",
                cur.name(),
                p.name(),
                pf.timestamp,
                h.parent_timestamp
            ));
        }
        if pf.uuid != h.parent_uuid {
            r.bad(
                format!(
                    "{}: parent UUID {} expected {}",
                    cur.name(),
                    uuid_string(&pf.uuid),
                    uuid_string(&h.parent_uuid)
                ),
                false,
            );
        }
        if p.size() < cur.size() {
            r.warnings
                .push(format!("{}: parent is smaller than the child", cur.name()));
        }
        cur = p;
    }
}

/// Repairs what can be repaired safely; returns a description of each action taken.
pub fn repair(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let store = FileStorage::new(file);
    let mut r = Report::default();
    let s = scan(&store, &mut r, &|_, _| {});
    let mut actions = Vec::new();
    if let Some(p) = r.problems.iter().find(|p| !p.repairable) {
        return Err(Error::corrupt(format!("cannot repair safely: {}", p.what)));
    }
    let Some(f) = s.footer.clone() else {
        return Err(Error::corrupt("no valid footer to repair from"));
    };
    let w = |b: &[u8], off: u64| {
        store
            .write_all_at(b, off)
            .map_err(|e| Error::io(format!("writing {} at byte {off}", path.display()), e))
    };
    if let Some(h) = &s.header {
        if !s.bad_entries.is_empty() {
            let mut bat = s.bat.clone();
            for &i in &s.bad_entries {
                bat[i] = UNUSED;
                actions.push(format!(
                    "cleared BAT entry {i}, which pointed outside the data"
                ));
            }
            let mut bytes = vec![0xffu8; h.bat_bytes() as usize];
            for (i, e) in bat.iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&e.to_be_bytes());
            }
            w(&bytes, h.table_offset)?;
        }
    }
    let fb = f.to_bytes();
    let len = store
        .len()
        .map_err(|e| Error::io("reading the file size", e))?;
    if f.disk_type == DiskType::Fixed {
        if len > f.current_size + FOOTER_SIZE as u64 {
            w(&fb, f.current_size)?;
            store
                .set_len(f.current_size + FOOTER_SIZE as u64)
                .map_err(|e| Error::io("truncating", e))?;
            actions.push("removed bytes after the fixed disk's footer".into());
        }
    } else {
        if !s.end_footer_ok {
            let at = align_up(
                s.used_end.max(len.saturating_sub(FOOTER_SIZE as u64)),
                SECTOR_SIZE,
            );
            w(&fb, at)?;
            actions.push(format!(
                "wrote the footer at byte {at} from the copy at offset 0"
            ));
        }
        let copy = read(&store, FOOTER_SIZE, 0);
        if copy.as_deref() != Some(&fb[..]) {
            w(&fb, 0)?;
            actions.push("rewrote the footer copy at offset 0".into());
        }
    }
    store.sync().map_err(|e| Error::io("syncing", e))?;
    Ok(actions)
}
