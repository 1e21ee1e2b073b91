//! Access to the frontend's data pages: transient mappings, or persistent ones kept per queue
//! when the frontend uses `feature-persistent`.

use std::collections::HashMap;
use std::sync::Arc;

use vm_memory::GuestMemoryBackend;
use xen::gnttab::{AccessError, GrantMapping, GrantTable};

use crate::error::RequestError;

/// Linux's limit of persistent grants per queue (`xen_blkif_max_pgrants`).
pub const MAX_PERSISTENT_GRANTS: usize = 1056;

/// Maps data pages for the requests of one queue.
pub(crate) struct Grants<M: GuestMemoryBackend> {
    table: GrantTable<M>,
    /// gref → mapping, when persistent grants are on. Persistent pages are mapped writable
    /// (a persistent frontend grants them so); at most `max` are kept.
    persistent: Option<HashMap<u32, Arc<GrantMapping<M>>>>,
    max: usize,
}

impl<M: GuestMemoryBackend> Grants<M> {
    pub(crate) fn new(table: GrantTable<M>, persistent: bool, max: usize) -> Self {
        Grants {
            table,
            persistent: persistent.then(HashMap::new),
            max,
        }
    }

    pub(crate) fn table(&self) -> &GrantTable<M> {
        &self.table
    }

    /// Number of persistent mappings held.
    pub(crate) fn persistent_count(&self) -> usize {
        self.persistent.as_ref().map_or(0, HashMap::len)
    }

    /// A mapping of `gref`, writable unless `readonly`.
    pub(crate) fn get(
        &mut self,
        gref: u32,
        readonly: bool,
    ) -> Result<Arc<GrantMapping<M>>, RequestError> {
        let grant_err = |source: AccessError| RequestError::Grant { gref, source };
        let Some(cache) = self.persistent.as_mut() else {
            return Ok(Arc::new(self.table.map(gref, readonly).map_err(grant_err)?));
        };
        if let Some(m) = cache.get(&gref) {
            return Ok(m.clone());
        }
        match self.table.map(gref, false) {
            Ok(m) => {
                let m = Arc::new(m);
                if cache.len() < self.max {
                    cache.insert(gref, m.clone());
                }
                Ok(m)
            }
            // A read-only page is still fine for a write request; just not kept.
            Err(AccessError::ReadOnly { .. }) if readonly => {
                Ok(Arc::new(self.table.map(gref, true).map_err(grant_err)?))
            }
            Err(e) => Err(grant_err(e)),
        }
    }
}

impl<M: GuestMemoryBackend> std::fmt::Debug for Grants<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("persistent", &self.persistent.as_ref().map(HashMap::len))
            .field("max", &self.max)
            .finish()
    }
}
