//! One blkif queue: a shared ring, the disk, and the frontend's grants.

use std::sync::Arc;

use block::DiskImage;
use vm_memory::{ByteValued, GuestMemoryBackend};
use xen::gnttab::{GrantMapping, GrantTable};
use xen_ring::{BackRing, GuestRingPages};

use crate::abi::{BlkifResponse, BLKIF_RSP_OKAY, REQUEST_SIZE};
use crate::connect::map_ring;
use crate::error::{ConnectError, QueueError};
use crate::grants::{Grants, MAX_PERSISTENT_GRANTS};
use crate::metrics::Metrics;
use crate::request::response_header;

/// Segments per indirect request the backend advertises (`feature-max-indirect-segments`).
pub const MAX_INDIRECT_SEGMENTS: usize = 256;

/// How a queue behaves; [`QueueConfig::default`] matches what [`crate::backend_features`]
/// advertises by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most segments an indirect request may carry (advertised as
    /// `feature-max-indirect-segments`). Default 256.
    pub max_indirect_segments: usize,
    /// Keep data-page mappings across requests (`feature-persistent`, when both ends
    /// advertise it). Default off.
    pub persistent_grants: bool,
    /// Most persistent mappings kept (Linux: 1056 per queue).
    pub max_persistent_grants: usize,
    /// Export the disk read-only even if the image is writable (xl's `mode=r`).
    pub read_only: bool,
    /// Largest ring the frontend may use, as a power of two of pages (advertised as
    /// `max-ring-page-order`; at most [`crate::MAX_RING_PAGE_ORDER`]). Default the most.
    pub max_ring_page_order: u32,
    /// Most requests answered by one [`Queue::process`] call before it returns with
    /// `more: true`, so that one busy frontend cannot hold the thread forever.
    pub max_batch: u32,
    /// Responses are published (and the frontend notified, if the ring asks for it) after
    /// this many requests, not only at the end of a batch, so that the guest starts
    /// completing while the backend works on the rest. 0 and 1 publish every response.
    /// Default 8.
    pub response_batch: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_indirect_segments: MAX_INDIRECT_SEGMENTS,
            persistent_grants: false,
            max_persistent_grants: MAX_PERSISTENT_GRANTS,
            read_only: false,
            max_ring_page_order: crate::MAX_RING_PAGE_ORDER,
            max_batch: 1024,
            response_batch: 8,
        }
    }
}

/// What one [`Queue::process`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// The frontend must be notified on the queue's event channel ([`Queue::process`]); it
    /// was notified ([`Queue::process_with`]).
    pub notify: bool,
    /// Requests answered.
    pub requests: u32,
    /// The batch limit was reached with requests possibly left: call `process` again (the
    /// frontend will not send another event for them).
    pub more: bool,
}

/// One blkif queue (ring): consumes requests, runs them against the disk, answers them.
///
/// Build it with [`Queue::new`] once the frontend is `Initialised`, call
/// [`Queue::process`] whenever the queue's event channel fires (and once after connecting),
/// and send an event to the frontend when the outcome says so.
pub struct Queue<M: GuestMemoryBackend + Send + Sync> {
    pub(crate) ring: BackRing<GuestRingPages<M>>,
    /// Holds the ring pages' grants in use for as long as the queue lives.
    _ring_maps: Vec<GrantMapping<M>>,
    pub(crate) grants: Grants<M>,
    pub(crate) disk: Arc<dyn DiskImage>,
    pub(crate) cfg: QueueConfig,
    pub(crate) metrics: Metrics,
}

