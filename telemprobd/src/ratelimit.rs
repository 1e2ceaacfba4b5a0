//! Rate limiting of incoming records: pure state, no clock and no I/O, so it is unit tested.
//!
//! Two limits, each over its own sliding window of whole minutes: records per window
//! (`record_burst_limit` / `record_window_length`) and real payload bytes per window
//! (`byte_burst_limit` / `byte_window_length`). Counts live in per-minute buckets keyed by the
//! absolute minute (seconds since the epoch / 60), so a bucket written an hour ago never counts
//! again (the original keyed by minute-of-hour and counted hour-old buckets).
//!
//! A record that passes is counted; one that does not pass is not (whatever the caller then does
//! with it), so a flood that is being refused does not extend its own penalty.

use std::collections::{HashMap, VecDeque};

use telemetry::Config;

/// One limit: at most `limit` units within the last `window` minutes (the current minute
/// included). A window of 0 only checks the record on its own against the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Units allowed per window.
    pub limit: u64,
    /// Window length in minutes.
    pub window: u32,
}

/// Both limits; `None` disables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Records per window.
    pub records: Option<Limit>,
    /// Payload bytes per window.
    pub bytes: Option<Limit>,
}

impl Limits {
    /// The limits a config asks for (`rate_limit_enabled = false` disables both).
    pub fn from_config(c: &Config) -> Limits {
        if !c.rate_limit_enabled {
            return Limits::default();
        }
        Limits {
            records: c.record_burst_limit.map(|limit| Limit {
                limit,
                window: c.record_window_length,
            }),
            bytes: c.byte_burst_limit.map(|limit| Limit {
                limit,
                window: c.byte_window_length,
            }),
        }
    }

    /// True when no limit applies.
    pub fn is_disabled(&self) -> bool {
        self.records.is_none() && self.bytes.is_none()
    }

    fn longest_window(&self) -> u64 {
        let w = |l: Option<Limit>| l.map_or(0, |l| u64::from(l.window));
        w(self.records).max(w(self.bytes))
    }
}

/// Counts of one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    minute: u64,
    records: u64,
    bytes: u64,
}

/// The sliding-window state.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: Limits,
    /// Oldest first; at most one bucket per minute, only minutes inside the longest window.
    buckets: VecDeque<Bucket>,
}

impl RateLimiter {
    /// A limiter with empty windows.
    pub fn new(limits: Limits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: VecDeque::new(),
        }
    }

    /// Changes the limits (config reload); the counts seen so far are kept.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Decides on one record of `bytes` payload bytes arriving at `now_minute` (absolute minute).
    /// Returns true and counts it when it is within every enabled limit.
    pub fn admit(&mut self, now_minute: u64, bytes: u64) -> bool {
        if self.limits.is_disabled() {
            return true;
        }
        self.expire(now_minute);
        let within = |limit: Option<Limit>, inc: u64, pick: fn(&Bucket) -> u64| match limit {
            None => true,
            Some(l) => {
                let start = now_minute.saturating_sub(u64::from(l.window));
                let used: u64 = self
                    .buckets
                    .iter()
                    .filter(|b| l.window > 0 && b.minute > start && b.minute <= now_minute)
                    .map(pick)
                    .fold(0, u64::saturating_add);
                used.saturating_add(inc) <= l.limit
            }
        };
        if !(within(self.limits.records, 1, |b| b.records)
            && within(self.limits.bytes, bytes, |b| b.bytes))
        {
            return false;
        }
        match self.buckets.back_mut() {
            Some(b) if b.minute == now_minute => {
                b.records = b.records.saturating_add(1);
                b.bytes = b.bytes.saturating_add(bytes);
            }
            _ => self.buckets.push_back(Bucket {
                minute: now_minute,
                records: 1,
                bytes,
            }),
        }
        true
    }

    /// Drops buckets that no window can reach any more. A clock that stepped back leaves newer
    /// buckets in place; they age out once the clock passes them again.
    fn expire(&mut self, now_minute: u64) {
        let keep_from = now_minute.saturating_sub(self.limits.longest_window());
        while self.buckets.front().is_some_and(|b| b.minute <= keep_from) {
            self.buckets.pop_front();
        }
    }

    /// Number of buckets held (for tests: memory stays bounded by the window).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }
}

/// One [`RateLimiter`] per sending uid, all with the same limits: the limits apply to each
/// user on its own, so one user exhausting its window does not refuse anyone else's records.
///
/// Memory follows the number of uids that sent within the longest window: a uid whose windows
/// are empty is forgotten when a new uid arrives.
#[derive(Debug, Default)]
pub struct PerUid {
    limits: Limits,
    /// Keyed by uid; `None` for a sender whose credentials could not be read.
    by_uid: HashMap<Option<u32>, RateLimiter>,
}

impl PerUid {
    /// Empty windows for every uid.
    pub fn new(limits: Limits) -> PerUid {
        PerUid {
            limits,
            by_uid: HashMap::new(),
        }
    }

