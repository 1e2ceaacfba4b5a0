//! The status file `telemctl status` reads: counters and the last delivery and error, written at
//! most once a second when something changed, and at exit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use telemetry::status::{self, DaemonStatus};
use telemetry::Config;

use crate::spool_scan::now_secs;

/// Counter names, all present from the start so a reader sees zeros, not gaps.
pub const COUNTERS: [&str; 7] = [
    "delivered",
    "rejected",
    "expired",
    "dropped",
    "retried",
    "failed_attempts",
    "config_errors",
];

/// Minimum time between two writes.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps the figures and writes them.
#[derive(Debug)]
pub struct Reporter {
    path: PathBuf,
    status: DaemonStatus,
    dirty: bool,
    last_write: Option<Instant>,
}

impl Reporter {
    /// A reporter for `config`'s state directory, all counters at zero. The last delivery and
    /// the last error of the previous run are kept: telempostd exits when idle and the path
    /// unit starts it again, and `telemctl status` must not then say "last delivery: never".
    pub fn new(config: &Config) -> Reporter {
        let now = now_secs();
        let path = status::path(config, "telempostd");
        let previous = status::read(&path).ok().flatten().unwrap_or_default();
        let mut st = DaemonStatus {
            pid: std::process::id(),
            started: now,
            updated: now,
            last_delivery: previous.last_delivery,
            last_error: previous.last_error,
            last_error_at: previous.last_error_at,
            ..Default::default()
        };
        for c in COUNTERS {
            st.counters.insert(c.to_string(), 0);
        }
        Reporter {
            path,
            status: st,
            dirty: true,
            last_write: None,
        }
    }

    /// Follows a changed `state_dir` (config reload).
    pub fn set_config(&mut self, config: &Config) {
        self.path = status::path(config, "telempostd");
        self.dirty = true;
    }

    /// Adds one to a counter.
    pub fn bump(&mut self, counter: &str) {
        // No allocation for a counter that exists (all of ours do, from the start).
        match self.status.counters.get_mut(counter) {
            Some(n) => *n += 1,
            None => {
                self.status.counters.insert(counter.to_string(), 1);
            }
        }
        self.dirty = true;
    }

    /// Notes a successful delivery now.
    pub fn delivered_now(&mut self) {
        self.status.last_delivery = Some(now_secs());
        self.dirty = true;
    }

    /// Notes an error now.
    pub fn error(&mut self, e: &str) {
        if self.status.last_error.as_deref() != Some(e) {
            self.status.last_error = Some(e.to_string());
        }
        self.status.last_error_at = Some(now_secs());
        self.dirty = true;
    }

    /// A counter's value.
    pub fn counter(&self, name: &str) -> u64 {
        self.status.counters.get(name).copied().unwrap_or(0)
    }

    /// When the next write is due, if one is pending.
    pub fn due(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        Some(
            self.last_write
                .map_or_else(Instant::now, |t| t + MIN_INTERVAL),
        )
    }

    /// Writes if something changed and the last write is at least a second old.
    pub fn maybe_write(&mut self) {
        if self.due().is_some_and(|t| t <= Instant::now()) {
            self.write_now();
        }
    }

    /// Writes now (at exit). Failures are logged, never fatal.
    pub fn write_now(&mut self) {
        self.status.updated = now_secs();
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = status::write(&self.path, &self.status) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
        self.dirty = false;
        self.last_write = Some(Instant::now());
    }
}
