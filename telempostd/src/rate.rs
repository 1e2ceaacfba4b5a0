//! Rate limiting at delivery: records and payload bytes per sliding window of wall-clock minutes
//! (`record_burst_limit` per `record_window_length`, `byte_burst_limit` per
//! `byte_window_length`). The original counted per minute-of-hour slots that never aged and
//! counted 4 bytes per record; we keep the delivery times and real payload sizes.
//!
//! A window of 0 minutes checks each record alone against the limit, as the original did. A
//! single record larger than the byte limit passes when nothing else was sent in its window
//! (otherwise it could never leave the spool under strategy `spool`).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use telemetry::Config;

/// The limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records per window; `None` = unlimited.
    pub records: Option<u64>,
    /// Record window.
    pub record_window: Duration,
    /// Payload bytes per window; `None` = unlimited.
    pub bytes: Option<u64>,
    /// Byte window.
    pub byte_window: Duration,
}

impl Limits {
    /// The limits of a config; `None` when rate limiting is off or both limits are disabled.
    pub fn from_config(c: &Config) -> Option<Limits> {
        let l = Limits {
            records: c.record_burst_limit,
            record_window: Duration::from_secs(u64::from(c.record_window_length) * 60),
            bytes: c.byte_burst_limit,
            byte_window: Duration::from_secs(u64::from(c.byte_window_length) * 60),
        };
        (c.rate_limit_enabled && (l.records.is_some() || l.bytes.is_some())).then_some(l)
    }
}

/// Whether a record may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limits.
    Allow,
    /// Over a limit; it will be within them after this long (at the latest).
    Wait(Duration),
}

/// Deliveries inside the longest window.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    limits: Option<Limits>,
    /// (time, payload bytes) of each delivery still inside a window, oldest first.
    sent: VecDeque<(SystemTime, u64)>,
}

impl RateLimiter {
    /// A limiter; `None` = no limits.
    pub fn new(limits: Option<Limits>) -> RateLimiter {
        RateLimiter {
            limits,
            sent: VecDeque::new(),
        }
    }

    /// Changes the limits (config reload), keeping the history.
    pub fn set_limits(&mut self, limits: Option<Limits>) {
        self.limits = limits;
    }

    /// Whether a record of `bytes` payload bytes may be sent at `now`.
    pub fn check(&mut self, now: SystemTime, bytes: u64) -> Decision {
        let Some(l) = self.limits else {
            return Decision::Allow;
        };
        self.forget_before(now, l.record_window.max(l.byte_window));
        let mut wait = Duration::ZERO;
        if let Some(limit) = l.records {
            if let Some(w) = self.wait_for(now, l.record_window, limit, 1, |_| 1) {
                wait = wait.max(w);
            }
        }
        if let Some(limit) = l.bytes {
            if let Some(w) = self.wait_for(now, l.byte_window, limit, bytes, |b| b) {
                wait = wait.max(w);
            }
        }
        if wait.is_zero() {
            Decision::Allow
        } else {
            Decision::Wait(wait)
        }
    }

    /// Counts a delivery.
    pub fn record(&mut self, now: SystemTime, bytes: u64) {
        if self.limits.is_some() {
            self.sent.push_back((now, bytes));
        }
    }

    fn forget_before(&mut self, now: SystemTime, longest: Duration) {
        while let Some((t, _)) = self.sent.front() {
            match now.duration_since(*t) {
                Ok(age) if age >= longest => {
                    self.sent.pop_front();
                }
                // Younger, or in the future (clock stepped back): keep counting it.
                _ => break,
            }
        }
    }

