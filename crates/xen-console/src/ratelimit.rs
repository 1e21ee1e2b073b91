//! A per-call-site limit on warnings a guest can trigger at will, so a hostile guest cannot
//! flood the host's log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows `burst` messages per second; counts the rest.
#[derive(Debug)]
pub(crate) struct RateLimit {
    burst: u32,
    state: Mutex<Option<(Instant, u32, u64)>>,
}

impl RateLimit {
    pub(crate) const fn new(burst: u32) -> Self {
        RateLimit {
            burst,
            state: Mutex::new(None),
        }
    }

    /// `Some(suppressed since the last allowed message)` if a message may be logged now.
    pub(crate) fn check(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (start, count, suppressed) = st.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count < self.burst {
            *count += 1;
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

/// `tracing::warn!` at most `burst` times a second per call site.
macro_rules! warn_ratelimited {
    ($burst:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new($burst);
        if let Some(suppressed) = LIMIT.check() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}
pub(crate) use warn_ratelimited;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_counts() {
        let l = RateLimit::new(3);
        let allowed = (0..50).filter(|_| l.check().is_some()).count();
        // A one-second window may end inside the loop on a slow machine.
        assert!(allowed == 3 || allowed == 6, "{allowed}");
    }
}
