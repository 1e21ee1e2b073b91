//! Test frames: Ethernet + IPv4/IPv6 + TCP/UDP with a payload, and checksum checks.

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Bytes 0, 1, 2, ... so that misplaced data shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sum16(mut sum: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks_exact(2);
    for c in &mut it {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = it.remainder() {
        sum += u64::from(*b) << 8;
    }
    sum
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A frame: Ethernet (optionally VLAN-tagged), IPv4 or IPv6, TCP (20-byte header plus
/// `tcp_opts` bytes of options) or UDP, then `payload`. The L4 checksum field holds the
/// pseudo-header sum (a "partial" checksum), as a sender using offload leaves it.
pub fn frame(v6: bool, proto: u8, vlan: bool, tcp_opts: usize, payload: &[u8]) -> Frame {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    let l4_len = if proto == TCP { 20 + tcp_opts } else { 8 } + payload.len();
    let l3 = f.len() + 2;
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend((0..32).map(|i| 0x20 + i as u8));
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = !fold(sum16(0, &f[l3..l3 + 20]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    if proto == TCP {
        let doff = ((20 + tcp_opts) / 4) as u8;
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0]);
        f.extend_from_slice(&[doff << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend(std::iter::repeat_n(1u8, tcp_opts));
    } else {
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    let csum_offset = if proto == TCP { 16 } else { 6 };
    let mut fr = Frame {
        data: f,
        l3,
        l4,
        csum_offset,
        v6,
        proto,
    };
    let p = fr.pseudo_sum();
    fr.data[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&p.to_be_bytes());
    fr
}

/// A built frame and where its headers are.
#[derive(Clone, Debug)]
pub struct Frame {
    pub data: Vec<u8>,
    pub l3: usize,
    pub l4: usize,
    pub csum_offset: usize,
    pub v6: bool,
    pub proto: u8,
}

impl Frame {
    /// The folded pseudo-header sum (not complemented).
    pub fn pseudo_sum(&self) -> u16 {
        let len = (self.data.len() - self.l4) as u64;
        let addrs = if self.v6 {
            &self.data[self.l3 + 8..self.l3 + 40]
        } else {
            &self.data[self.l3 + 12..self.l3 + 20]
        };
        fold(sum16(u64::from(self.proto) + len, addrs))
    }

    /// Whether the L4 checksum of `data` (this frame's layout) is complete and right.
    pub fn checksum_ok(&self, data: &[u8]) -> bool {
        let len = (data.len() - self.l4) as u64;
        let addrs = if self.v6 {
            &data[self.l3 + 8..self.l3 + 40]
        } else {
            &data[self.l3 + 12..self.l3 + 20]
        };
        let s = sum16(u64::from(self.proto) + len, addrs);
        fold(sum16(s, &data[self.l4..])) == 0xffff
    }
}
