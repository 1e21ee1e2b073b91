//! The transmit rate limit (xl.cfg's `rate=`): a credit of bytes per interval, as Xen's
//! netback keeps one per queue. The credit is topped up once per interval, never above one
//! interval's worth, except that a packet larger than a whole interval's credit may save up
//! for it over several intervals (otherwise it could never be sent).

use std::time::{Duration, Instant};

/// A byte credit replenished every interval.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    per_interval: u64,
    interval: Duration,
    credit: u64,
    next_refill: Instant,
}

impl TokenBucket {
    /// `bytes` per `interval`, starting with a full interval's credit at `now`. `bytes` and
    /// `interval` must not be 0 (the caller checks the configuration).
    pub(crate) fn new(bytes: u64, interval: Duration, now: Instant) -> TokenBucket {
        TokenBucket {
            per_interval: bytes.max(1),
            interval: interval.max(Duration::from_micros(1)),
            credit: bytes.max(1),
            next_refill: now + interval,
        }
    }

    /// Spends `len` bytes of credit at `now`, or says when to try again (the packet waits;
    /// nothing is spent).
    pub(crate) fn take(&mut self, len: u64, now: Instant) -> Result<(), Instant> {
        self.refill(now, len);
        if len <= self.credit {
            self.credit -= len;
            Ok(())
        } else {
            Err(self.next_refill)
        }
    }

    /// Adds the credit of every interval that ended by `now`, up to one interval's worth or
    /// `waiting` (the size of the packet that waits), whichever is larger.
    fn refill(&mut self, now: Instant, waiting: u64) {
        if now < self.next_refill {
            return;
        }
        let elapsed = now.duration_since(self.next_refill);
        let periods = 1 + (elapsed.as_nanos() / self.interval.as_nanos()) as u64;
        let cap = self.per_interval.max(waiting);
        self.credit = self
            .credit
            .saturating_add(periods.saturating_mul(self.per_interval))
            .min(cap);
        let step = self
            .interval
            .saturating_mul(periods.min(u64::from(u32::MAX)) as u32);
        self.next_refill += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn spends_one_interval_then_waits_for_the_next() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 10 * MS, t0);
        assert_eq!(b.take(600, t0), Ok(()));
        assert_eq!(b.take(400, t0), Ok(()));
        // Empty: the next packet waits for the refill, and is not charged meanwhile.
        assert_eq!(b.take(1, t0 + 5 * MS), Err(t0 + 10 * MS));
        assert_eq!(b.take(1, t0 + 9 * MS), Err(t0 + 10 * MS));
        assert_eq!(b.take(1000, t0 + 10 * MS), Ok(()));
        assert_eq!(b.take(1, t0 + 15 * MS), Err(t0 + 20 * MS));
    }

    #[test]
    fn idle_time_does_not_build_a_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 10 * MS, t0);
        let later = t0 + 1000 * MS;
        assert_eq!(b.take(1000, later), Ok(()));
        assert_eq!(b.take(1, later), Err(t0 + 1010 * MS));
    }

    #[test]
    fn a_packet_larger_than_an_interval_saves_up() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 10 * MS, t0);
        assert_eq!(b.take(2500, t0), Err(t0 + 10 * MS));
        assert_eq!(b.take(2500, t0 + 10 * MS), Err(t0 + 20 * MS));
        assert_eq!(b.take(2500, t0 + 20 * MS), Ok(()));
        assert_eq!(b.take(1, t0 + 25 * MS), Err(t0 + 30 * MS));
    }

    #[test]
    fn rate_over_many_intervals_matches_the_setting() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1500, 10 * MS, t0);
        let mut now = t0;
        let mut sent = 0u64;
        // 100 ms (both ends included) of a sender that always has a 500-byte packet ready.
        while now <= t0 + 100 * MS {
            match b.take(500, now) {
                Ok(()) => sent += 500,
                Err(at) => now = at,
            }
        }
        // The credit at the start and 10 refills.
        assert_eq!(sent, 1500 * 11);
    }
}
