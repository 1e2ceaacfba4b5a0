//! Counters and the status file `telemctl status` reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use telemetry::status::{self, DaemonStatus};

/// What happened to records since start. Atomics: handlers bump them without a lock.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames read completely (valid or not).
    pub received: AtomicU64,
    /// Records durably spooled and acknowledged with 0.
    pub stored: AtomicU64,
    /// Bad frames or records (answered -EINVAL, -EMSGSIZE, ...), and failed stores.
    pub rejected: AtomicU64,
    /// Refused because the machine is not opted in.
    pub refused_not_opted_in: AtomicU64,
    /// Over a rate limit (stored or dropped, by strategy).
    pub rate_limited: AtomicU64,
    /// Refused because the spool quota was reached.
    pub spool_full: AtomicU64,
    /// Clients dropped for sending too slowly or nothing at all.
    pub timed_out: AtomicU64,
    /// Idle or slow clients closed to make room for others (per-uid cap, or every slot taken).
    pub evicted: AtomicU64,
    /// Connections kept unread until their user had a free place (per-uid cap reached).
    pub parked: AtomicU64,
    /// Bytes counted against the quota (a gauge, not a counter): the spool's size at the last
    /// scan plus what was stored since. Files telempostd removed show at the next scan, which
    /// happens when the count says full; hence the name, so that `telemctl status` does not
    /// show it as the spool's size beside the real one.
    quota_used_bytes: AtomicU64,
    /// Bumped on every change, so the status writer knows whether to rewrite.
    generation: AtomicU64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of a complete frame by the status it was answered.
    pub fn count(&self, status: i32) {
        match -status {
            0 => self.bump(&self.stored),
            telemetry::error::libc_errno::ENOSPC => self.bump(&self.spool_full),
            // Counted where they were decided.
            telemetry::error::libc_errno::ECONNREFUSED | telemetry::error::libc_errno::EBUSY => {}
            _ => self.bump(&self.rejected),
        }
    }

    /// Records what the writer counts against the quota.
    pub fn set_quota_used_bytes(&self, n: u64) {
        if self.quota_used_bytes.swap(n, Ordering::Relaxed) != n {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A change counter.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("received", g(&self.received)),
            ("stored", g(&self.stored)),
            ("rejected", g(&self.rejected)),
            ("refused_not_opted_in", g(&self.refused_not_opted_in)),
            ("rate_limited", g(&self.rate_limited)),
            ("spool_full", g(&self.spool_full)),
            ("timed_out", g(&self.timed_out)),
            ("evicted", g(&self.evicted)),
            ("parked", g(&self.parked)),
            ("quota_used_bytes", g(&self.quota_used_bytes)),
        ]
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `<state_dir>/telemprobd.status`. A failure is logged once and never stops the daemon.
pub struct StatusWriter {
    path: PathBuf,
    started: u64,
    written_generation: Option<u64>,
    failure_logged: bool,
}

impl StatusWriter {
    /// A writer for the status file named by `config`.
    pub fn new(config: &telemetry::Config) -> StatusWriter {
        StatusWriter {
            path: status::path(config, "telemprobd"),
            started: now_secs(),
            written_generation: None,
            failure_logged: false,
        }
    }

    /// Follows a reloaded config's `state_dir`.
    pub fn set_config(&mut self, config: &telemetry::Config) {
        let path = status::path(config, "telemprobd");
        if path != self.path {
            self.path = path;
            self.written_generation = None;
            self.failure_logged = false;
        }
    }

    /// Rewrites the file if a counter changed since the last write (or `force`).
    pub fn write(&mut self, stats: &Stats, force: bool) {
        let generation = stats.generation();
        if !force && self.written_generation == Some(generation) {
            return;
        }
        let st = DaemonStatus {
            pid: std::process::id(),
            started: self.started,
            updated: now_secs(),
            last_delivery: None,
            last_error: None,
            last_error_at: None,
            counters: stats
                .snapshot()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        let result = self.ensure_dir().and_then(|()| {
            status::write(&self.path, &st).map_err(|e| std::io::Error::other(e.to_string()))
        });
        match result {
            Ok(()) => self.written_generation = Some(generation),
            Err(e) if !self.failure_logged => {
                self.failure_logged = true;
                tracing::warn!(file = %self.path.display(), error = %e,
                    "cannot write the status file; carrying on without it");
            }
            Err(_) => {}
        }
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn writes_when_changed_and_creates_state_dir() {
        let d = tempfile::tempdir().unwrap();
        let mut c = telemetry::Config::defaults(d.path());
        c.state_dir = d.path().join("state/sub");
        let stats = Stats::default();
        let mut w = StatusWriter::new(&c);
        w.write(&stats, false);
        let p = status::path(&c, "telemprobd");
        let st = status::read(&p).unwrap().unwrap();
        assert_eq!(st.counters["received"], 0);
        stats.bump(&stats.received);
        stats.bump(&stats.stored);
        w.write(&stats, false);
        let st = status::read(&p).unwrap().unwrap();
        assert_eq!(st.counters["received"], 1);
        assert_eq!(st.counters["stored"], 1);
        assert_eq!(st.pid, std::process::id());
    }

    #[test]
    fn unwritable_state_dir_is_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let blocker = d.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let mut c = telemetry::Config::defaults(d.path());
        c.state_dir = blocker.join("state");
        let stats = Stats::default();
        let mut w = StatusWriter::new(&c);
        w.write(&stats, true);
        w.write(&stats, true);
        assert!(w.failure_logged);
    }
}
