//! VHD images per Microsoft's Virtual Hard Disk Image Format Specification: fixed, dynamic and
//! differencing disks.

mod bat;
mod bitmap;
pub mod check;
mod create;
mod footer;
mod header;
mod image;
mod locator;
mod open;
pub mod ops;
mod resize;
mod util;

pub use bat::UNUSED;
pub use bitmap::BlockBitmap;
pub use create::{
    create, create_child, create_child_of, create_on, CreateOptions, DEFAULT_BLOCK_SIZE,
};
pub use footer::{DiskType, Footer, KeyTag, FOOTER_SIZE};
pub use header::{DynHeader, HEADER_SIZE};
pub use image::VhdImage;
pub use locator::Locator;
pub use open::{OpenOptions, MAX_CHAIN_DEPTH};
pub use util::{uuid_string, vhd_now, vhd_time_to_unix};

/// Largest virtual size the format allows (2040 GiB, as QEMU and Windows enforce).
pub const MAX_DISK_SIZE: u64 = 2040 << 30;

/// Whether the storage ends in a VHD footer (used to tell VHD from raw input).
pub fn looks_like_vhd(store: &dyn crate::Storage) -> bool {
    let Ok(len) = store.len() else { return false };
    if len < FOOTER_SIZE as u64 {
        return false;
    }
    let mut b = [0u8; 8];
    store
        .read_exact_at(&mut b, len - FOOTER_SIZE as u64)
        .is_ok()
        && &b == b"conectix"
}

#[cfg(test)]
mod tests;