impl<M: GuestMemoryBackend + Send + Sync> std::fmt::Debug for Queue<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("nr_ents", &self.ring.nr_ents())
            .field("ring_pages", &self._ring_maps.len())
            .field("grants", &self.grants)
            .field("disk", &self.disk)
            .field("cfg", &self.cfg)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl<M: GuestMemoryBackend + Send + Sync> Queue<M> {
    /// Connects to the ring whose pages the frontend granted as `ring_refs` (in order; from
    /// [`crate::ring_refs`]), in the guest memory `mem` that `gnttab` also reads. The ring
    /// pages stay mapped (claimed in the grant table) until the queue is dropped.
    pub fn new(
        gnttab: GrantTable<M>,
        mem: M,
        disk: Arc<dyn DiskImage>,
        ring_refs: &[u32],
        cfg: QueueConfig,
    ) -> Result<Self, ConnectError> {
        let (ring, maps) = map_ring(&gnttab, mem, ring_refs)?;
        Ok(Queue {
            ring,
            _ring_maps: maps,
            grants: Grants::new(gnttab, cfg.persistent_grants, cfg.max_persistent_grants),
            disk,
            cfg,
            metrics: Metrics::default(),
        })
    }

    /// Answers every waiting request, then re-arms the ring's event and checks again so that
    /// no request is left behind (or stops at `max_batch`, see [`ProcessOutcome::more`]).
    /// Responses are published every [`QueueConfig::response_batch`] requests and at the end;
    /// the outcome says whether any publication asked for an event, which the caller sends
    /// when the call returns. [`Queue::process_with`] sends events as they are due instead.
    ///
    /// A bad request is answered with an error status and never reaches the disk. An error
    /// here means the ring itself is broken (hostile indices, unreachable pages): the caller
    /// should disconnect the frontend.
    pub fn process(&mut self) -> Result<ProcessOutcome, QueueError> {
        self.process_with(&mut || {})
    }

    /// [`Queue::process`], calling `notify` as soon as a publication of responses asks for
    /// an event (mid-batch too), so that the guest completes the first requests of a long
    /// batch while the backend runs the rest.
    pub fn process_with(&mut self, notify: &mut dyn FnMut()) -> Result<ProcessOutcome, QueueError> {
        let mut out = ProcessOutcome::default();
        let mut slot = [0u8; REQUEST_SIZE];
        let mut unpublished = 0u32;
        loop {
            while self.ring.next_request(&mut slot)? {
                let (id, operation) = response_header(&slot);
                let status = match self.handle(&slot) {
                    Ok(()) => BLKIF_RSP_OKAY,
                    Err(e) => {
                        tracing::debug!(id, operation, "blkif request failed: {e}");
                        self.metrics.count_error(&e);
                        e.status()
                    }
                };
                self.metrics.requests += 1;
                let rsp = BlkifResponse {
                    id,
                    operation,
                    status,
                    ..Default::default()
                };
                self.ring.push_response(rsp.as_slice())?;
                out.requests += 1;
                unpublished += 1;
                if out.requests >= self.cfg.max_batch {
                    self.publish(&mut out, notify)?;
                    out.more = true;
                    return Ok(out);
                }
                if unpublished >= self.cfg.response_batch {
                    self.publish(&mut out, notify)?;
                    unpublished = 0;
                }
            }
            // Everything answered is published before the event is re-armed, so a request
            // the frontend adds meanwhile is either seen below or raises a new event.
            self.publish(&mut out, notify)?;
            unpublished = 0;
            if !self.ring.final_check_for_requests()? {
                return Ok(out);
            }
        }
    }

    /// Makes the responses pushed so far visible to the frontend, and notifies it if the
    /// ring's event index asks for it.
    fn publish(
        &mut self,
        out: &mut ProcessOutcome,
        notify: &mut dyn FnMut(),
    ) -> Result<(), QueueError> {
        if self.ring.push_responses_and_check_notify()? {
            notify();
            out.notify = true;
        }
        Ok(())
    }

    /// Counters since the queue was created.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// Slots in the ring.
    pub fn nr_ents(&self) -> u32 {
        self.ring.nr_ents()
    }

    /// Persistent grant mappings currently held.
    pub fn persistent_grants(&self) -> usize {
        self.grants.persistent_count()
    }

    /// Whether the frontend sees the disk as read-only.
    pub fn read_only(&self) -> bool {
        self.cfg.read_only || self.disk.read_only()
    }
}
