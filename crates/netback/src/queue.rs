//! Two threads per netif queue: tx (guest → tap) woken by the tx event channel, and rx
//! (tap → guest) woken by the tap, the rx event channel, or both.
//!
//! With one event channel for both directions, only the tx thread reads its kicks and passes
//! each on to the rx thread through an eventfd of its own (a kick may mean either).

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netif::abi::MAX_FRAME_SIZE;
use netif::{NetifError, RxOutcome, RxQueue, TxPacket, TxQueue};
use pv_host::EventPort;
use tap::{Tap, VNET_HDR_LEN};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;
use xen::gnttab::GrantMapping;
use xen_ring::GuestRingPages;

use crate::rate::TokenBucket;
use crate::Metrics;

type Pages = GuestRingPages<GuestMemoryMmap>;
/// Frames delivered before the guest is notified mid-batch.
const NOTIFY_BATCH: usize = 64;

/// What queue threads report to the device.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Each connected queue's counters.
    pub(crate) live: Mutex<Vec<Metrics>>,
    /// Counters of earlier connections.
    pub(crate) retired: Mutex<Metrics>,
    /// Set by a queue whose ring broke (hostile indices).
    pub(crate) failed: Mutex<Option<String>>,
    /// The device's node writer: a broken ring closes the device as xenbus_dev_fatal would
    /// (back end Closing), so the frontend closes too and may connect again.
    pub(crate) closer: std::sync::OnceLock<xenbus_backend::NodeWriter>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn totals(&self) -> Metrics {
        let mut t = *lock(&self.retired);
        for m in lock(&self.live).iter() {
            t.add(m);
        }
        t
    }

    pub(crate) fn retire(&self) {
        let live = std::mem::take(&mut *lock(&self.live));
        let mut r = lock(&self.retired);
        for m in &live {
            r.add(m);
        }
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Metrics)) {
        if let Some(m) = lock(&self.live).get_mut(index) {
            f(m);
        }
    }

    /// Records a broken ring, stops both threads of the queue (`stop` is their shared stop
    /// eventfd: the event ports they hold are unbound once both have returned) and closes
    /// the device.
    fn fail(&self, name: &str, e: NetifError, stop: &EventFd) {
        let msg = format!("{name}: {e}");
        tracing::warn!("{msg}; the queue stops and the device closes");
        *lock(&self.failed) = Some(msg);
        let _ = stop.write(1);
        if let Some(w) = self.closer.get() {
            let _ = w.write_node("state", &xenbus_backend::XenbusState::Closing.to_string());
        }
    }
}

/// Everything one connected queue runs on.
pub(crate) struct QueueParts {
    pub(crate) tx: TxQueue<Pages, GuestMemoryMmap>,
    pub(crate) rx: RxQueue<Pages, GuestMemoryMmap>,
    pub(crate) tx_port: Box<dyn EventPort>,
    /// `None`: the tx port serves both directions.
    pub(crate) rx_port: Option<Box<dyn EventPort>>,
    pub(crate) tap: Arc<Tap>,
    /// The two ring pages, mapped for the connection's life.
    pub(crate) maps: Vec<GrantMapping<GuestMemoryMmap>>,
    pub(crate) rate: Option<(u64, Duration)>,
}

/// A running queue.
pub(crate) struct QueueThreads {
    stop: EventFd,
    threads: Vec<JoinHandle<()>>,
    _maps: Vec<GrantMapping<GuestMemoryMmap>>,
}

impl std::fmt::Debug for QueueThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueThreads").finish_non_exhaustive()
    }
}

impl QueueThreads {
    pub(crate) fn spawn(
        name: &str,
        index: usize,
        parts: QueueParts,
        shared: Arc<Shared>,
    ) -> std::io::Result<QueueThreads> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        {
            let mut live = lock(&shared.live);
            if live.len() <= index {
                live.resize(index + 1, Metrics::default());
            }
        }
        let tx_port: Arc<dyn EventPort> = Arc::from(parts.tx_port);
        let (rx_port, rx_wake, forward) = match parts.rx_port {
            Some(p) => {
                let wake = p.kick().try_clone()?;
                (Arc::from(p), wake, None)
            }
            None => {
                let wake = EventFd::new(libc::EFD_NONBLOCK)?;
                let fwd = wake.try_clone()?;
                (tx_port.clone(), wake, Some(fwd))
            }
        };
        let mut me = QueueThreads {
            stop,
            threads: Vec::new(),
            _maps: parts.maps,
        };
        let tx = TxThread {
            name: format!("{name}-tx{index}"),
            index,
            queue: parts.tx,
            port: tx_port,
            forward,
            tap: parts.tap.clone(),
            stop: me.stop.try_clone()?,
            shared: shared.clone(),
            rate: parts
                .rate
                .map(|(b, i)| TokenBucket::new(b, i, Instant::now())),
        };
        me.threads.push(
            std::thread::Builder::new()
                .name(tx.name.clone())
                .spawn(move || tx.run())?,
        );
        let rx = RxThread {
            name: format!("{name}-rx{index}"),
            index,
            queue: parts.rx,
            port: rx_port,
            wake: rx_wake,
            tap: parts.tap,
            stop: me.stop.try_clone()?,
            shared,
        };
        me.threads.push(
            std::thread::Builder::new()
                .name(rx.name.clone())
                .spawn(move || rx.run())?,
        );
        Ok(me)
    }
}