    /// `None` if `inc` more fits into the window ending now; else how long until it does.
    fn wait_for(
        &self,
        now: SystemTime,
        window: Duration,
        limit: u64,
        inc: u64,
        weight: impl Fn(u64) -> u64,
    ) -> Option<Duration> {
        if window.is_zero() {
            // The original: with no window only the record itself is checked.
            return (inc > limit && !(inc > 1 && limit > 0)).then_some(Duration::from_secs(60));
        }
        let inside: Vec<(SystemTime, u64)> = self
            .sent
            .iter()
            .filter(|(t, _)| now.duration_since(*t).map_or(true, |age| age < window))
            .map(|(t, b)| (*t, weight(*b)))
            .collect();
        let total: u64 = inside.iter().map(|(_, w)| w).sum();
        if total.saturating_add(inc) <= limit || (total == 0 && inc > 1) {
            return None;
        }
        // Drop the oldest until it fits; the record may go when the last dropped one ages out.
        let mut remaining = total;
        for (t, w) in &inside {
            remaining -= w;
            if remaining.saturating_add(inc) <= limit || remaining == 0 {
                let ages_out = *t + window;
                return Some(
                    ages_out
                        .duration_since(now)
                        .unwrap_or(Duration::ZERO)
                        .max(Duration::from_millis(10)),
                );
            }
        }
        Some(window)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const M: u64 = 60;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn limits(records: Option<u64>, bytes: Option<u64>) -> Option<Limits> {
        Some(Limits {
            records,
            record_window: Duration::from_secs(15 * M),
            bytes,
            byte_window: Duration::from_secs(20 * M),
        })
    }

    #[test]
    fn record_limit_slides_with_the_wall_clock() {
        let mut r = RateLimiter::new(limits(Some(3), None));
        for s in [0, 10, 20] {
            assert_eq!(r.check(at(s), 100), Decision::Allow);
            r.record(at(s), 100);
        }
        // Fourth within 15 minutes: wait until the first ages out (at 900 s).
        assert_eq!(r.check(at(30), 1), Decision::Wait(Duration::from_secs(870)));
        assert_eq!(r.check(at(899), 1), Decision::Wait(Duration::from_secs(1)));
        assert_eq!(r.check(at(900), 1), Decision::Allow);
        r.record(at(900), 1);
        assert_eq!(r.check(at(901), 1), Decision::Wait(Duration::from_secs(9)));
        // An hour later everything has aged out (the original's slots never did).
        assert_eq!(r.check(at(3600 + 900), 1), Decision::Allow);
        assert!(r.sent.is_empty());
    }

    #[test]
    fn byte_limit_counts_real_payload_bytes() {
        let mut r = RateLimiter::new(limits(None, Some(1000)));
        r.record(at(0), 600);
        assert_eq!(r.check(at(1), 400), Decision::Allow);
        assert_eq!(
            r.check(at(1), 401),
            Decision::Wait(Duration::from_secs(1199))
        );
        r.record(at(2), 400);
        assert_eq!(r.check(at(3), 1), Decision::Wait(Duration::from_secs(1197)));
        // Once both have aged out a record bigger than the whole limit may go alone.
        assert_eq!(r.check(at(1300), 5000), Decision::Allow);
    }

    #[test]
    fn zero_window_checks_the_record_alone_and_disabled_allows_everything() {
        let mut r = RateLimiter::new(Some(Limits {
            records: Some(0),
            record_window: Duration::ZERO,
            bytes: None,
            byte_window: Duration::ZERO,
        }));
        assert!(matches!(r.check(at(0), 10), Decision::Wait(_)));
        let mut r = RateLimiter::new(None);
        for s in 0..10_000 {
            r.record(at(s), 10);
        }
        assert_eq!(r.check(at(0), u64::MAX), Decision::Allow);
        assert!(r.sent.is_empty());
    }

    #[test]
    fn config_switches() {
        let mut c = Config::defaults(std::path::Path::new("/"));
        assert_eq!(
            Limits::from_config(&c).unwrap().record_window,
            Duration::from_secs(15 * M)
        );
        c.record_burst_limit = None;
        assert_eq!(Limits::from_config(&c), None);
        c.byte_burst_limit = Some(10);
        assert!(Limits::from_config(&c).is_some());
        c.rate_limit_enabled = false;
        assert_eq!(Limits::from_config(&c), None);
    }
}
