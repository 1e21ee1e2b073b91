//! The netif ring ABI (xen/include/public/io/netif.h), as byte layouts.
//!
//! Ring slots are read and written as little-endian bytes through `from_bytes`/`to_bytes`, so
//! nothing here needs `unsafe`. The `#[repr(C)]` structs mirror the header and their sizes are
//! checked in the tests below.
//!
//! A tx ring slot is 12 bytes (the request; a response uses the first 4, an extra-info the
//! first 8). An rx ring slot is 8 bytes (request, response or extra-info alike).

/// Size of a tx ring slot (`union { netif_tx_request; netif_tx_response }`).
pub const TX_SLOT_SIZE: usize = 12;
/// Size of an rx ring slot.
pub const RX_SLOT_SIZE: usize = 8;
/// Guest page size: every granted buffer is one page.
pub const PAGE_SIZE: usize = 4096;

/// `NETTXF_csum_blank`: the L4 checksum holds only the pseudo-header sum (checksum offload).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the data was already checked against its checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next request.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: extra-info slots follow this (first) request.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated`.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`: the packet continues in the next response.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows this (first) response.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETRXF_gso_prefix`: the old GSO-prefix scheme (not used by this backend).
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `XEN_NETIF_EXTRA_TYPE_NONE` (never valid).
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO` (`u.gso`).
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD` (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL` (`u.mcast`).
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH` (`u.hash`).
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_XDP` (`u.xdp`, receive side only).
pub const XEN_NETIF_EXTRA_TYPE_XDP: u8 = 5;
/// `XEN_NETIF_EXTRA_TYPE_MAX`.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 6;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `XEN_NETIF_RSP_DROPPED`.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `XEN_NETIF_RSP_ERROR`.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `XEN_NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `XEN_NETIF_RSP_NULL`: the response to an extra-info slot.
pub const NETIF_RSP_NULL: i16 = 1;

/// `XEN_NETBK_LEGACY_SLOTS_MAX` (= `XEN_NETIF_NR_SLOTS_MIN`): the most data slots one packet
/// may use in either direction; Linux netfront never sends more and drops more on receive.
pub const XEN_NETBK_LEGACY_SLOTS_MAX: usize = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: the largest tx packet (the first slot's `size` is a `u16`).
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;
/// Ethernet header length; shorter tx packets are dropped, as netback does.
pub const ETH_HLEN: usize = 14;
/// The largest frame this backend moves: a 64 KiB IP packet behind an Ethernet header with
/// one VLAN tag.
pub const MAX_FRAME_SIZE: usize = 0xFFFF + ETH_HLEN + 4;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `struct netif_tx_request`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    /// Grant reference of the buffer page.
    pub gref: u32,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: the whole packet's length; later slots: this fragment's length.
    pub size: u16,
}

impl NetifTxRequest {
    /// Decodes a tx ring slot.
    pub fn from_bytes(b: &[u8; TX_SLOT_SIZE]) -> Self {
        NetifTxRequest {
            gref: u32_at(b, 0),
            offset: u16_at(b, 4),
            flags: u16_at(b, 6),
            id: u16_at(b, 8),
            size: u16_at(b, 10),
        }
    }

    /// Encodes the request as a tx ring slot.
    pub fn to_bytes(&self) -> [u8; TX_SLOT_SIZE] {
        let mut b = [0u8; TX_SLOT_SIZE];
        b[0..4].copy_from_slice(&self.gref.to_le_bytes());
        b[4..6].copy_from_slice(&self.offset.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..10].copy_from_slice(&self.id.to_le_bytes());
        b[10..12].copy_from_slice(&self.size.to_le_bytes());
        b
    }
}

/// `struct netif_tx_response`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

impl NetifTxResponse {
    /// Encodes the response (its 4 bytes; the rest of the slot is unused).
    pub fn to_bytes(&self) -> [u8; 4] {
        let mut b = [0u8; 4];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Decodes a tx response from the start of a slot.
    pub fn from_bytes(b: &[u8; 4]) -> Self {
        NetifTxResponse {
            id: u16_at(b, 0),
            status: u16_at(b, 2) as i16,
        }
    }
}

/// `struct netif_rx_request`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding (the header's implicit hole before `gref`).
    pub pad: u16,
    /// Grant reference of the page to fill.
    pub gref: u32,
}

impl NetifRxRequest {
    /// Decodes an rx ring slot.
    pub fn from_bytes(b: &[u8; RX_SLOT_SIZE]) -> Self {
        NetifRxRequest {
            id: u16_at(b, 0),
            pad: 0,
            gref: u32_at(b, 4),
        }
    }

    /// Encodes the request as an rx ring slot.
    pub fn to_bytes(&self) -> [u8; RX_SLOT_SIZE] {
        let mut b = [0u8; RX_SLOT_SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[4..8].copy_from_slice(&self.gref.to_le_bytes());
        b
    }
}

/// `struct netif_rx_response`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    /// The request's id.
    pub id: u16,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes in this slot, or a negative `NETIF_RSP_*`.
    pub status: i16,
}

impl NetifRxResponse {
    /// Encodes the response as an rx ring slot.
    pub fn to_bytes(&self) -> [u8; RX_SLOT_SIZE] {
        let mut b = [0u8; RX_SLOT_SIZE];
        b[0..2].copy_from_slice(&self.id.to_le_bytes());
        b[2..4].copy_from_slice(&self.offset.to_le_bytes());
        b[4..6].copy_from_slice(&self.flags.to_le_bytes());
        b[6..8].copy_from_slice(&self.status.to_le_bytes());
        b
    }

    /// Decodes an rx ring slot as a response.
    pub fn from_bytes(b: &[u8; RX_SLOT_SIZE]) -> Self {
        NetifRxResponse {
            id: u16_at(b, 0),
            offset: u16_at(b, 2),
            flags: u16_at(b, 4),
            status: u16_at(b, 6) as i16,
        }
    }
}

/// `struct netif_extra_info`: type, flags and a 6-byte union. It fills an rx slot and the
/// first 8 bytes of a tx slot.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub ty: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The union `u`, raw.
    pub u: [u8; 6],
}

