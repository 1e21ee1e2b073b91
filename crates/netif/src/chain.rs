//! Parsing one tx packet's request chain: the first request, its extra-info slots, then its
//! fragments. Ring-independent: the queue feeds slots in ring order.
//!
//! Nothing is trusted: every slot is recorded (it needs a response) even once the packet is
//! known to be dropped, and only the first reason for dropping is kept.

use crate::abi::*;
use crate::packet::{Gso, GsoKind};
use crate::TxDrop;

/// A consumed slot, remembered so that it gets its response.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Consumed {
    /// A request: answered with its id and the packet's status.
    Request(u16),
    /// An extra-info slot: answered with `NETIF_RSP_NULL`.
    Extra,
}

/// Where one fragment's bytes are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frag {
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
}

/// A valid packet, ready to be copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Body {
    pub frags: Vec<Frag>,
    pub total: usize,
    pub csum_blank: bool,
    pub data_validated: bool,
    pub gso: Option<Gso>,
    /// A multicast-control packet: answered but not transmitted (as netback does).
    pub control: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    Extras,
    Frags,
    Done,
}

/// One packet's chain, being read.
#[derive(Debug)]
pub(crate) struct Chain {
    first: NetifTxRequest,
    slots: Vec<Consumed>,
    /// The fragments after the first (the first's length is known only at the end).
    frags: Vec<Frag>,
    /// `first.size` minus the following fragments' sizes: the first fragment's length.
    remaining: u16,
    state: State,
    drop: Option<TxDrop>,
    gso: Option<Gso>,
    control: bool,
}

impl Chain {
    /// Starts a chain at its first request.
    pub fn new(slot: &[u8; TX_SLOT_SIZE]) -> Chain {
        let first = NetifTxRequest::from_bytes(slot);
        let state = if first.flags & NETTXF_EXTRA_INFO != 0 {
            State::Extras
        } else if first.flags & NETTXF_MORE_DATA != 0 {
            State::Frags
        } else {
            State::Done
        };
        let mut c = Chain {
            first,
            slots: vec![Consumed::Request(first.id)],
            frags: Vec::new(),
            remaining: first.size,
            state,
            drop: None,
            gso: None,
            control: false,
        };
        if usize::from(first.size) < ETH_HLEN {
            c.fail(TxDrop::TooShort);
        }
        c
    }

    fn fail(&mut self, why: TxDrop) {
        self.drop.get_or_insert(why);
    }

    /// Whether the chain is complete.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Slots consumed so far.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Takes the next slot of an unfinished chain.
    pub fn push(&mut self, slot: &[u8; TX_SLOT_SIZE]) {
        match self.state {
            State::Extras => self.push_extra(slot),
            State::Frags => self.push_frag(slot),
            State::Done => {}
        }
    }

