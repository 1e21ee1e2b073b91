//! Checksum and segmentation offload: the `virtio_net_hdr` a Linux tap with `IFF_VNET_HDR`
//! reads and writes, and the header parsing both directions need.
//!
//! The header is the legacy 10-byte `struct virtio_net_hdr` in the host's (little-endian)
//! byte order, as a tap uses it unless told otherwise (`TUNSETVNETBE`).

/// Size of `struct virtio_net_hdr`.
pub const VIRTIO_NET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: fill in the checksum at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO; Xen has no equivalent).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a bit or-ed into the type).
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Offsets of the checksum field in TCP and UDP headers.
const TCP_CSUM_OFFSET: u16 = 16;
const UDP_CSUM_OFFSET: u16 = 6;

/// `struct virtio_net_hdr`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP) of a GSO frame; 0 otherwise.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the L4 header).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum goes.
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// Encodes the header (little-endian).
    pub fn to_bytes(&self) -> [u8; VIRTIO_NET_HDR_LEN] {
        let mut b = [0u8; VIRTIO_NET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Decodes the header at the start of `b`; `None` if `b` is too short.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b = b.get(..VIRTIO_NET_HDR_LEN)?;
        let u = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }
}

/// Why a frame's headers do not allow the offload asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The frame ends inside a header.
    #[error("frame too short for its headers")]
    Truncated,
    /// Neither IPv4 nor IPv6 (after at most two VLAN tags).
    #[error("ethertype {0:#06x} is not IPv4 or IPv6")]
    NotIp(u16),
    /// A malformed IP header (bad version or header length).
    #[error("malformed IP header")]
    BadIpHeader,
    /// An IP fragment: its L4 checksum cannot be offloaded.
    #[error("IP fragment")]
    Fragment,
    /// The transport protocol is neither TCP nor UDP.
    #[error("IP protocol {0} is neither TCP nor UDP")]
    NotTcpUdp(u8),
    /// GSO asked for a frame that is not TCP over the right IP version.
    #[error("GSO type does not match the frame's headers")]
    GsoMismatch,
    /// Offsets beyond 64 KiB (cannot be expressed in the header).
    #[error("header offsets out of range")]
    OutOfRange,
}

/// IP version of a parsed frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum IpVersion {
    V4,
    V6,
}

/// Where a frame's transport header is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct L4Info {
    pub ip: IpVersion,
    /// Start of the IP header.
    pub l3_start: usize,
    pub tcp: bool,
    /// Start of the TCP/UDP header.
    pub l4_start: usize,
    /// Length of the TCP/UDP header.
    pub l4_len: usize,
}

impl L4Info {
    /// Offset of the checksum field from `l4_start`.
    pub fn csum_offset(&self) -> u16 {
        if self.tcp {
            TCP_CSUM_OFFSET
        } else {
            UDP_CSUM_OFFSET
        }
    }
}

fn be16(f: &[u8], at: usize) -> Result<u16, OffloadError> {
    match f.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(OffloadError::Truncated),
    }
}

fn byte(f: &[u8], at: usize) -> Result<u8, OffloadError> {
    f.get(at).copied().ok_or(OffloadError::Truncated)
}

/// Finds the TCP or UDP header of an Ethernet frame (what Linux's `skb_checksum_setup` does).
pub(crate) fn parse_l4(f: &[u8]) -> Result<L4Info, OffloadError> {
    let mut off = 12;
    let mut ethertype = be16(f, off)?;
    // At most two VLAN tags (802.1Q, 802.1ad).
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        off += 4;
        ethertype = be16(f, off)?;
    }
    let l3 = off + 2;
    let (ip, proto, l4) = match ethertype {
        ETHERTYPE_IPV4 => {
            let vihl = byte(f, l3)?;
            let ihl = usize::from(vihl & 0xf) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(OffloadError::BadIpHeader);
            }
            // More-fragments flag or a fragment offset.
            if be16(f, l3 + 6)? & 0x3fff != 0 {
                return Err(OffloadError::Fragment);
            }
            (IpVersion::V4, byte(f, l3 + 9)?, l3 + ihl)
        }
        ETHERTYPE_IPV6 => {
            if byte(f, l3)? >> 4 != 6 {
                return Err(OffloadError::BadIpHeader);
            }
            let (proto, l4) = skip_ipv6_extensions(f, byte(f, l3 + 6)?, l3 + 40)?;
            (IpVersion::V6, proto, l4)
        }
        other => return Err(OffloadError::NotIp(other)),
    };
    let (tcp, l4_len) = match proto {
        IPPROTO_TCP => {
            let doff = usize::from(byte(f, l4 + 12)? >> 4) * 4;
            if doff < 20 {
                return Err(OffloadError::Truncated);
            }
            (true, doff)
        }
        IPPROTO_UDP => (false, 8),
        other => return Err(OffloadError::NotTcpUdp(other)),
    };
    if l4 + l4_len > f.len() {
        return Err(OffloadError::Truncated);
    }
    if l4 + l4_len > usize::from(u16::MAX) {
        return Err(OffloadError::OutOfRange);
    }
    Ok(L4Info {
        ip,
        l3_start: l3,
        tcp,
        l4_start: l4,
        l4_len,
    })
}

/// Skips IPv6 extension headers (hop-by-hop, routing, destination options, AH); returns the
/// transport protocol and where its header starts.
fn skip_ipv6_extensions(
    f: &[u8],
    mut next: u8,
    mut off: usize,
) -> Result<(u8, usize), OffloadError> {
    // A bound on the chain, so a hostile frame cannot make this loop long.
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => (usize::from(byte(f, off + 1)?) + 1) * 8,
            51 => (usize::from(byte(f, off + 1)?) + 2) * 4,
            44 => return Err(OffloadError::Fragment),
            _ => return Ok((next, off)),
        };
        next = byte(f, off)?;
        off += len;
    }
    Err(OffloadError::BadIpHeader)
}

/// Adds `data` as big-endian 16-bit words to a one's-complement sum.
fn sum_words(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Computes the checksum a device computes for `NEEDS_CSUM`: the one's-complement sum from
/// `start` to the end (the field already holds the pseudo-header sum), stored complemented
/// at `start + offset`. Returns `false` (frame unchanged) if the offsets are out of range.
pub(crate) fn fill_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(at) = start.checked_add(offset) else {
        return false;
    };
    if start >= frame.len() || at.saturating_add(2) > frame.len() {
        return false;
    }
    let mut csum = !fold(sum_words(0, &frame[start..]));
    // A UDP checksum of 0 means "none"; send its other encoding instead.
    if offset == usize::from(UDP_CSUM_OFFSET) && csum == 0 {
        csum = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    true
}

/// Writes the pseudo-header sum into the L4 checksum field (not complemented), as a frame
/// with `NEEDS_CSUM` carries it; for frames whose sender left the field unprepared.
pub(crate) fn set_pseudo_header_sum(frame: &mut [u8], l4: &L4Info) {
    let len = (frame.len() - l4.l4_start) as u64;
    let proto = if l4.tcp { IPPROTO_TCP } else { IPPROTO_UDP };
    let addrs = match l4.ip {
        IpVersion::V4 => l4.l3_start + 12..l4.l3_start + 20,
        IpVersion::V6 => l4.l3_start + 8..l4.l3_start + 40,
    };
    let sum = sum_words(u64::from(proto) + len, &frame[addrs]);
    let at = l4.l4_start + usize::from(l4.csum_offset());
    frame[at..at + 2].copy_from_slice(&fold(sum).to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests;
