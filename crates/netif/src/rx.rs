//! The receive queue: host to guest.

use std::collections::VecDeque;

use vm_memory::GuestMemoryBackend;
use xen::gnttab::GrantTable;
use xen_ring::{BackRing, RingPages};

use crate::abi::*;
use crate::offload::*;
use crate::{NetifError, RxDrop, RxMetrics};

/// What the frontend negotiated for receive, from its Xenstore keys.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct RxFeatures {
    /// `feature-sg = 1`: a frame may span several slots (otherwise at most one page).
    pub sg: bool,
    /// `feature-gso-tcpv4 = 1`: TCPv4 GSO frames (needs `sg` and `csum`).
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6 = 1`: TCPv6 GSO frames (needs `sg` and `csum`).
    pub gso_tcpv6: bool,
    /// Checksum offload: true unless the frontend wrote `feature-no-csum-offload = 1`. Without
    /// it, partial checksums are completed here before delivery.
    pub csum: bool,
}

/// `TUN_F_CSUM` (linux/if_tun.h).
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`.
pub const TUN_F_TSO6: u32 = 0x04;

impl RxFeatures {
    /// The `TUNSETOFFLOAD` flags that make the tap send only frames this frontend accepts
    /// (so that no frame is dropped for [`RxDrop::GsoNotNegotiated`]).
    pub fn tap_offloads(&self) -> u32 {
        let mut f = 0;
        if self.csum {
            f |= TUN_F_CSUM;
            if self.sg && self.gso_tcpv4 {
                f |= TUN_F_TSO4;
            }
            if self.sg && self.gso_tcpv6 {
                f |= TUN_F_TSO6;
            }
        }
        f
    }
}

/// What [`RxQueue::deliver_rx`] did with a frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// The frame is in the guest's pages and answered; `notify`: raise the rx event channel.
    Delivered {
        /// The frontend asked to be notified of these responses.
        notify: bool,
    },
    /// The guest has not posted enough rx requests for this frame. Nothing was written; keep
    /// the frame and offer it again when the rx event channel fires (the ring asks the
    /// frontend to signal its next request).
    NoSlots,
    /// The frame was dropped. `notify` is true when slots were answered anyway (a failed grant
    /// copy) and the frontend asked to hear about it.
    Dropped {
        /// Why.
        reason: RxDrop,
        /// Raise the rx event channel.
        notify: bool,
    },
}

/// How a valid frame goes into the ring.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Plan {
    data_slots: usize,
    /// First response's checksum flags.
    flags: u16,
    /// (segment size, `XEN_NETIF_GSO_TYPE_*`).
    gso: Option<(u16, u8)>,
    /// Complete the checksum here (frontend without checksum offload).
    fill_csum: Option<(usize, usize)>,
}

impl Plan {
    fn slots(&self) -> usize {
        self.data_slots + usize::from(self.gso.is_some())
    }
}

fn plan(hdr: &VirtioNetHdr, len: usize, f: &RxFeatures) -> Result<Plan, RxDrop> {
    if len < ETH_HLEN {
        return Err(RxDrop::Malformed);
    }
    if len > MAX_FRAME_SIZE || (!f.sg && len > PAGE_SIZE) {
        return Err(RxDrop::TooLarge);
    }
    let gso = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_NONE => None,
        VIRTIO_NET_HDR_GSO_TCPV4 if f.gso_tcpv4 && f.sg && f.csum => Some(XEN_NETIF_GSO_TYPE_TCPV4),
        VIRTIO_NET_HDR_GSO_TCPV6 if f.gso_tcpv6 && f.sg && f.csum => Some(XEN_NETIF_GSO_TYPE_TCPV6),
        VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6 => {
            return Err(RxDrop::GsoNotNegotiated)
        }
        _ => return Err(RxDrop::GsoUnsupported),
    };
    if gso.is_some() && hdr.gso_size == 0 {
        return Err(RxDrop::Malformed);
    }
    let mut flags = 0;
    let mut fill_csum = None;
    if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
        if start >= len || start + offset + 2 > len {
            return Err(RxDrop::Malformed);
        }
        if f.csum {
            flags = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
        } else {
            fill_csum = Some((start, offset));
            flags = NETRXF_DATA_VALIDATED;
        }
    } else if hdr.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
        flags = NETRXF_DATA_VALIDATED;
    }
    Ok(Plan {
        data_slots: len.div_ceil(PAGE_SIZE).max(1),
        flags,
        gso: gso.map(|t| (hdr.gso_size, t)),
        fill_csum,
    })
}

/// The backend side of one netif rx ring (`rx-ring-ref`): copies frames into the pages the
/// guest posted.
///
/// Requests are pulled off the ring into a private queue as they are needed; a frame is
/// written only once enough are there, so a frame that does not fit yet leaves the guest's
/// view untouched (no response is written). Each response goes into the slot of the request
/// it answers, as netfront requires.
#[derive(Debug)]
pub struct RxQueue<P: RingPages, M: GuestMemoryBackend> {
    ring: BackRing<P>,
    gnttab: GrantTable<M>,
    features: RxFeatures,
    posted: VecDeque<NetifRxRequest>,
    metrics: RxMetrics,
}

