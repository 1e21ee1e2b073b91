//! A guest's transmitted packet as handed to the host, and its `virtio_net_hdr`.

use crate::offload::{
    parse_l4, IpVersion, OffloadError, VirtioNetHdr, VIRTIO_NET_HDR_F_DATA_VALID,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
};

/// The protocol of a GSO packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4`).
    V4,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6`).
    V6,
}

/// Segmentation offload of a packet larger than one segment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Gso {
    /// The protocol.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS); never 0.
    pub size: u16,
}

/// One Ethernet frame the guest transmitted, copied out of its granted pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    /// The frame, from the destination MAC address on.
    pub data: Vec<u8>,
    /// The L4 checksum field holds only the pseudo-header sum: the host must complete it.
    pub csum_blank: bool,
    /// The guest vouches for the data's checksum.
    pub data_validated: bool,
    /// Segmentation offload, if the frame is larger than one segment.
    pub gso: Option<Gso>,
}

impl TxPacket {
    /// The `virtio_net_hdr` to write before `data` on a tap with `IFF_VNET_HDR`: `NEEDS_CSUM`
    /// with the L4 header's offsets for `csum_blank`, `DATA_VALID` for `data_validated`, and
    /// the GSO type, segment size and header length for `gso`.
    ///
    /// Packets handed out by [`crate::TxQueue::process_tx`] were already checked (a packet
    /// whose headers do not allow its offloads is dropped there), so this cannot fail for
    /// them.
    pub fn virtio_net_hdr(&self) -> Result<VirtioNetHdr, OffloadError> {
        let mut hdr = VirtioNetHdr::default();
        if self.data_validated {
            hdr.flags = VIRTIO_NET_HDR_F_DATA_VALID;
        }
        if !self.csum_blank && self.gso.is_none() {
            return Ok(hdr);
        }
        let l4 = parse_l4(&self.data)?;
        if self.csum_blank {
            hdr.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            hdr.csum_start = l4.l4_start as u16;
            hdr.csum_offset = l4.csum_offset();
        }
        hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE;
        if let Some(gso) = self.gso {
            let (gso_type, ip) = match gso.kind {
                GsoKind::V4 => (VIRTIO_NET_HDR_GSO_TCPV4, IpVersion::V4),
                GsoKind::V6 => (VIRTIO_NET_HDR_GSO_TCPV6, IpVersion::V6),
            };
            if !l4.tcp || l4.ip != ip || !self.csum_blank {
                return Err(OffloadError::GsoMismatch);
            }
            hdr.gso_type = gso_type;
            hdr.gso_size = gso.size;
            hdr.hdr_len = (l4.l4_start + l4.l4_len) as u16;
        }
        Ok(hdr)
    }

    /// Makes the packet offloadable as netback does before handing it to the host stack: a
    /// GSO packet without `csum_blank` gets the pseudo-header sum written into its checksum
    /// field and `csum_blank` set (segmentation needs a partial checksum).
    pub(crate) fn prepare_offload(&mut self) -> Result<(), OffloadError> {
        if self.gso.is_some() && !self.csum_blank {
            let l4 = parse_l4(&self.data)?;
            crate::offload::set_pseudo_header_sum(&mut self.data, &l4);
            self.csum_blank = true;
        }
        self.virtio_net_hdr().map(|_| ())
    }
}