    fn push_extra(&mut self, slot: &[u8; TX_SLOT_SIZE]) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&slot[..8]);
        let extra = NetifExtraInfo::from_bytes(&b);
        self.slots.push(Consumed::Extra);
        match extra.decode() {
            ExtraInfo::Gso { size, ty, .. } => {
                let kind = match ty {
                    XEN_NETIF_GSO_TYPE_TCPV4 => Some(GsoKind::V4),
                    XEN_NETIF_GSO_TYPE_TCPV6 => Some(GsoKind::V6),
                    _ => None,
                };
                match kind {
                    Some(kind) if size > 0 => self.gso = Some(Gso { kind, size }),
                    _ => self.fail(TxDrop::BadGso),
                }
            }
            ExtraInfo::McastAdd(_) | ExtraInfo::McastDel(_) => self.control = true,
            // A hash the frontend computed: nothing to do with it on a tap.
            ExtraInfo::Hash { .. } => {}
            ExtraInfo::Xdp { .. } | ExtraInfo::Unknown(_) => self.fail(TxDrop::BadExtra),
        }
        if !extra.more() {
            self.state = if self.first.flags & NETTXF_MORE_DATA != 0 {
                State::Frags
            } else {
                State::Done
            };
        }
    }

    fn push_frag(&mut self, slot: &[u8; TX_SLOT_SIZE]) {
        let req = NetifTxRequest::from_bytes(slot);
        self.slots.push(Consumed::Request(req.id));
        if req.flags & NETTXF_MORE_DATA == 0 {
            self.state = State::Done;
        }
        // The first request is a data slot too.
        if self.frags.len() + 1 >= XEN_NETBK_LEGACY_SLOTS_MAX {
            self.fail(TxDrop::TooManySlots);
        }
        if usize::from(req.offset) + usize::from(req.size) > PAGE_SIZE {
            self.fail(TxDrop::CrossesPage);
        }
        match self.remaining.checked_sub(req.size) {
            Some(r) => self.remaining = r,
            None => {
                self.remaining = 0;
                self.fail(TxDrop::FragmentsExceedTotal);
            }
        }
        if self.drop.is_none() {
            self.frags.push(Frag {
                gref: req.gref,
                offset: req.offset,
                len: req.size,
            });
        }
    }

    /// Ends a complete chain: the slots to answer, and the packet or why it is dropped.
    pub fn finish(mut self) -> (Vec<Consumed>, Result<Body, TxDrop>) {
        let first = self.first;
        if usize::from(first.offset) + usize::from(self.remaining) > PAGE_SIZE {
            self.fail(TxDrop::CrossesPage);
        }
        if let Some(why) = self.drop {
            return (self.slots, Err(why));
        }
        let mut frags = Vec::with_capacity(self.frags.len() + 1);
        frags.push(Frag {
            gref: first.gref,
            offset: first.offset,
            len: self.remaining,
        });
        frags.extend(self.frags);
        let body = Body {
            frags,
            total: usize::from(first.size),
            csum_blank: first.flags & NETTXF_CSUM_BLANK != 0,
            data_validated: first.flags & NETTXF_DATA_VALIDATED != 0,
            gso: self.gso,
            control: self.control,
        };
        (self.slots, Ok(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tx_req as req;

    fn extra(ty: u8, flags: u8, u: [u8; 6]) -> [u8; TX_SLOT_SIZE] {
        let mut s = [0xee; TX_SLOT_SIZE];
        s[..8].copy_from_slice(&NetifExtraInfo { ty, flags, u }.to_bytes());
        s
    }

    fn run(slots: &[[u8; TX_SLOT_SIZE]]) -> (Vec<Consumed>, Result<Body, TxDrop>) {
        let mut c = Chain::new(&slots[0]);
        for s in &slots[1..] {
            assert!(!c.done());
            c.push(s);
        }
        assert!(c.done());
        assert_eq!(c.len(), slots.len());
        c.finish()
    }

    #[test]
    fn single_slot() {
        let (slots, body) = run(&[req(5, 100, NETTXF_CSUM_BLANK, 7, 60)]);
        assert_eq!(slots, vec![Consumed::Request(7)]);
        let b = body.unwrap();
        assert_eq!(
            b.frags,
            vec![Frag {
                gref: 5,
                offset: 100,
                len: 60
            }]
        );
        assert!(b.csum_blank && !b.data_validated && !b.control);
    }

    #[test]
    fn extras_then_fragments() {
        let (slots, body) = run(&[
            req(1, 0, NETTXF_MORE_DATA | NETTXF_EXTRA_INFO, 1, 5000),
            extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE, [0; 6]),
            extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, [0xa8, 5, 1, 0, 0, 0]),
            req(2, 0, 0, 2, 1000),
        ]);
        assert_eq!(
            slots,
            vec![
                Consumed::Request(1),
                Consumed::Extra,
                Consumed::Extra,
                Consumed::Request(2)
            ]
        );
        let b = body.unwrap();
        assert_eq!(b.total, 5000);
        assert_eq!(b.frags[0].len, 4000);
        assert_eq!(b.frags[1].len, 1000);
        assert_eq!(
            b.gso,
            Some(Gso {
                kind: GsoKind::V4,
                size: 1448
            })
        );
    }

    #[test]
    fn drops_keep_reading_the_chain() {
        // Too short, but the chain still runs to its end.
        let (slots, body) = run(&[req(1, 0, NETTXF_MORE_DATA, 1, 10), req(2, 0, 0, 2, 5)]);
        assert_eq!(slots.len(), 2);
        assert_eq!(body.unwrap_err(), TxDrop::TooShort);
        let (_, body) = run(&[req(1, 0, NETTXF_MORE_DATA, 1, 100), req(2, 0, 0, 2, 101)]);
        assert_eq!(body.unwrap_err(), TxDrop::FragmentsExceedTotal);
        let (_, body) = run(&[req(1, 4000, 0, 1, 100)]);
        assert_eq!(body.unwrap_err(), TxDrop::CrossesPage);
        let (_, body) = run(&[req(1, 0, NETTXF_MORE_DATA, 1, 100), req(2, 4090, 0, 2, 7)]);
        assert_eq!(body.unwrap_err(), TxDrop::CrossesPage);
        let (_, body) = run(&[
            req(1, 0, NETTXF_EXTRA_INFO, 1, 100),
            extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, [0, 0, 1, 0, 0, 0]),
        ]);
        assert_eq!(body.unwrap_err(), TxDrop::BadGso);
        let (_, body) = run(&[
            req(1, 0, NETTXF_EXTRA_INFO, 1, 100),
            extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, [1, 0, 3, 0, 0, 0]),
        ]);
        assert_eq!(body.unwrap_err(), TxDrop::BadGso);
        for ty in [0, XEN_NETIF_EXTRA_TYPE_XDP, 6, 255] {
            let (_, body) = run(&[req(1, 0, NETTXF_EXTRA_INFO, 1, 100), extra(ty, 0, [0; 6])]);
            assert_eq!(body.unwrap_err(), TxDrop::BadExtra, "type {ty}");
        }
    }

    #[test]
    fn slot_limit_is_eighteen_data_slots() {
        let chain = |n: usize| {
            let mut v = vec![req(0, 0, NETTXF_MORE_DATA, 0, (n * 100) as u16)];
            for i in 1..n {
                let flags = if i + 1 < n { NETTXF_MORE_DATA } else { 0 };
                v.push(req(i as u32, 0, flags, i as u16, 100));
            }
            v
        };
        let (_, body) = run(&chain(XEN_NETBK_LEGACY_SLOTS_MAX));
        assert_eq!(body.unwrap().frags.len(), XEN_NETBK_LEGACY_SLOTS_MAX);
        let (slots, body) = run(&chain(XEN_NETBK_LEGACY_SLOTS_MAX + 1));
        assert_eq!(slots.len(), XEN_NETBK_LEGACY_SLOTS_MAX + 1);
        assert_eq!(body.unwrap_err(), TxDrop::TooManySlots);
    }

    #[test]
    fn multicast_control_and_zero_length_fragments() {
        let (slots, body) = run(&[
            req(1, 0, NETTXF_EXTRA_INFO, 1, ETH_HLEN as u16),
            extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0, [1, 0, 0x5e, 0, 0, 1]),
        ]);
        assert_eq!(slots, vec![Consumed::Request(1), Consumed::Extra]);
        assert!(body.unwrap().control);
        let (_, body) = run(&[req(1, 0, NETTXF_MORE_DATA, 1, 60), req(2, 4096, 0, 2, 0)]);
        let b = body.unwrap();
        assert_eq!((b.frags[0].len, b.frags[1].len), (60, 0));
    }
}
