//! Start-up phase timings: one info event per phase (target `oxen::boot`, shown by `oxl -v`),
//! so a slow domain start can be traced to its step. Two clock reads per phase, nothing else.

use std::time::{Duration, Instant};

/// The tracing target of phase events.
pub const TARGET: &str = "oxen::boot";

/// Times consecutive phases of one job (`scope`), each from the end of the previous one.
#[derive(Debug)]
pub struct Phases {
    scope: &'static str,
    start: Instant,
    last: Instant,
}

fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl Phases {
    /// Starts the clock.
    pub fn start(scope: &'static str) -> Self {
        let now = Instant::now();
        Phases {
            scope,
            start: now,
            last: now,
        }
    }

    /// Logs that `phase` just ended, with its duration and the time since [`Phases::start`].
    pub fn lap(&mut self, phase: &str) {
        let now = Instant::now();
        tracing::info!(
            target: TARGET,
            scope = self.scope,
            phase,
            ms = format_args!("{:.1}", ms(now - self.last)),
            total_ms = format_args!("{:.1}", ms(now - self.start)),
            "start-up phase"
        );
        self.last = now;
    }
}
