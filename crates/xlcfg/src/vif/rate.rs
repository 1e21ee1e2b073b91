//! xl's vif `rate=` syntax: `RATE/s[@INTERVAL]`, credit-based (xl-network-configuration(5)).
//!
//! RATE is a decimal number with an optional `K`, `M` or `G` (powers of 1000) and `B` for bytes
//! or `b` for bits; INTERVAL is a number with `us`, `ms` or `s` (a bare number, or `m`/`u`
//! without the `s`, reads as xl reads it: seconds, milliseconds, microseconds). Every interval
//! the guest gets the bytes it would send in that time at RATE.

/// A vif's transmit limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VifRate {
    /// The rate as bytes per second.
    pub bytes_per_sec: u64,
    /// Credit replenished every interval, in bytes.
    pub bytes_per_interval: u64,
    /// Replenish interval in microseconds (xl's default is 50 ms).
    pub interval_us: u32,
}

/// xl's replenish interval when `@...` is absent.
pub const DEFAULT_RATE_INTERVAL_US: u32 = 50_000;

/// Splits a leading run of decimal digits off `s`, as a number from 1 to `u32::MAX`.
fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..end].parse().ok()?;
    (1..=u64::from(u32::MAX))
        .contains(&n)
        .then_some((n, &s[end..]))
}

/// Parses `rate=`'s value.
pub fn parse_rate(text: &str) -> Result<VifRate, String> {
    let (rate, interval) = match text.split_once('@') {
        Some((r, i)) => (r, Some(i)),
        None => (text, None),
    };
    if rate.is_empty() {
        return Err(format!("no rate given in '{text}'"));
    }
    let bad_rate = || format!("'{rate}' is not a rate (such as 10Mb/s, 250KB/s, 1GB/s)");
    let (n, unit) = leading_number(rate).ok_or_else(bad_rate)?;
    let (scale, bits) = match unit {
        "B/s" => (1, false),
        "b/s" => (1, true),
        "KB/s" => (1_000, false),
        "Kb/s" => (1_000, true),
        "MB/s" => (1_000_000, false),
        "Mb/s" => (1_000_000, true),
        "GB/s" => (1_000_000_000, false),
        "Gb/s" => (1_000_000_000, true),
        _ => return Err(bad_rate()),
    };
    let bytes_per_sec = n * scale / if bits { 8 } else { 1 };
    let interval_us = match interval {
        None => DEFAULT_RATE_INTERVAL_US,
        Some(i) => {
            let bad = || format!("'{i}' is not a replenish interval (such as 50ms, 20000us, 1s)");
            let (n, unit) = leading_number(i).ok_or_else(bad)?;
            let scale = match unit {
                "" | "s" => 1_000_000,
                "m" | "ms" => 1_000,
                "u" | "us" => 1,
                _ => return Err(bad()),
            };
            u32::try_from(n * scale)
                .map_err(|_| format!("the replenish interval '{i}' is too long"))?
        }
    };
    let per_interval = u128::from(bytes_per_sec) * u128::from(interval_us) / 1_000_000;
    let bytes_per_interval =
        u64::try_from(per_interval).map_err(|_| format!("the rate '{text}' is too large"))?;
    if bytes_per_interval == 0 {
        return Err(format!(
            "the rate '{text}' allows less than one byte per interval"
        ));
    }
    Ok(VifRate {
        bytes_per_sec,
        bytes_per_interval,
        interval_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> (u64, u64, u32) {
        let r = parse_rate(s).unwrap();
        (r.bytes_per_sec, r.bytes_per_interval, r.interval_us)
    }

    #[test]
    fn bits_and_bytes_with_the_default_interval() {
        // 10 megabits = 1.25 MB/s; 50 ms of that is 62,500 bytes.
        assert_eq!(rate("10Mb/s"), (1_250_000, 62_500, 50_000));
        assert_eq!(rate("10MB/s"), (10_000_000, 500_000, 50_000));
        assert_eq!(rate("250KB/s"), (250_000, 12_500, 50_000));
        assert_eq!(rate("100Kb/s"), (12_500, 625, 50_000));
        assert_eq!(rate("1GB/s"), (1_000_000_000, 50_000_000, 50_000));
        assert_eq!(rate("8Gb/s"), (1_000_000_000, 50_000_000, 50_000));
        assert_eq!(rate("800B/s"), (800, 40, 50_000));
        assert_eq!(rate("800b/s"), (100, 5, 50_000));
    }

    #[test]
    fn replenish_intervals() {
        // The man page's example: 1MB/s@20ms is 20,000 bytes every 20,000 us.
        assert_eq!(rate("1MB/s@20ms"), (1_000_000, 20_000, 20_000));
        assert_eq!(rate("1MB/s@1s"), (1_000_000, 1_000_000, 1_000_000));
        assert_eq!(rate("1MB/s@500us"), (1_000_000, 500, 500));
        assert_eq!(rate("1MB/s@2"), (1_000_000, 2_000_000, 2_000_000));
        assert_eq!(rate("1MB/s@5m"), (1_000_000, 5_000, 5_000));
        assert_eq!(rate("1MB/s@7u"), (1_000_000, 7, 7));
        assert_eq!(rate("4294967295GB/s@1us").1, 4_294_967_295_000);
    }

    #[test]
    fn errors() {
        let err = |s: &str| parse_rate(s).unwrap_err();
        assert_eq!(
            err("10Mbit/s"),
            "'10Mbit/s' is not a rate (such as 10Mb/s, 250KB/s, 1GB/s)"
        );
        assert_eq!(
            err("1MB/s@20h"),
            "'20h' is not a replenish interval (such as 50ms, 20000us, 1s)"
        );
        assert_eq!(err("@20ms"), "no rate given in '@20ms'");
        assert!(err("0MB/s").contains("is not a rate"));
        assert!(err("MB/s").contains("is not a rate"));
        assert!(err("10TB/s").contains("is not a rate"));
        assert!(err("10mb/s").contains("is not a rate"));
        assert!(err("4294967296B/s").contains("is not a rate"));
        assert!(err("1MB/s@0ms").contains("not a replenish interval"));
        assert!(err("1MB/s@5000s").contains("too long"));
        assert!(err("1B/s@1us").contains("less than one byte"));
        assert_eq!(
            err("4294967295GB/s@4000s"),
            "the rate '4294967295GB/s@4000s' is too large"
        );
        assert!(err("1MB/s@").contains("not a replenish interval"));
    }
}
