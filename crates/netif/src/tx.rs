//! The transmit queue: guest to host.

use vm_memory::GuestMemoryBackend;
use xen::gnttab::GrantTable;
use xen_ring::{BackRing, RingPages};

use crate::abi::{NetifTxResponse, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, TX_SLOT_SIZE};
use crate::chain::{Body, Chain, Consumed};
use crate::{NetifError, TxDrop, TxMetrics, TxPacket};

/// What one [`TxQueue::process_tx`] call did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Responses were published that the frontend asked to hear about: raise its event
    /// channel.
    pub notify: bool,
    /// The call stopped at its budget (one ring's worth of packets) with requests still
    /// waiting: call again (after serving other work) without waiting for an event.
    pub more: bool,
}

/// The backend side of one netif tx ring (`tx-ring-ref`): reads the packets the guest
/// transmits and answers each request.
#[derive(Debug)]
pub struct TxQueue<P: RingPages, M: GuestMemoryBackend> {
    ring: BackRing<P>,
    gnttab: GrantTable<M>,
    metrics: TxMetrics,
}

impl<P: RingPages, M: GuestMemoryBackend> TxQueue<P, M> {
    /// A queue over the tx ring in `pages` (a fresh ring: indices from 0), copying packet
    /// data out of pages the guest granted in `gnttab`.
    pub fn new(pages: P, gnttab: GrantTable<M>) -> Result<Self, NetifError> {
        Ok(TxQueue {
            ring: BackRing::new(pages, TX_SLOT_SIZE)?,
            gnttab,
            metrics: TxMetrics::default(),
        })
    }

    /// Counters so far.
    pub fn metrics(&self) -> &TxMetrics {
        &self.metrics
    }

    /// Reads every packet the guest has queued, hands each valid one to `sink` and answers
    /// every consumed slot exactly once: `NETIF_RSP_OKAY` for packets handed over (and
    /// multicast-control packets, which are not), `NETIF_RSP_ERROR` for every request of a
    /// dropped packet, `NETIF_RSP_NULL` for extra-info slots.
    ///
    /// Call it when the tx event channel fires. It re-arms the ring's event before returning
    /// unless [`TxOutcome::more`] is set. An `Err` is a fatal protocol violation: disconnect
    /// the vif (responses already published stay valid).
    pub fn process_tx(&mut self, sink: &mut impl FnMut(TxPacket)) -> Result<TxOutcome, NetifError> {
        let budget = self.ring.nr_ents();
        let mut done = 0;
        let mut out = TxOutcome::default();
        loop {
            let mut slot = [0u8; TX_SLOT_SIZE];
            while done < budget && self.ring.next_request(&mut slot)? {
                done += 1;
                let chain = self.read_chain(&slot)?;
                self.handle(chain, sink)?;
            }
            out.notify |= self.ring.push_responses_and_check_notify()?;
            if done >= budget {
                out.more = self.ring.has_unconsumed_requests()?;
                if out.more {
                    return Ok(out);
                }
            }
            if !self.ring.final_check_for_requests()? {
                return Ok(out);
            }
        }
    }

    /// Reads the rest of the chain that `first` starts.
    fn read_chain(&mut self, first: &[u8; TX_SLOT_SIZE]) -> Result<Chain, NetifError> {
        let mut chain = Chain::new(first);
        let mut slot = [0u8; TX_SLOT_SIZE];
        while !chain.done() {
            // The ring's index checks bound a chain by the ring size.
            if !self.ring.next_request(&mut slot)? {
                return Err(NetifError::IncompleteChain { slots: chain.len() });
            }
            chain.push(&slot);
        }
        Ok(chain)
    }

    fn handle(&mut self, chain: Chain, sink: &mut impl FnMut(TxPacket)) -> Result<(), NetifError> {
        let (slots, body) = chain.finish();
        let verdict = body.and_then(|b| self.copy(b));
        let status = match &verdict {
            Ok(_) => NETIF_RSP_OKAY,
            Err(why) => {
                tracing::debug!(?why, "netif: tx packet dropped");
                self.metrics.drop(*why);
                NETIF_RSP_ERROR
            }
        };
        for s in slots {
            let rsp = match s {
                Consumed::Request(id) => NetifTxResponse { id, status },
                Consumed::Extra => NetifTxResponse {
                    id: 0,
                    status: NETIF_RSP_NULL,
                },
            };
            self.ring.push_response(&rsp.to_bytes())?;
        }
        match verdict {
            Ok(Some(pkt)) => {
                self.metrics.packets += 1;
                self.metrics.bytes += pkt.data.len() as u64;
                sink(pkt);
            }
            Ok(None) => self.metrics.control += 1,
            Err(_) => {}
        }
        Ok(())
    }

    /// Copies a valid packet out of the granted pages; `None` for a control packet.
    fn copy(&self, body: Body) -> Result<Option<TxPacket>, TxDrop> {
        if body.control {
            return Ok(None);
        }
        let mut data = vec![0u8; body.total];
        let mut at = 0;
        for f in &body.frags {
            let len = usize::from(f.len);
            let dst = &mut data[at..at + len];
            self.gnttab
                .copy_from_grant(f.gref, usize::from(f.offset), dst)
                .map_err(|e| {
                    tracing::debug!(error = %e, "netif: tx grant copy");
                    TxDrop::GrantCopy
                })?;
            at += len;
        }
        let mut pkt = TxPacket {
            data,
            csum_blank: body.csum_blank,
            data_validated: body.data_validated,
            gso: body.gso,
        };
        pkt.prepare_offload().map_err(|_| TxDrop::BadOffload)?;
        Ok(Some(pkt))
    }
}
