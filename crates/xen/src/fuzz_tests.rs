//! Fuzz-style tests: seeded random hypercall arguments and operation sequences thrown at the
//! modules, checking that nothing panics and the invariants hold after every step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::abi::evtchn::*;
use crate::abi::DOMID_SELF;
use crate::evtchn::{BackendHandle, EventChannels, EvtchnConfig, Notifier};
use crate::prng::Prng;

#[derive(Default)]
struct CountingNotifier {
    events: AtomicU64,
}

impl Notifier for CountingNotifier {
    fn deliver(&self, port: Port, vcpu: u32) {
        assert!(
            port > 0 && port < EVTCHN_2L_NR_CHANNELS && vcpu < 4,
            "{port} {vcpu}"
        );
        self.events.fetch_add(1, Ordering::Relaxed);
    }
    fn unmask(&self, port: Port, vcpu: u32) {
        assert!(port < EVTCHN_2L_NR_CHANNELS && vcpu < 4, "{port} {vcpu}");
    }
}

/// Fills an argument with random bytes, then (usually) plants plausible values so that the
/// sequence reaches deep states rather than failing every validity check.
fn random_evtchn_arg(rng: &mut Prng, cmd: u32, buf: &mut [u8; 32]) {
    rng.fill(buf);
    if rng.below(4) == 0 {
        return;
    }
    let port = rng.edgy_u32(70);
    let dom = match rng.below(4) {
        0 => DOMID_SELF,
        1 => 0,
        2 => 3,
        _ => rng.next_u64() as u16,
    };
    let small = rng.edgy_u32(5);
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            buf[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
            buf[2..4].copy_from_slice(&dom.to_le_bytes());
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            buf[0..2].copy_from_slice(&dom.to_le_bytes());
            buf[4..8].copy_from_slice(&port.to_le_bytes());
        }
        EVTCHNOP_BIND_VIRQ => {
            buf[0..4].copy_from_slice(&rng.edgy_u32(NR_VIRQS).to_le_bytes());
            buf[4..8].copy_from_slice(&small.to_le_bytes());
        }
        EVTCHNOP_BIND_IPI => buf[0..4].copy_from_slice(&small.to_le_bytes()),
        EVTCHNOP_BIND_VCPU => {
            buf[0..4].copy_from_slice(&port.to_le_bytes());
            buf[4..8].copy_from_slice(&small.to_le_bytes());
        }
        EVTCHNOP_STATUS => {
            buf[0..2].copy_from_slice(&dom.to_le_bytes());
            buf[4..8].copy_from_slice(&port.to_le_bytes());
        }
        EVTCHNOP_RESET => {
            // Resets are rare in real life; keep most of them invalid so state builds up.
            let d = if rng.below(20) == 0 {
                DOMID_SELF
            } else {
                dom | 1
            };
            buf[0..2].copy_from_slice(&d.to_le_bytes());
        }
        _ => buf[0..4].copy_from_slice(&port.to_le_bytes()),
    }
}

#[test]
fn evtchn_random_operation_sequences() {
    for seed in 0..40u64 {
        let mut rng = Prng::new(seed);
        let notifier = Arc::new(CountingNotifier::default());
        let cfg = EvtchnConfig {
            max_ports: 2 + rng.below(200) as u32,
            ..EvtchnConfig::new(3, 4)
        };
        let ch = EventChannels::new(cfg, notifier.clone()).unwrap();
        let mut handles: Vec<BackendHandle> = Vec::new();
        for _ in 0..600 {
            match rng.below(10) {
                0 => {
                    let h: Arc<dyn crate::evtchn::BackendHandler> = Arc::new(|_p: Port| {});
                    let r = if rng.below(2) == 0 {
                        ch.backend_bind(rng.edgy_u32(70), h)
                    } else {
                        ch.backend_alloc_unbound(h)
                    };
                    if let Ok(h) = r {
                        handles.push(h);
                    }
                }
                1 if !handles.is_empty() => {
                    let i = rng.below(handles.len() as u64) as usize;
                    if rng.below(3) == 0 {
                        handles.swap_remove(i);
                    } else {
                        handles[i].notify().unwrap();
                    }
                }
                2 => {
                    ch.send_virq(rng.edgy_u32(NR_VIRQS), rng.edgy_u32(5));
                }
                3 => {
                    let _ = ch.host_alloc_unbound(rng.next_u64() as u16 & 3);
                }
                _ => {
                    let cmd = rng.edgy_u32(15);
                    let mut buf = [0u8; 32];
                    random_evtchn_arg(&mut rng, cmd, &mut buf);
                    let len = if rng.below(10) == 0 {
                        rng.below(33) as usize
                    } else {
                        32
                    };
                    let _ = ch.hypercall(cmd, &mut buf[..len]);
                }
            }
            ch.check_invariants();
        }
        drop(handles);
        ch.check_invariants();
    }
}