/// The decoded union of a [`NetifExtraInfo`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExtraInfo {
    /// `u.gso`: segment size, `XEN_NETIF_GSO_TYPE_*`, `XEN_NETIF_GSO_FEAT_*`.
    Gso {
        /// Largest payload of one segment (the TCP MSS).
        size: u16,
        /// `XEN_NETIF_GSO_TYPE_*`.
        ty: u8,
        /// Extra GSO features.
        features: u16,
    },
    /// `u.mcast` of `MCAST_ADD`: a multicast address to receive.
    McastAdd([u8; 6]),
    /// `u.mcast` of `MCAST_DEL`.
    McastDel([u8; 6]),
    /// `u.hash`: hash type, algorithm, value.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
        ty: u8,
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// The hash.
        value: u32,
    },
    /// `u.xdp`: headroom the frontend wants before received data.
    Xdp {
        /// Bytes of headroom.
        headroom: u16,
    },
    /// `NONE` or a type this header does not know.
    Unknown(u8),
}

impl NetifExtraInfo {
    /// Decodes the first 8 bytes of a slot.
    pub fn from_bytes(b: &[u8; 8]) -> Self {
        let mut u = [0u8; 6];
        u.copy_from_slice(&b[2..8]);
        NetifExtraInfo {
            ty: b[0],
            flags: b[1],
            u,
        }
    }