impl<P: RingPages, M: GuestMemoryBackend> RxQueue<P, M> {
    /// A queue over the rx ring in `pages` (a fresh ring), writing into pages the guest
    /// granted in `gnttab`, for a frontend with `features`.
    pub fn new(pages: P, gnttab: GrantTable<M>, features: RxFeatures) -> Result<Self, NetifError> {
        Ok(RxQueue {
            ring: BackRing::new(pages, RX_SLOT_SIZE)?,
            gnttab,
            features,
            posted: VecDeque::new(),
            metrics: RxMetrics::default(),
        })
    }

    /// Counters so far.
    pub fn metrics(&self) -> &RxMetrics {
        &self.metrics
    }

    /// The frontend's features this queue was made with.
    pub fn features(&self) -> RxFeatures {
        self.features
    }

    /// Delivers one frame as read from a tap with `IFF_VNET_HDR`: a `virtio_net_hdr`
    /// followed by the Ethernet frame.
    ///
    /// The first slot holds the first page of the frame with `NETRXF_csum_blank |
    /// NETRXF_data_validated` for `NEEDS_CSUM` (only `data_validated`, after completing the
    /// checksum here, for a frontend without checksum offload) or `NETRXF_data_validated` for
    /// `DATA_VALID`; a GSO frame has `NETRXF_extra_info` and a GSO extra-info slot next; the
    /// following pages go into further slots chained with `NETRXF_more_data`.
    ///
    /// An `Err` is fatal (ring indices): disconnect the vif.
    pub fn deliver_rx(&mut self, frame: &[u8]) -> Result<RxOutcome, NetifError> {
        let Some(hdr) = VirtioNetHdr::from_bytes(frame) else {
            return Ok(self.refuse(RxDrop::Malformed));
        };
        let data = &frame[VIRTIO_NET_HDR_LEN..];
        let plan = match plan(&hdr, data.len(), &self.features) {
            Ok(p) => p,
            Err(why) => return Ok(self.refuse(why)),
        };
        if !self.gather(plan.slots())? {
            self.metrics.no_slots += 1;
            return Ok(RxOutcome::NoSlots);
        }
        let filled;
        let data = match plan.fill_csum {
            Some((start, offset)) => {
                let mut owned = data.to_vec();
                fill_checksum(&mut owned, start, offset);
                filled = owned;
                &filled[..]
            }
            None => data,
        };
        let ok = self.write_frame(&plan, data)?;
        let notify = self.ring.push_responses_and_check_notify()?;
        if ok {
            self.metrics.packets += 1;
            self.metrics.bytes += data.len() as u64;
            Ok(RxOutcome::Delivered { notify })
        } else {
            self.metrics.drop(RxDrop::GrantCopy);
            Ok(RxOutcome::Dropped {
                reason: RxDrop::GrantCopy,
                notify,
            })
        }
    }

    fn refuse(&mut self, why: RxDrop) -> RxOutcome {
        tracing::debug!(?why, "netif: rx frame dropped");
        self.metrics.drop(why);
        RxOutcome::Dropped {
            reason: why,
            notify: false,
        }
    }

    /// Pulls requests off the ring until `n` are held; `false` if the guest has not posted
    /// that many (the ring then asks for an event on the next request).
    fn gather(&mut self, n: usize) -> Result<bool, NetifError> {
        let mut slot = [0u8; RX_SLOT_SIZE];
        while self.posted.len() < n {
            if self.ring.next_request(&mut slot)? {
                self.posted.push_back(NetifRxRequest::from_bytes(&slot));
            } else if !self.ring.final_check_for_requests()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes the frame and its responses using the first `plan.slots()` held requests;
    /// `false` if a grant copy failed (those slots are answered with an error).
    fn write_frame(&mut self, plan: &Plan, data: &[u8]) -> Result<bool, NetifError> {
        let mut ok = true;
        let mut chunks = data.chunks(PAGE_SIZE);
        for i in 0..plan.data_slots {
            let chunk = chunks.next().unwrap_or(&[]);
            let Some(req) = self.posted.pop_front() else {
                break;
            };
            if ok {
                if let Err(e) = self.gnttab.copy_to_grant(req.gref, 0, chunk) {
                    tracing::debug!(error = %e, "netif: rx grant copy");
                    ok = false;
                }
            }
            let mut flags = if i == 0 { plan.flags } else { 0 };
            if i + 1 < plan.data_slots {
                flags |= NETRXF_MORE_DATA;
            }
            if i == 0 && plan.gso.is_some() {
                flags |= NETRXF_EXTRA_INFO;
            }
            let rsp = NetifRxResponse {
                id: req.id,
                offset: 0,
                flags,
                status: if ok {
                    chunk.len() as i16
                } else {
                    NETIF_RSP_ERROR
                },
            };
            self.ring.push_response(&rsp.to_bytes())?;
            if let (0, Some((size, ty))) = (i, plan.gso) {
                // The extra-info slot takes the next request's slot; its page stays unused.
                let _ = self.posted.pop_front();
                self.ring
                    .push_response(&NetifExtraInfo::gso(size, ty).to_bytes())?;
            }
        }
        Ok(ok)
    }
}
