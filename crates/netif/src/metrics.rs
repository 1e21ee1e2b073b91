//! Errors, drop reasons and per-queue counters.

use xen_ring::RingError;

/// A fatal protocol violation: the caller must stop using (disconnect) the queue's vif.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetifError {
    /// The shared ring failed: impossible indices from the frontend
    /// ([`RingError::Overflow`]), or ring memory that cannot be accessed.
    #[error("netif ring: {0}")]
    Ring(#[from] RingError),
    /// A tx packet's chain (`NETTXF_more_data` or `XEN_NETIF_EXTRA_FLAG_MORE`) runs past the
    /// last request the frontend produced; netfront publishes whole packets, so the frontend
    /// is broken or hostile (netback treats this as fatal too).
    #[error("tx packet chain of {slots} slots runs past the requests the frontend produced")]
    IncompleteChain {
        /// Slots of the chain consumed before the requests ran out.
        slots: usize,
    },
}

/// Why a transmitted packet was dropped (its slots are answered with `NETIF_RSP_ERROR`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TxDrop {
    /// The first slot's size (the packet length) is below an Ethernet header.
    TooShort,
    /// More than `XEN_NETBK_LEGACY_SLOTS_MAX` data slots.
    TooManySlots,
    /// The following fragments add up to more than the packet length.
    FragmentsExceedTotal,
    /// A fragment's offset + size runs past its page.
    CrossesPage,
    /// An extra-info slot of an unknown (or receive-only) type.
    BadExtra,
    /// A GSO extra with a zero segment size or an unknown GSO type.
    BadGso,
    /// A grant copy failed (bad reference, not granted, frame outside guest memory...).
    GrantCopy,
    /// The headers do not allow the packet's checksum or segmentation offload.
    BadOffload,
}

impl TxDrop {
    /// Every reason, in counter order.
    pub const ALL: [TxDrop; 8] = [
        TxDrop::TooShort,
        TxDrop::TooManySlots,
        TxDrop::FragmentsExceedTotal,
        TxDrop::CrossesPage,
        TxDrop::BadExtra,
        TxDrop::BadGso,
        TxDrop::GrantCopy,
        TxDrop::BadOffload,
    ];
}

/// Why a frame for the guest was dropped.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RxDrop {
    /// No complete `virtio_net_hdr`, a frame shorter than an Ethernet header, a zero GSO
    /// segment size, or checksum offsets outside the frame.
    Malformed,
    /// Larger than [`crate::abi::MAX_FRAME_SIZE`], or than one page for a frontend without
    /// `feature-sg`.
    TooLarge,
    /// A TCP GSO frame the frontend did not ask for (`feature-gso-tcpv4`/`-tcpv6`, which also
    /// need `feature-sg` and checksum offload): the tap's offloads should not have allowed it.
    GsoNotNegotiated,
    /// A GSO type Xen cannot express (UDP fragmentation offload).
    GsoUnsupported,
    /// Copying into a granted page failed; the slots were answered with `NETIF_RSP_ERROR`.
    GrantCopy,
}

impl RxDrop {
    /// Every reason, in counter order.
    pub const ALL: [RxDrop; 5] = [
        RxDrop::Malformed,
        RxDrop::TooLarge,
        RxDrop::GsoNotNegotiated,
        RxDrop::GsoUnsupported,
        RxDrop::GrantCopy,
    ];
}

/// Counters of a [`crate::TxQueue`] (guest to host).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxMetrics {
    /// Packets handed to the sink.
    pub packets: u64,
    /// Their bytes (frames, without any header).
    pub bytes: u64,
    /// Multicast-control packets answered and not forwarded.
    pub control: u64,
    dropped: Counts<{ TxDrop::ALL.len() }>,
}

impl TxMetrics {
    /// Packets dropped for `why`.
    pub fn dropped(&self, why: TxDrop) -> u64 {
        self.dropped.0[why as usize]
    }

    /// Packets dropped for any reason.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.total()
    }

    pub(crate) fn drop(&mut self, why: TxDrop) {
        self.dropped.bump(why as usize);
    }
}

/// Counters of a [`crate::RxQueue`] (host to guest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RxMetrics {
    /// Frames delivered to the guest.
    pub packets: u64,
    /// Their bytes (frames, without the `virtio_net_hdr`).
    pub bytes: u64,
    /// Times a frame had to wait for the guest to post rx requests.
    pub no_slots: u64,
    dropped: Counts<{ RxDrop::ALL.len() }>,
}

impl RxMetrics {
    /// Frames dropped for `why`.
    pub fn dropped(&self, why: RxDrop) -> u64 {
        self.dropped.0[why as usize]
    }

    /// Frames dropped for any reason.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.total()
    }

    pub(crate) fn drop(&mut self, why: RxDrop) {
        self.dropped.bump(why as usize);
    }
}

/// One counter per drop reason.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Counts<const N: usize>([u64; N]);

impl<const N: usize> Default for Counts<N> {
    fn default() -> Self {
        Counts([0; N])
    }
}

impl<const N: usize> Counts<N> {
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn bump(&mut self, i: usize) {
        self.0[i] = self.0[i].saturating_add(1);
    }
}