    /// Changes the limits of every uid (config reload); counts are kept.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        for l in self.by_uid.values_mut() {
            l.set_limits(limits);
        }
    }

    /// [`RateLimiter::admit`] against `uid`'s own windows.
    pub fn admit(&mut self, uid: Option<u32>, now_minute: u64, bytes: u64) -> bool {
        if self.limits.is_disabled() {
            return true;
        }
        if !self.by_uid.contains_key(&uid) {
            // Forget the uids with nothing left in their windows before adding one.
            self.by_uid.retain(|_, l| {
                l.expire(now_minute);
                l.bucket_count() > 0
            });
        }
        let limits = self.limits;
        self.by_uid
            .entry(uid)
            .or_insert_with(|| RateLimiter::new(limits))
            .admit(now_minute, bytes)
    }

    /// Number of uids with state (tests: memory stays bounded).
    pub fn uid_count(&self) -> usize {
        self.by_uid.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn records(limit: u64, window: u32) -> Limits {
        Limits {
            records: Some(Limit { limit, window }),
            bytes: None,
        }
    }

    #[test]
    fn disabled_admits_everything() {
        let mut r = RateLimiter::new(Limits::default());
        for i in 0..10_000 {
            assert!(r.admit(i / 100, 1_000_000));
        }
        assert_eq!(r.bucket_count(), 0);
    }

    #[test]
    fn record_limit_within_one_minute() {
        let mut r = RateLimiter::new(records(3, 1));
        let m = 29_000_000;
        assert!(r.admit(m, 10));
        assert!(r.admit(m, 10));
        assert!(r.admit(m, 10));
        assert!(!r.admit(m, 10));
        assert!(
            !r.admit(m, 10),
            "refused records are not counted, still refused"
        );
        assert!(
            r.admit(m + 1, 10),
            "a 1-minute window is empty the next minute"
        );
    }

    #[test]
    fn window_slides_minute_by_minute() {
        let mut r = RateLimiter::new(records(4, 3));
        let m = 1_000;
        assert!(r.admit(m, 0));
        assert!(r.admit(m, 0));
        assert!(r.admit(m + 1, 0));
        assert!(r.admit(m + 2, 0));
        assert!(!r.admit(m + 2, 0), "4 in minutes m..=m+2");
        // At m+3 the two records of minute m have left the window.
        assert!(r.admit(m + 3, 0));
        assert!(r.admit(m + 3, 0));
        assert!(!r.admit(m + 3, 0));
    }

    #[test]
    fn windows_age_by_wall_clock_not_minute_of_hour() {
        // The original kept 60 minute-of-hour slots: 60 minutes later the same slot still
        // counted. Here an hour later everything is forgotten.
        let mut r = RateLimiter::new(records(2, 59));
        let m = 5_000;
        assert!(r.admit(m, 0));
        assert!(r.admit(m, 0));
        assert!(!r.admit(m + 58, 0));
        assert!(r.admit(m + 60, 0));
        assert!(r.admit(m + 61, 0));
        assert!(r.bucket_count() <= 60);
    }

    #[test]
    fn byte_limit_counts_real_payload_bytes() {
        let mut r = RateLimiter::new(Limits {
            records: None,
            bytes: Some(Limit {
                limit: 1000,
                window: 5,
            }),
        });
        assert!(r.admit(10, 600));
        assert!(!r.admit(10, 401), "600 + 401 > 1000");
        assert!(r.admit(11, 400), "600 + 400 = 1000 is allowed");
        assert!(!r.admit(12, 1));
        assert!(
            r.admit(15, 600),
            "minute 10 left the 5-minute window at minute 15"
        );
    }

    #[test]
    fn both_limits_must_pass() {
        let mut r = RateLimiter::new(Limits {
            records: Some(Limit {
                limit: 2,
                window: 1,
            }),
            bytes: Some(Limit {
                limit: 100,
                window: 1,
            }),
        });
        assert!(!r.admit(1, 101));
        assert!(r.admit(1, 50));
        assert!(r.admit(1, 50));
        assert!(!r.admit(1, 0), "record limit");
    }

    #[test]
    fn window_zero_checks_the_record_alone() {
        let mut r = RateLimiter::new(Limits {
            records: None,
            bytes: Some(Limit {
                limit: 100,
                window: 0,
            }),
        });
        for _ in 0..10 {
            assert!(r.admit(7, 100));
        }
        assert!(!r.admit(7, 101));
    }

    #[test]
    fn limits_from_config() {
        let root = std::path::Path::new("/nonexistent");
        let mut c = Config::defaults(root);
        let l = Limits::from_config(&c);
        assert_eq!(
            l.records,
            Some(Limit {
                limit: 1000,
                window: 15
            })
        );
        assert_eq!(l.bytes, None);
        c.rate_limit_enabled = false;
        assert!(Limits::from_config(&c).is_disabled());
    }

    #[test]
    fn reload_keeps_counts() {
        let mut r = RateLimiter::new(records(10, 10));
        for _ in 0..5 {
            assert!(r.admit(100, 0));
        }
        r.set_limits(records(5, 10));
        assert!(!r.admit(101, 0));
        r.set_limits(records(6, 10));
        assert!(r.admit(101, 0));
    }

    #[test]
    fn each_uid_has_its_own_window() {
        let mut p = PerUid::new(records(3, 1));
        let m = 7_000;
        for _ in 0..3 {
            assert!(p.admit(Some(61234), m, 0));
        }
        assert!(!p.admit(Some(61234), m, 0), "this user is over its limit");
        assert!(p.admit(Some(0), m, 0), "root is not refused for it");
        assert!(p.admit(Some(61235), m, 0), "nor is anyone else");
        assert!(p.admit(None, m, 0));
        p.set_limits(records(4, 1));
        assert!(p.admit(Some(61234), m, 0), "reload applies to every uid");
        assert!(!p.admit(Some(61234), m, 0));
    }

    #[test]
    fn uids_with_empty_windows_are_forgotten() {
        let mut p = PerUid::new(records(3, 2));
        for uid in 0..100 {
            assert!(p.admit(Some(uid), 50, 0));
        }
        assert_eq!(p.uid_count(), 100);
        assert!(p.admit(Some(5000), 60, 0));
        assert_eq!(
            p.uid_count(),
            1,
            "only the uid that sent within the window is kept"
        );
        let mut off = PerUid::new(Limits::default());
        assert!(off.admit(Some(1), 1, 1));
        assert_eq!(off.uid_count(), 0);
    }
}
