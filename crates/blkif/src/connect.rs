//! Setting a queue up from the frontend's Xenstore entries, and what the backend advertises.

use block::DiskImage;
use vm_memory::{GuestAddress, GuestMemoryBackend};
use xen::gnttab::{GrantMapping, GrantTable};
use xen_ring::{BackRing, GuestRingPages};

use crate::abi::{RING_ENTRY_SIZE, SECTOR_SIZE};
use crate::error::ConnectError;
use crate::queue::QueueConfig;

/// Largest `ring-page-order` accepted (advertised as `max-ring-page-order`): 16 pages.
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// `info` bit: the disk is read-only.
pub const VDISK_READONLY: u32 = 4;

/// Reads the ring's grant references from a frontend's (or queue's) Xenstore directory, with
/// `read(key)` returning a key's value: `ring-ref` for a one-page ring, or `ring-page-order`
/// = N and `ring-ref0` .. `ring-ref{2^N-1}`.
pub fn ring_refs(read: impl Fn(&str) -> Option<String>) -> Result<Vec<u32>, ConnectError> {
    let order = match read("ring-page-order") {
        None => None,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(o) if o <= MAX_RING_PAGE_ORDER => Some(o),
            _ => {
                return Err(ConnectError::BadRingPageOrder {
                    value: v,
                    max: MAX_RING_PAGE_ORDER,
                })
            }
        },
    };
    let get = |key: String| {
        let value = read(&key);
        match value.as_deref().map(|v| v.trim().parse::<u32>()) {
            Some(Ok(r)) => Ok(r),
            _ => Err(ConnectError::BadRingRef { key, value }),
        }
    };
    match order {
        None => Ok(vec![get("ring-ref".to_string())?]),
        Some(o) => (0..1u32 << o)
            .map(|i| get(format!("ring-ref{i}")))
            .collect(),
    }
}

/// The blkif ring over guest pages.
pub(crate) type Ring<M> = BackRing<GuestRingPages<M>>;

/// Maps the ring pages writable and lays the blkif ring over them.
pub(crate) fn map_ring<M: GuestMemoryBackend + Send + Sync>(
    table: &GrantTable<M>,
    mem: M,
    refs: &[u32],
) -> Result<(Ring<M>, Vec<GrantMapping<M>>), ConnectError> {
    if !refs.len().is_power_of_two() || refs.len() > 1 << MAX_RING_PAGE_ORDER {
        return Err(ConnectError::BadPageCount(refs.len()));
    }
    let maps = refs
        .iter()
        .enumerate()
        .map(|(index, &gref)| {
            table
                .map(gref, false)
                .map_err(|source| ConnectError::Grant {
                    index,
                    gref,
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gpas: Vec<GuestAddress> = maps.iter().map(GrantMapping::gpa).collect();
    let ring = BackRing::new(GuestRingPages::new(mem, gpas)?, RING_ENTRY_SIZE)?;
    Ok((ring, maps))
}

/// The keys a blkif backend writes in its Xenstore directory for this configuration and
/// disk, before switching to `InitWait` (the toolstack writes the others, such as `mode`):
/// `feature-flush-cache`, `feature-barrier`, `feature-discard`, `discard-granularity`,
/// `discard-secure`, `feature-max-indirect-segments`, `feature-persistent`,
/// `max-ring-page-order`, `sectors`, `sector-size`, `info`. Barriers are supported too
/// (a flush before and after the write), but only flush-cache is advertised: with both,
/// Linux's blkfront would use barriers.
pub fn backend_features(cfg: &QueueConfig, disk: &dyn DiskImage) -> Vec<(&'static str, String)> {
    let ro = cfg.read_only || disk.read_only();
    vec![
        ("feature-flush-cache", "1".into()),
        ("feature-barrier", "0".into()),
        ("feature-discard", u8::from(!ro).to_string()),
        ("discard-granularity", SECTOR_SIZE.to_string()),
        ("discard-secure", "0".into()),
        (
            "feature-max-indirect-segments",
            cfg.max_indirect_segments.to_string(),
        ),
        (
            "feature-persistent",
            u8::from(cfg.persistent_grants).to_string(),
        ),
        ("max-ring-page-order", cfg.max_ring_page_order.to_string()),
        ("sectors", (disk.size() / SECTOR_SIZE).to_string()),
        ("sector-size", SECTOR_SIZE.to_string()),
        ("info", if ro { VDISK_READONLY } else { 0 }.to_string()),
    ]
}
