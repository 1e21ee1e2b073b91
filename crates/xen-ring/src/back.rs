//! The backend's view of a shared ring (Xen's `BACK_RING` macros).

use std::sync::atomic::{fence, Ordering};

use crate::layout::{
    publish, RingLayout, REQ_EVENT_OFFSET, REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
use crate::{RingError, RingPages};

/// A shared ring seen from the back end: consumes requests, produces responses.
///
/// All indices the backend relies on are private (`req_cons`, `rsp_prod_pvt`, and the last
/// `rsp_prod` it published); only `req_prod` and `rsp_event` are read from shared memory, and
/// `req_prod` is checked on every read.
#[derive(Debug)]
pub struct BackRing<P: RingPages> {
    pages: P,
    layout: RingLayout,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The `rsp_prod` last published (Xen reads it back from the shared page; a guest could
    /// change that copy, so keep our own).
    rsp_pushed: u32,
}

impl<P: RingPages> BackRing<P> {
    /// The back end of the ring in `pages` with slots of `entry_size` bytes (the larger of the
    /// request and response sizes), starting at index 0 as a freshly initialised ring does.
    pub fn new(pages: P, entry_size: usize) -> Result<Self, RingError> {
        Self::attach(pages, entry_size, 0)
    }

    /// Like [`BackRing::new`], but resumes at index `start` (Xen's `BACK_RING_ATTACH`): the
    /// first request consumed and the first response produced are both `start`.
    pub fn attach(pages: P, entry_size: usize, start: u32) -> Result<Self, RingError> {
        let layout = RingLayout::new(pages.len(), entry_size)?;
        Ok(BackRing {
            pages,
            layout,
            req_cons: start,
            rsp_prod_pvt: start,
            rsp_pushed: start,
        })
    }

    /// Number of slots.
    pub fn nr_ents(&self) -> u32 {
        self.layout.nr_ents()
    }

    /// Size of a slot in bytes.
    pub fn entry_size(&self) -> usize {
        self.layout.entry_size()
    }

    /// The private request consumer index (next request to read).
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// The private response producer index (next response slot to fill).
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    /// The ring area.
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// Reads `req_prod` and returns how many requests are waiting, refusing impossible
    /// indices (`RING_REQUEST_PROD_OVERFLOW` and `RING_REQUEST_CONS_OVERFLOW`).
    fn unconsumed(&self) -> Result<u32, RingError> {
        let req_prod = self.pages.load_u32(REQ_PROD_OFFSET)?;
        let waiting = req_prod.wrapping_sub(self.req_cons);
        let nr_ents = self.nr_ents();
        // Requests the frontend claims to have produced beyond the last response we gave
        // back: it may never exceed the number of slots.
        let outstanding = req_prod.wrapping_sub(self.rsp_prod_pvt);
        if waiting > nr_ents || outstanding > nr_ents {
            return Err(RingError::Overflow {
                req_prod,
                req_cons: self.req_cons,
                rsp_prod_pvt: self.rsp_prod_pvt,
                nr_ents,
            });
        }
        Ok(waiting)
    }

    /// Whether requests are waiting (`RING_HAS_UNCONSUMED_REQUESTS`); an error if the
    /// frontend's `req_prod` is impossible.
    pub fn has_unconsumed_requests(&self) -> Result<bool, RingError> {
        Ok(self.unconsumed()? > 0)
    }

    /// Copies the next request into `buf` (at most one slot; a shorter `buf` takes the start
    /// of the slot) and consumes it. The copy is taken before any use, so later writes by the
    /// guest cannot change it. Returns `false` when no request is waiting.
    pub fn next_request(&mut self, buf: &mut [u8]) -> Result<bool, RingError> {
        self.layout.check_buffer(buf.len())?;
        if self.unconsumed()? == 0 {
            return Ok(false);
        }
        // The acquire load of req_prod orders this read after the frontend's writes.
        self.pages
            .read(self.layout.slot_offset(self.req_cons), buf)?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(true)
    }

    /// Writes a response into the next response slot (not yet visible to the frontend; see
    /// [`BackRing::push_responses_and_check_notify`]). Fails if every consumed request was
    /// already answered.
    pub fn push_response(&mut self, rsp: &[u8]) -> Result<(), RingError> {
        self.layout.check_buffer(rsp.len())?;
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NoRequestOutstanding {
                req_cons: self.req_cons,
                rsp_prod_pvt: self.rsp_prod_pvt,
            });
        }
        self.pages
            .write(self.layout.slot_offset(self.rsp_prod_pvt), rsp)?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the responses written so far (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`) and
    /// returns whether the frontend must be notified: iff its `rsp_event` lies among the
    /// responses just published.
    pub fn push_responses_and_check_notify(&mut self) -> Result<bool, RingError> {
        let new = self.rsp_prod_pvt;
        let notify = publish(
            &self.pages,
            RSP_PROD_OFFSET,
            RSP_EVENT_OFFSET,
            self.rsp_pushed,
            new,
        )?;
        self.rsp_pushed = new;
        Ok(notify)
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: returns `true` if requests are waiting; otherwise asks
    /// the frontend to notify on the next request (`req_event = req_cons + 1`) and checks
    /// again, so a request produced meanwhile is not lost.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.has_unconsumed_requests()? {
            return Ok(true);
        }
        self.pages
            .store_u32(REQ_EVENT_OFFSET, self.req_cons.wrapping_add(1))?;
        fence(Ordering::SeqCst);
        self.has_unconsumed_requests()
    }
}
