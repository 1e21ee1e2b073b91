//! One thread per blkif queue: waits for the guest's kick, answers requests, notifies.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use blkif::{Metrics, Queue};
use pv_host::EventPort;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// A running queue thread.
#[derive(Debug)]
pub(crate) struct QueueThread {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

/// What queue threads report to the device.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Each connected queue's counters, updated after each batch.
    pub(crate) live: Mutex<Vec<Metrics>>,
    /// Counters of queues of earlier connections.
    pub(crate) retired: Mutex<Metrics>,
    /// Set by a queue whose ring broke (hostile indices); the device then closes.
    pub(crate) failed: Mutex<Option<String>>,
}

impl Shared {
    /// Totals over every queue this device has had.
    pub(crate) fn totals(&self) -> Metrics {
        let mut t = *lock(&self.retired);
        for m in lock(&self.live).iter() {
            t.add(m);
        }
        t
    }

    /// The connection ended: its queues' counters become history.
    pub(crate) fn retire(&self) {
        let live = std::mem::take(&mut *lock(&self.live));
        let mut r = lock(&self.retired);
        for m in &live {
            r.add(m);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl QueueThread {
    /// Starts serving `queue`, kicked through `port`.
    pub(crate) fn spawn(
        name: String,
        index: usize,
        mut queue: Queue<GuestMemoryMmap>,
        port: Box<dyn EventPort>,
        shared: Arc<Shared>,
        on_fail: Arc<dyn Fn(String) + Send + Sync>,
    ) -> std::io::Result<QueueThread> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_in = stop.try_clone()?;
        lock(&shared.live).resize(index + 1, Metrics::default());
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // The frontend may have queued requests before we mapped the ring.
                let mut pending = true;
                loop {
                    if pending {
                        match serve(&mut queue, port.as_ref()) {
                            Ok(()) => {}
                            Err(e) => {
                                if let Some(m) = lock(&shared.live).get_mut(index) {
                                    *m = queue.metrics();
                                }
                                let msg = format!("{name}: {e}");
                                *lock(&shared.failed) = Some(msg.clone());
                                on_fail(msg);
                                return;
                            }
                        }
                        if let Some(m) = lock(&shared.live).get_mut(index) {
                            *m = queue.metrics();
                        }
                    }
                    match wait(port.kick(), &stop_in) {
                        Wake::Kick => pending = true,
                        Wake::Stop => return,
                    }
                }
            })?;
        Ok(QueueThread {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for QueueThread {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers everything waiting, notifying the guest as soon as the ring rules say so (mid-batch
/// too: the queue publishes responses every few requests).
fn serve(
    queue: &mut Queue<GuestMemoryMmap>,
    port: &dyn EventPort,
) -> Result<(), blkif::QueueError> {
    loop {
        let out = queue.process_with(&mut || port.notify())?;
        if !out.more {
            return Ok(());
        }
    }
}

enum Wake {
    Kick,
    Stop,
}

/// Blocks until the guest kicks or the device stops.
fn wait(kick: &EventFd, stop: &EventFd) -> Wake {
    loop {
        match pv_host::wait_readable(&[kick.as_raw_fd(), stop.as_raw_fd()], None) {
            Err(_) | Ok([_, true]) => return Wake::Stop,
            Ok([true, false]) => {
                let _ = kick.read();
                return Wake::Kick;
            }
            // A signal: wait again.
            Ok([false, false]) => {}
        }
    }
}
