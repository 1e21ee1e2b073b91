//! A fake frontend (Xen's `FRONT_RING` macros), for tests of backends.

use std::sync::atomic::{fence, Ordering};

use crate::layout::{
    publish, RingLayout, REQ_EVENT_OFFSET, REQ_PROD_OFFSET, RSP_EVENT_OFFSET, RSP_PROD_OFFSET,
};
use crate::{RingError, RingPages};

/// A shared ring seen from the front end: produces requests, consumes responses.
///
/// Meant for tests, here and in backend crates: it plays the guest driver. It trusts the
/// backend's indices.
#[derive(Debug)]
pub struct FrontRing<P: RingPages> {
    pages: P,
    layout: RingLayout,
    req_prod_pvt: u32,
    rsp_cons: u32,
    req_pushed: u32,
}

impl<P: RingPages> FrontRing<P> {
    /// Initialises the shared ring in `pages` (`SHARED_RING_INIT`: both producers 0, both
    /// events 1) and returns its front end.
    pub fn new(pages: P, entry_size: usize) -> Result<Self, RingError> {
        Self::new_at(pages, entry_size, 0)
    }

    /// Like [`FrontRing::new`] but with every index starting at `start` (to test wraparound;
    /// pair it with [`crate::BackRing::attach`] at the same `start`).
    pub fn new_at(pages: P, entry_size: usize, start: u32) -> Result<Self, RingError> {
        let layout = RingLayout::new(pages.len(), entry_size)?;
        pages.store_u32(REQ_PROD_OFFSET, start)?;
        pages.store_u32(RSP_PROD_OFFSET, start)?;
        pages.store_u32(REQ_EVENT_OFFSET, start.wrapping_add(1))?;
        pages.store_u32(RSP_EVENT_OFFSET, start.wrapping_add(1))?;
        Ok(FrontRing {
            pages,
            layout,
            req_prod_pvt: start,
            rsp_cons: start,
            req_pushed: start,
        })
    }

    /// Number of slots.
    pub fn nr_ents(&self) -> u32 {
        self.layout.nr_ents()
    }

    /// The ring area (to poke at shared memory in hostile tests).
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// Slots free for new requests.
    pub fn free_requests(&self) -> u32 {
        self.nr_ents() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes a request into the next slot (not yet visible to the backend).
    pub fn push_request(&mut self, req: &[u8]) -> Result<(), RingError> {
        self.layout.check_buffer(req.len())?;
        if self.free_requests() == 0 {
            return Err(RingError::Full(self.nr_ents()));
        }
        self.pages
            .write(self.layout.slot_offset(self.req_prod_pvt), req)?;
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the requests (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`); returns whether the
    /// backend asked to be notified.
    pub fn push_requests_and_check_notify(&mut self) -> Result<bool, RingError> {
        let new = self.req_prod_pvt;
        let notify = publish(
            &self.pages,
            REQ_PROD_OFFSET,
            REQ_EVENT_OFFSET,
            self.req_pushed,
            new,
        )?;
        self.req_pushed = new;
        Ok(notify)
    }

    /// Copies the next published response into `buf` and consumes it; `false` if none.
    pub fn next_response(&mut self, buf: &mut [u8]) -> Result<bool, RingError> {
        self.layout.check_buffer(buf.len())?;
        let rsp_prod = self.pages.load_u32(RSP_PROD_OFFSET)?;
        if rsp_prod == self.rsp_cons {
            return Ok(false);
        }
        self.pages
            .read(self.layout.slot_offset(self.rsp_cons), buf)?;
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(true)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: whether responses are waiting, after asking to be
    /// notified of the next one.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.pages.load_u32(RSP_PROD_OFFSET)? != self.rsp_cons {
            return Ok(true);
        }
        self.pages
            .store_u32(RSP_EVENT_OFFSET, self.rsp_cons.wrapping_add(1))?;
        fence(Ordering::SeqCst);
        Ok(self.pages.load_u32(RSP_PROD_OFFSET)? != self.rsp_cons)
    }
}