    /// Encodes the extra info as 8 bytes.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.ty;
        b[1] = self.flags;
        b[2..8].copy_from_slice(&self.u);
        b
    }

    /// A GSO extra (`flags` 0).
    pub fn gso(size: u16, gso_type: u8) -> Self {
        let mut u = [0u8; 6];
        u[0..2].copy_from_slice(&size.to_le_bytes());
        u[2] = gso_type;
        NetifExtraInfo {
            ty: XEN_NETIF_EXTRA_TYPE_GSO,
            flags: 0,
            u,
        }
    }

    /// Whether another extra-info slot follows.
    pub fn more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }

    /// The union, decoded according to `ty`.
    pub fn decode(&self) -> ExtraInfo {
        let u = &self.u;
        match self.ty {
            XEN_NETIF_EXTRA_TYPE_GSO => ExtraInfo::Gso {
                size: u16_at(u, 0),
                ty: u[2],
                features: u16_at(u, 4),
            },
            XEN_NETIF_EXTRA_TYPE_MCAST_ADD => ExtraInfo::McastAdd(*u),
            XEN_NETIF_EXTRA_TYPE_MCAST_DEL => ExtraInfo::McastDel(*u),
            XEN_NETIF_EXTRA_TYPE_HASH => ExtraInfo::Hash {
                ty: u[0],
                algorithm: u[1],
                value: u32_at(u, 2),
            },
            XEN_NETIF_EXTRA_TYPE_XDP => ExtraInfo::Xdp {
                headroom: u16_at(u, 0),
            },
            other => ExtraInfo::Unknown(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn sizes_match_the_header() {
        assert_eq!(size_of::<NetifTxRequest>(), 12);
        assert_eq!(size_of::<NetifTxResponse>(), 4);
        assert_eq!(size_of::<NetifRxRequest>(), 8);
        assert_eq!(size_of::<NetifRxResponse>(), 8);
        assert_eq!(size_of::<NetifExtraInfo>(), 8);
        assert_eq!(TX_SLOT_SIZE, size_of::<NetifTxRequest>());
        assert_eq!(RX_SLOT_SIZE, size_of::<NetifRxResponse>());
        assert_eq!(XEN_NETBK_LEGACY_SLOTS_MAX, 18);
        assert_eq!(MAX_FRAME_SIZE, 65553);
        // The largest frame fits in the data slots netfront accepts.
        const { assert!(MAX_FRAME_SIZE <= XEN_NETBK_LEGACY_SLOTS_MAX * PAGE_SIZE) };
    }

    #[test]
    fn flag_values_match_the_header() {
        assert_eq!(
            [
                NETTXF_CSUM_BLANK,
                NETTXF_DATA_VALIDATED,
                NETTXF_MORE_DATA,
                NETTXF_EXTRA_INFO
            ],
            [1, 2, 4, 8]
        );
        assert_eq!(
            [
                NETRXF_DATA_VALIDATED,
                NETRXF_CSUM_BLANK,
                NETRXF_MORE_DATA,
                NETRXF_EXTRA_INFO,
                NETRXF_GSO_PREFIX
            ],
            [1, 2, 4, 8, 16]
        );
        assert_eq!(
            [
                NETIF_RSP_DROPPED,
                NETIF_RSP_ERROR,
                NETIF_RSP_OKAY,
                NETIF_RSP_NULL
            ],
            [-2, -1, 0, 1]
        );
        assert_eq!((XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6), (1, 2));
    }

    #[test]
    fn layouts_round_trip_at_the_header_offsets() {
        let r = NetifTxRequest {
            gref: 0x0403_0201,
            offset: 0x0605,
            flags: 0x0807,
            id: 0x0a09,
            size: 0x0c0b,
        };
        assert_eq!(r.to_bytes(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(NetifTxRequest::from_bytes(&r.to_bytes()), r);

        let rx = NetifRxRequest {
            id: 0x0201,
            pad: 0,
            gref: 0x0807_0605,
        };
        assert_eq!(rx.to_bytes(), [1, 2, 0, 0, 5, 6, 7, 8]);
        assert_eq!(NetifRxRequest::from_bytes(&rx.to_bytes()), rx);

        let rsp = NetifRxResponse {
            id: 1,
            offset: 2,
            flags: 3,
            status: -1,
        };
        assert_eq!(rsp.to_bytes(), [1, 0, 2, 0, 3, 0, 0xff, 0xff]);
        assert_eq!(NetifRxResponse::from_bytes(&rsp.to_bytes()), rsp);

        let t = NetifTxResponse { id: 7, status: -2 };
        assert_eq!(t.to_bytes(), [7, 0, 0xfe, 0xff]);
        assert_eq!(NetifTxResponse::from_bytes(&t.to_bytes()), t);

        let g = NetifExtraInfo::gso(1448, XEN_NETIF_GSO_TYPE_TCPV6);
        assert_eq!(g.to_bytes(), [1, 0, 0xa8, 0x05, 2, 0, 0, 0]);
        assert_eq!(
            NetifExtraInfo::from_bytes(&g.to_bytes()).decode(),
            ExtraInfo::Gso {
                size: 1448,
                ty: 2,
                features: 0
            }
        );
        let h = NetifExtraInfo::from_bytes(&[4, 1, 3, 1, 0x78, 0x56, 0x34, 0x12]);
        assert!(h.more());
        assert_eq!(
            h.decode(),
            ExtraInfo::Hash {
                ty: 3,
                algorithm: 1,
                value: 0x1234_5678
            }
        );
        let m = NetifExtraInfo::from_bytes(&[2, 0, 1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(m.decode(), ExtraInfo::McastAdd([1, 0, 0x5e, 0, 0, 1]));
        assert_eq!(
            NetifExtraInfo::from_bytes(&[3, 0, 9, 9, 9, 9, 9, 9]).decode(),
            ExtraInfo::McastDel([9; 6])
        );
        assert_eq!(
            NetifExtraInfo::from_bytes(&[5, 0, 64, 0, 0, 0, 0, 0]).decode(),
            ExtraInfo::Xdp { headroom: 64 }
        );
        assert_eq!(
            NetifExtraInfo::from_bytes(&[0; 8]).decode(),
            ExtraInfo::Unknown(0)
        );
        assert_eq!(
            NetifExtraInfo::from_bytes(&[9; 8]).decode(),
            ExtraInfo::Unknown(9)
        );
    }
}
