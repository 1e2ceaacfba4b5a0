//! The retry policy: exponential backoff with full jitter above a floor, honouring `Retry-After`.
//!
//! Pure: the caller passes the random number and the clock, so the schedule is unit-tested
//! exactly. The backoff is one value for the whole queue (the head record failing means the
//! server is failing), reset by any answer that is not a failure.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` we obey; a larger value is cut to this (expiry keeps running anyway).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// First delay, and the floor of every delay (1 s in production).
    pub base: Duration,
    /// Largest delay from the exponential part (`spool_process_time` in production).
    pub cap: Duration,
}

/// The backoff state of the delivery queue.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    failures: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(policy: Policy) -> Backoff {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// Changes the parameters (config reload), keeping the failure count.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The server answered (delivered or rejected): start over.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next attempt.
    ///
    /// After the n-th consecutive failure (n from 0) the ceiling is `min(cap, base · 2ⁿ)` and the
    /// delay is uniform in `[base, ceiling]` (`unit` is a uniform random number in `[0, 1)`), so
    /// the first retry comes after exactly `base` and no retry ever comes sooner than `base`. A
    /// `Retry-After` from the server is a lower bound on top of that (at most
    /// [`MAX_RETRY_AFTER`]).
    pub fn on_failure(&mut self, retry_after: Option<Duration>, unit: f64) -> Duration {
        let Policy { base, cap } = self.policy;
        let exp = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let ceiling = base.saturating_mul(exp).min(cap).max(base.min(cap));
        let floor = base.min(ceiling);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let delay = floor + (ceiling - floor).mul_f64(unit);
        self.failures = self.failures.saturating_add(1);
        match retry_after {
            Some(ra) => delay.max(ra.min(MAX_RETRY_AFTER)),
            None => delay,
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds, or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`) turned into a delay from `now` (a date in the past is a zero delay).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(v)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → seconds since the epoch.
fn parse_imf_fixdate(v: &str) -> Option<u64> {
    let (_, rest) = v.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

/// A small xorshift generator for jitter, seeded from the OS. Not for secrets.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the OS random number generator (a fixed seed if that fails).
    pub fn from_os() -> Jitter {
        let mut b = [0u8; 8];
        let seed = match getrandom::fill(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => 0x9e37_79b9_7f4a_7c15,
        };
        Jitter(seed | 1)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn policy() -> Policy {
        Policy {
            base: S(1),
            cap: S(120),
        }
    }

    #[test]
    fn ceilings_double_from_one_second_up_to_the_cap() {
        let mut b = Backoff::new(policy());
        // unit = 1.0 gives the ceiling itself.
        let top: Vec<u64> = (0..10).map(|_| b.on_failure(None, 1.0).as_secs()).collect();
        assert_eq!(top, [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.on_failure(None, 1.0), S(1));
    }

    #[test]
    fn jitter_stays_between_the_floor_and_the_ceiling() {
        let mut b = Backoff::new(policy());
        // unit = 0 gives the floor: never faster than base.
        for _ in 0..40 {
            assert_eq!(b.on_failure(None, 0.0), S(1));
        }
        let mut b = Backoff::new(policy());
        let mut rng = Jitter(12345);
        for n in 0..40u32 {
            let d = b.on_failure(None, rng.unit());
            let ceiling = S(1u64 << n.min(20)).min(S(120));
            assert!(d >= S(1) && d <= ceiling, "failure {n}: {d:?}");
        }
        // Half way for the fourth failure: 1 + (8 - 1) / 2.
        let mut b = Backoff::new(policy());
        for _ in 0..3 {
            b.on_failure(None, 0.0);
        }
        assert_eq!(b.on_failure(None, 0.5), Duration::from_millis(4500));
    }

    #[test]
    fn retry_after_is_a_lower_bound_with_a_limit() {
        let mut b = Backoff::new(policy());
        assert_eq!(b.on_failure(Some(S(30)), 0.0), S(30));
        assert_eq!(b.on_failure(Some(Duration::ZERO), 1.0), S(2));
        assert_eq!(b.on_failure(Some(S(999_999)), 0.0), MAX_RETRY_AFTER);
    }

    #[test]
    fn a_cap_below_the_base_wins_and_huge_counts_do_not_overflow() {
        let mut b = Backoff::new(Policy {
            base: S(5),
            cap: S(2),
        });
        assert_eq!(b.on_failure(None, 0.7), S(2));
        let mut b = Backoff::new(policy());
        b.failures = u32::MAX - 1;
        assert_eq!(b.on_failure(None, 1.0), S(120));
        assert_eq!(b.on_failure(None, f64::NAN), S(1));
    }

    #[test]
    fn jitter_is_uniform_enough() {
        let mut j = Jitter(42);
        let xs: Vec<f64> = (0..10_000).map(|_| j.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let _ = Jitter::from_os().unit();
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + S(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(S(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(S(0))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", SystemTime::UNIX_EPOCH),
            Some(S(0))
        );
        assert_eq!(
            parse_retry_after("Sat, 01 Jan 2000 00:00:01 GMT", SystemTime::UNIX_EPOCH),
            Some(S(946_684_801))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