impl Drop for QueueThreads {
    fn drop(&mut self) {
        // Neither thread reads `stop`: it stays readable for both.
        let _ = self.stop.write(1);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct TxThread {
    name: String,
    index: usize,
    queue: TxQueue<Pages, GuestMemoryMmap>,
    port: Arc<dyn EventPort>,
    /// Where kicks go on to the rx thread (one channel for both directions).
    forward: Option<EventFd>,
    tap: Arc<Tap>,
    stop: EventFd,
    shared: Arc<Shared>,
    rate: Option<TokenBucket>,
}

impl TxThread {
    fn run(mut self) {
        let mut backlog: VecDeque<TxPacket> = VecDeque::new();
        // The frontend may have queued packets before the ring was mapped.
        let mut pending = true;
        let (mut write_errors, mut rate_waits) = (0u64, 0u64);
        loop {
            // New packets are taken off the ring only once the old ones are out, so a rate
            // limit holds the guest back through its full ring.
            if pending && backlog.is_empty() {
                match self.queue.process_tx(&mut |p| backlog.push_back(p)) {
                    Ok(out) => {
                        if out.notify {
                            self.port.notify();
                        }
                        pending = out.more;
                    }
                    Err(e) => return self.shared.fail(&self.name, e, &self.stop),
                }
            }
            let mut until = None;
            while let Some(p) = backlog.front() {
                if let Some(bucket) = &mut self.rate {
                    if let Err(at) = bucket.take(p.data.len() as u64, Instant::now()) {
                        rate_waits += 1;
                        until = Some(at);
                        break;
                    }
                }
                let Some(p) = backlog.pop_front() else { break };
                if !write_packet(&self.tap, &p) {
                    write_errors += 1;
                }
            }
            let m = self.queue.metrics().clone();
            self.shared.update(self.index, |t| {
                t.tx_packets = m.packets;
                t.tx_bytes = m.bytes;
                t.tx_control = m.control;
                t.tx_dropped = m.total_dropped();
                t.tap_write_errors = write_errors;
                t.tx_rate_waits = rate_waits;
            });
            if pending && backlog.is_empty() {
                continue;
            }
            let timeout = until.map(|at| at.saturating_duration_since(Instant::now()));
            let ready = wait(
                &[self.port.kick().as_raw_fd(), self.stop.as_raw_fd()],
                timeout,
            );
            if ready[1] {
                return;
            }
            if ready[0] {
                let _ = self.port.kick().read();
                pending = true;
                if let Some(f) = &self.forward {
                    let _ = f.write(1);
                }
            }
        }
    }
}

/// Writes one packet to the tap; false if the tap refused it.
fn write_packet(tap: &Tap, p: &TxPacket) -> bool {
    // process_tx hands out only packets whose header it checked.
    let Ok(hdr) = p.virtio_net_hdr() else {
        return false;
    };
    match tap.write_frame(&hdr.to_bytes(), &p.data) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(tap = tap.name(), error = %e, "netback: tap write");
            false
        }
    }
}

struct RxThread {
    name: String,
    index: usize,
    queue: RxQueue<Pages, GuestMemoryMmap>,
    port: Arc<dyn EventPort>,
    /// Readable when the guest may have posted receive buffers.
    wake: EventFd,
    tap: Arc<Tap>,
    stop: EventFd,
    shared: Arc<Shared>,
}

impl RxThread {
    fn run(mut self) {
        // One more byte than the largest frame: a read that fills it was truncated.
        let mut buf = vec![0u8; VNET_HDR_LEN + MAX_FRAME_SIZE + 1];
        // A frame read from the tap that waits for the guest's buffers.
        let mut held: Option<usize> = None;
        let mut truncated = 0u64;
        loop {
            let mut notify = false;
            let mut batch = 0;
            loop {
                let len = match held.take() {
                    Some(n) => n,
                    None => match self.tap.read_frame(&mut buf) {
                        Ok(Some(n)) if n == buf.len() => {
                            truncated += 1;
                            continue;
                        }
                        Ok(Some(n)) => n,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(tap = self.tap.name(), error = %e, "netback: tap read");
                            // Do not spin on a descriptor that keeps failing.
                            std::thread::sleep(Duration::from_millis(10));
                            break;
                        }
                    },
                };
                match self.queue.deliver_rx(&buf[..len]) {
                    Ok(RxOutcome::Delivered { notify: n })
                    | Ok(RxOutcome::Dropped { notify: n, .. }) => notify |= n,
                    Ok(RxOutcome::NoSlots) => {
                        held = Some(len);
                        break;
                    }
                    Err(e) => return self.shared.fail(&self.name, e, &self.stop),
                }
                batch += 1;
                if batch % NOTIFY_BATCH == 0 && notify {
                    self.port.notify();
                    notify = false;
                }
            }
            if notify {
                self.port.notify();
            }
            let m = self.queue.metrics().clone();
            self.shared.update(self.index, |t| {
                t.rx_packets = m.packets;
                t.rx_bytes = m.bytes;
                t.rx_no_slots = m.no_slots;
                t.rx_dropped = m.total_dropped();
                t.rx_truncated = truncated;
            });
            // While a frame waits for buffers, the tap is not read (it queues, then drops).
            let tap_fd = if held.is_none() {
                self.tap.as_raw_fd()
            } else {
                -1
            };
            let ready = wait(
                &[self.wake.as_raw_fd(), self.stop.as_raw_fd(), tap_fd],
                None,
            );
            if ready[1] {
                return;
            }
            if ready[0] {
                let _ = self.wake.read();
            }
        }
    }
}

/// [`pv_host::wait_readable`]; a failing poll counts as nothing ready (the loops re-check).
fn wait<const N: usize>(fds: &[RawFd; N], timeout: Option<Duration>) -> [bool; N] {
    pv_host::wait_readable(fds, timeout).unwrap_or([false; N])
}
