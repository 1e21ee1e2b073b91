//! Work for a vCPU's own thread. Some KVM calls (the Xen vCPU attributes) can only be made on
//! a vCPU's file descriptor, whose mutex the vCPU's thread holds while inside `KVM_RUN`; Linux
//! nevertheless sets up a secondary vCPU's `vcpu_info` from the boot CPU. Such calls are queued
//! here and the owning thread runs them before it next enters the guest.
//!
//! The kick is race-free: the queuer sets `kvm_run.immediate_exit` (so a thread about to enter
//! `KVM_RUN` returns at once) and signals the thread (so one already inside leaves). Once
//! `queue` has returned, the target cannot run another guest instruction before the work.

use std::sync::Mutex;

use kvm_bindings::kvm_run;
use kvm_ioctls::VcpuFd;

/// A call to make on the vCPU's own thread.
pub type Work = Box<dyn FnOnce(&VcpuFd) + Send>;

#[derive(Clone, Copy)]
struct Running {
    pthread: libc::pthread_t,
    run: *mut kvm_run,
}

// SAFETY: the pointer is only dereferenced under `Control::inner`'s lock while the owning
// thread is registered, i.e. while its `VcpuFd` (and so the kvm_run mapping) is alive.
unsafe impl Send for Running {}

#[derive(Default)]
struct Inner {
    queue: Vec<Work>,
    running: Option<Running>,
}

/// One vCPU's work queue.
#[derive(Default)]
pub struct Control {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Control")
    }
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `work` and makes sure the thread runs it before re-entering the guest.
    pub fn queue(&self, work: Work) {
        let mut i = self.lock();
        i.queue.push(work);
        if let Some(r) = i.running {
            // SAFETY: `running` is set only while the owning thread's VcpuFd (and so the
            // kvm_run mapping) is alive, and it is cleared under this lock before the fd
            // drops. immediate_exit is a plain byte KVM reads on entry.
            unsafe { std::ptr::addr_of_mut!((*r.run).immediate_exit).write_volatile(1) };
            if r.pthread != unsafe_self() {
                // SAFETY: the thread is registered, so it is alive; the kick signal has a
                // no-op handler (see `vcpu::install_kick_handler`).
                unsafe { libc::pthread_kill(r.pthread, crate::vcpu::kick_signal()) };
            }
        }
    }

    /// Called by the vCPU thread when it starts.
    pub fn register(&self, vcpu: &mut VcpuFd) {
        let run = vcpu.get_kvm_run() as *mut kvm_run;
        self.lock().running = Some(Running {
            pthread: unsafe_self(),
            run,
        });
    }

    /// Called by the vCPU thread before it exits (before its VcpuFd drops).
    pub fn unregister(&self) {
        self.lock().running = None;
    }

    /// Runs the queued work; called by the vCPU thread before each `KVM_RUN`.
    pub fn drain(&self, vcpu: &mut VcpuFd) {
        let work = {
            let mut i = self.lock();
            if i.queue.is_empty() {
                return;
            }
            // Cleared before draining: work queued from now on sets it again.
            vcpu.set_kvm_immediate_exit(0);
            std::mem::take(&mut i.queue)
        };
        for w in work {
            w(vcpu);
        }
    }
}

fn unsafe_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}
