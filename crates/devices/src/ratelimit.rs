//! Rate-limited logging for paths a guest can trigger at will: a hostile guest must not be able
//! to flood the host's logs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows `burst` events per second; the rest are counted and reported with the next allowed one.
#[derive(Debug)]
pub struct RateLimit {
    burst: u64,
    /// Second (since the epoch) of the current window in the high 32 bits, count in the low.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limiter allowing `burst` events per second.
    pub const fn new(burst: u64) -> Self {
        RateLimit {
            burst,
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Returns `Some(suppressed_since_last)` if this event may be logged now.
    pub fn check(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            & 0xffff_ffff;
        let cur = self.window.load(Ordering::Relaxed);
        let (sec, count) = (cur >> 32, cur & 0xffff_ffff);
        let next = if sec == now {
            (now << 32) | (count + 1)
        } else {
            (now << 32) | 1
        };
        if self
            .window
            .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if (next & 0xffff_ffff) <= self.burst {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Logs a warning at most `burst` times a second per call site.
#[macro_export]
macro_rules! warn_ratelimited {
    ($burst:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new($burst);
        if let Some(suppressed) = LIMIT.check() {
            if suppressed > 0 {
                tracing::warn!(suppressed, $($arg)+);
            } else {
                tracing::warn!($($arg)+);
            }
        }
    }};
}

/// Logs at debug level at most `burst` times a second per call site: for guest behaviour that is
/// normal (probing absent hardware) but worth seeing when debugging.
#[macro_export]
macro_rules! debug_ratelimited {
    ($burst:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new($burst);
        if tracing::enabled!(tracing::Level::DEBUG) && LIMIT.check().is_some() {
            tracing::debug!($($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_suppresses_and_reports() {
        let l = RateLimit::new(3);
        let allowed = (0..100).filter(|_| l.check().is_some()).count();
        // A second boundary may fall inside the loop, allowing one more burst.
        assert!(allowed == 3 || allowed == 6, "{allowed}");
        assert!(l.suppressed.load(Ordering::Relaxed) >= 94);
    }
}
