//! Online resize. Growing a dynamic disk past its BAT moves the BAT to the end of the file.

use std::sync::atomic::Ordering;

use super::bat::UNUSED;
use super::footer::DiskType;
use super::image::{lock, VhdImage};
use super::util::{align_up, chs_for};
use super::MAX_DISK_SIZE;
use crate::{Error, Result, SECTOR_SIZE};

fn sync(img: &VhdImage) -> Result<()> {
    img.store
        .sync()
        .map_err(|e| Error::io(format!("syncing {}", img.name), e))
}

fn w(img: &VhdImage, b: &[u8], off: u64) -> Result<()> {
    img.store
        .write_all_at(b, off)
        .map_err(|e| Error::io(format!("writing {} at byte {off}", img.name), e))
}

/// Changes the virtual size of an open image.
pub(crate) fn resize(img: &VhdImage, new_size: u64) -> Result<()> {
    if !img.writable {
        return Err(Error::ReadOnly);
    }
    if new_size == 0 || !new_size.is_multiple_of(SECTOR_SIZE) || new_size > MAX_DISK_SIZE {
        return Err(Error::InvalidArgument(format!(
            "new size {new_size} must be a non-zero multiple of 512 no larger than 2040 GiB"
        )));
    }
    let old = img.size.load(Ordering::Acquire);
    let Some(d) = &img.dynamic else {
        return resize_fixed(img, old, new_size);
    };
    let mut m = lock(&d.meta);
    let needed = new_size.div_ceil(d.block_size);
    if needed > u64::from(m.header.max_table_entries) {
        if needed > d.bat.capacity() as u64 {
            return Err(Error::Unsupported(format!(
                "growing to {new_size} bytes needs {needed} BAT entries, more than this open \
                 image can hold; resize it offline"
            )));
        }
        let new_entries = needed as u32;
        let new_bytes = align_up(needed * 4, 512);
        // Room in place: up to the first block, locator payload or the footer after the BAT.
        let t = m.header.table_offset;
        let mut limit = m.data_end;
        for (_, e) in d.bat.allocated(m.header.max_table_entries) {
            let o = u64::from(e) * SECTOR_SIZE;
            if o >= t {
                limit = limit.min(o);
            }
        }
        for l in m.header.locators.iter().filter(|l| l.is_used()) {
            if l.data_offset >= t {
                limit = limit.min(l.data_offset);
            }
        }
        let table = d.bat.to_bytes(new_entries);
        // Pending bitmaps first, so the BAT written below points only at initialised blocks.
        sync(img)?;
        if t + new_bytes <= limit {
            w(img, &table, t)?;
        } else {
            // Move the BAT to the end: footer past it first, then the table, then the header.
            let at = m.data_end;
            let footer = lock(&img.footer).to_bytes();
            w(img, &footer, at + new_bytes)?;
            w(img, &table, at)?;
            m.data_end = at + new_bytes;
            m.header.table_offset = at;
        }
        sync(img)?;
        m.header.max_table_entries = new_entries;
        let hoff = lock(&img.footer).data_offset;
        w(img, &m.header.to_bytes(), hoff)?;
        sync(img)?;
    } else if new_size < old {
        // Blocks past the new end are dropped from the table (their space stays as orphans).
        for b in needed..u64::from(m.header.max_table_entries) {
            if d.bat.get(b) != UNUSED {
                d.bat.set(b, UNUSED)?;
                m.dirty_bat.insert(b);
                d.bitmaps.replace(b, None);
            }
        }
    }
    let mut f = lock(&img.footer);
    f.current_size = new_size;
    f.geometry = chs_for(new_size);
    img.write_footer_at(&f, m.data_end)?;
    drop(f);
    drop(m);
    img.size.store(new_size, Ordering::Release);
    img.flush_inner()
}

fn resize_fixed(img: &VhdImage, old: u64, new: u64) -> Result<()> {
    let mut f = lock(&img.footer);
    f.current_size = new;
    f.geometry = chs_for(new);
    debug_assert_eq!(f.disk_type, DiskType::Fixed);
    // New footer first: until the file is cut, the old footer at the end still describes the
    // old, intact disk.
    w(img, &f.to_bytes(), new)?;
    if new > old {
        // The old footer's bytes are now disk data: zero them (encrypted zeros if needed).
        let len = (new - old).min(512);
        let mut z = vec![0u8; len as usize];
        if let Some(c) = &img.cipher {
            z = vec![0u8; (new - old) as usize];
            c.encrypt(&mut z, old / 512);
        }
        w(img, &z, old)?;
    }
    sync(img)?;
    img.store
        .set_len(new + 512)
        .map_err(|e| Error::io(format!("truncating {}", img.name), e))?;
    drop(f);
    img.size.store(new, Ordering::Release);
    sync(img)
}
