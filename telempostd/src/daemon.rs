//! The delivery loop: one queue of spooled records, oldest first, one record at a time over one
//! kept-alive connection.
//!
//! Each turn: read inotify events, rescan when the scan timer is due (expiry and quota are
//! enforced there, so a failing server never blocks them), then either handle the head record or
//! wait for the first of: shutdown, an inotify event, SIGHUP, the end of the backoff, the next
//! scan, the next status write, the idle exit. A failure of the head record backs off the whole
//! queue.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use telemetry::config::{RateLimitStrategy, Severity};
use telemetry::journal::{Entry, Journal, Outcome};
use telemetry::spool::{self, SpoolRecord};
use telemetry::Config;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{debug, error, info, warn};
use ureq::Agent;

use crate::attempts::{self, Attempts};
use crate::deliver::{self, AgentError, Attempt, HttpSettings, Target, Verdict};
use crate::finish::{Finisher, Leaving};
use crate::quarantine;
use crate::rate::{Decision, Limits, RateLimiter};
use crate::readahead::ReadAhead;
use crate::retry::{Backoff, Jitter, Policy};
use crate::spool_scan::{self, Key, OpenError, Queue};
use crate::status::Reporter;
use crate::watch::Watcher;

/// A spool file that fails to parse, cannot be read or has a name that is not UTF-8 is left
/// alone this long after its last change (the original daemon writes in place, so a scan may
/// see it half-written); after that it is journaled as rejected and moved to quarantine.
const CORRUPT_GRACE: Duration = Duration::from_secs(60);

/// While a backlog drains, the opt-in file and inotify are looked at this often, not before
/// every record (a stat and a read per record were a tenth of the syscalls). Opting out stops
/// delivery within this time; a record that inotify reports meanwhile is newer than the backlog
/// anyway, so it loses nothing by waiting.
const DRAIN_RECHECK: Duration = Duration::from_millis(100);

/// Timing knobs. Production uses the defaults; tests and the benchmark shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Whole-request HTTP timeout.
    pub http_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// First retry delay and floor of every retry delay.
    pub retry_base: Duration,
    /// Largest retry delay; `None` = `spool_process_time`.
    pub retry_cap: Option<Duration>,
    /// Time between full spool scans; `None` = `spool_process_time`.
    pub scan_interval: Option<Duration>,
    /// Idle time before exiting when `daemon_recycling_enabled`.
    pub idle_exit: Duration,
    /// Keep the connection alive between records.
    pub keepalive: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        let http = HttpSettings::default();
        Tuning {
            http_timeout: http.total_timeout,
            connect_timeout: http.connect_timeout,
            retry_base: Duration::from_secs(1),
            retry_cap: None,
            scan_interval: None,
            idle_exit: Duration::from_secs(300),
            keepalive: true,
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration in force at start.
    pub config: Config,
    /// Where it came from (`-f`), for SIGHUP reloads; `None` = the layered files.
    pub config_file: Option<PathBuf>,
    /// Timing knobs.
    pub tuning: Tuning,
    /// Reload the configuration on SIGHUP (the binary; in-process tests leave it off).
    pub reload_on_sighup: bool,
}

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future fired; the in-flight record was finished.
    Shutdown,
    /// `daemon_recycling_enabled` and nothing to do for the idle time.
    Idle,
}

/// Failures that stop the daemon before it starts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// inotify is unavailable.
    #[error("cannot set up inotify: {0}")]
    Inotify(#[source] io::Error),
    /// SIGHUP cannot be caught.
    #[error("cannot catch SIGHUP: {0}")]
    Signal(#[source] io::Error),
    /// The delivery thread died (a bug).
    #[error("delivery thread failed: {0}")]
    Worker(String),
    /// The thread that finishes delivered records cannot start.
    #[error("cannot start the finishing thread: {0}")]
    Finisher(#[source] io::Error),
}

/// Runs the daemon until `shutdown` fires (or the idle exit). Must run inside a tokio runtime
/// with I/O and time enabled.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<Exit, Error> {
    let mut hup = if opts.reload_on_sighup {
        Some(signal(SignalKind::hangup()).map_err(Error::Signal)?)
    } else {
        None
    };
    let mut d = Box::new(Daemon::new(opts)?);
    let mut shutdown = std::pin::pin!(shutdown);
    // Tells a drain on the delivery thread to return after the record in hand.
    let interrupt = Arc::new(AtomicBool::new(false));
    let mut reload_pending = false;
    let exit = loop {
        if reload_pending {
            d.reload();
            reload_pending = false;
        }
        d.housekeeping();
        let opted_in = d.check_opt_in();
        if d.has_work(opted_in) {
            // Records are due: deliver them on the blocking thread, one after the other, until
            // there is nothing due, the collector fails, or we are interrupted. The whole daemon
            // state moves there and back, so no per-record hand-off between threads is needed.
            interrupt.store(false, Ordering::SeqCst);
            let flag = interrupt.clone();
            let mut job = tokio::task::spawn_blocking(move || {
                d.drain(&flag);
                d
            });
            let mut stopping = false;
            let joined = loop {
                tokio::select! {
                    r = &mut job => break r,
                    _ = &mut shutdown, if !stopping => {
                        stopping = true;
                        interrupt.store(true, Ordering::SeqCst);
                    }
                    Some(()) = next_hup(&mut hup) => {
                        reload_pending = true;
                        interrupt.store(true, Ordering::SeqCst);
                    }
                }
            };
            d = joined.map_err(|e| Error::Worker(e.to_string()))?;
            if stopping {
                break Exit::Shutdown;
            }
            continue;
        }
        if d.idle_exit_due() {
            info!("nothing to deliver for a while; exiting (daemon_recycling_enabled)");
            break Exit::Idle;
        }
        let deadline = d.next_wakeup(opted_in);
        // Records that left during housekeeping (expiry, quota) are finished while we wait.
        d.finisher.hand_over();
        tokio::select! {
            _ = &mut shutdown => break Exit::Shutdown,
            r = d.watcher.ready() => {
                if let Err(e) = r {
                    warn!(error = %e, "inotify failed; relying on periodic scans");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Some(()) = next_hup(&mut hup) => reload_pending = true,
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    };
    d.status.write_now();
    info!(
        delivered = d.status.counter("delivered"),
        queued = d.queue.len(),
        "telempostd stopped"
    );
    Ok(exit)
}

async fn next_hup(hup: &mut Option<Signal>) -> Option<()> {
    match hup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

struct Daemon {
    config: Config,
    config_file: Option<PathBuf>,
    tuning: Tuning,
    /// Files must be owned by us to be delivered.
    uid: u32,
    /// Where records without a `CFG:` line go (shared, not copied, for each record).
    target: Arc<Target>,
    /// What makes the daemon's own target unusable (a `tidheader` HTTP cannot carry, a
    /// `server` that is no URL): records wait until a reload fixes it.
    target_problem: Option<String>,
    /// Failures per record while the server answers, for the head-of-line rule.
    attempts: Attempts,
    /// Files that could not be moved to quarantine: skipped until the daemon restarts.
    skipped: HashSet<OsString>,
    /// The kept-alive agent for the daemon's `cainfo` (built on first use, rebuilt on reload).
    agent: Option<Agent>,
    queue: Queue,
    backoff: Backoff,
    jitter: Jitter,
    /// No delivery attempt before this (backoff or rate limit); expiry and scans still run.
    not_before: Option<Instant>,
    /// The last attempt failed (to log the change of state once, not every retry).
    failing: bool,
    rate: RateLimiter,
    /// Journals and unlinks records that left the spool, on the other core.
    finisher: Finisher,
    /// Reads the next record while the collector answers the current one.
    read_ahead: ReadAhead,
    status: Reporter,
    watcher: Watcher,
    watching: bool,
    next_scan: Instant,
    last_activity: Instant,
    /// Opt-in state last logged, so "not opted in" is said once.
    opt_in_logged: Option<bool>,
    /// Read once: it cannot change while the process lives.
    boot_id: String,
    /// When a drain last looked at the opt-in file and inotify, and what the opt-in said.
    drain_checked: Option<(Instant, bool)>,
}

impl Daemon {
    fn new(opts: Options) -> Result<Daemon, Error> {
        let config = opts.config;
        let tuning = opts.tuning;
        let uid = rustix::process::geteuid().as_raw();
        let mut d = Daemon {
            uid,
            target: Arc::new(Target::from_config(&config)),
            target_problem: None,
            attempts: Attempts::load(Attempts::path_in(&config.state_dir)),
            skipped: HashSet::new(),
            agent: None,
            queue: Queue::new(),
            backoff: Backoff::new(policy(&config, &tuning)),
            jitter: Jitter::from_os(),
            not_before: None,
            failing: false,
            rate: RateLimiter::new(Limits::from_config(&config)),
            finisher: Finisher::start(
                open_journal(&config.journal_file),
                config.retention_dir.clone(),
            )
            .map_err(Error::Finisher)?,
            read_ahead: ReadAhead::new(uid),
            status: Reporter::new(&config),
            watcher: Watcher::new().map_err(Error::Inotify)?,
            watching: false,
            next_scan: Instant::now(),
            last_activity: Instant::now(),
            opt_in_logged: None,
            boot_id: telemetry::journal::boot_id(),
            drain_checked: None,
            config_file: opts.config_file,
            config,
            tuning,
        };
        d.ensure_watch();
        d.check_cainfo();
        d.check_target();
        info!(
            spool = %d.config.spool_dir.display(),
            server = %d.config.server,
            format = ?d.target.format,
            delivery = d.config.record_server_delivery_enabled,
            "telempostd started"
        );
        Ok(d)
    }

    fn http(&self) -> HttpSettings {
        HttpSettings {
            connect_timeout: self.tuning.connect_timeout,
            total_timeout: self.tuning.http_timeout,
            keepalive: self.tuning.keepalive,
        }
    }

    /// A configured but unusable CA file is said at start, not discovered at the first POST.
    fn check_cainfo(&self) {
        if let Some(p) = &self.config.cainfo {
            if let Err(e) = deliver::build_agent(Some(p), &self.http()) {
                error!("{e}; records are kept until it is fixed");
            }
        }
    }

    /// A daemon target HTTP cannot use is said at start, and kept to hold the queue.
    fn check_target(&mut self) {
        self.target_problem = deliver::check_target(&self.target).err();
        if let Some(why) = &self.target_problem {
            error!("{why}; records are kept until the configuration is fixed");
        }
    }

    fn ensure_watch(&mut self) {
        if self.watching {
            return;
        }
        let dir = self.config.spool_dir.clone();
        if !dir.is_dir() {
            if let Err(e) = fs::DirBuilder::new().recursive(true).create(&dir) {
                warn!(dir = %dir.display(), error = %e, "spool directory missing and not creatable");
                return;
            }
        }
        match self.watcher.watch(&dir) {
            Ok(()) => self.watching = true,
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch the spool; relying on periodic scans")
            }
        }
    }

    fn scan_interval(&self) -> Duration {
        self.tuning
            .scan_interval
            .unwrap_or(Duration::from_secs(self.config.spool_process_time))
    }

    fn check_opt_in(&mut self) -> bool {
        let opted = telemetry::optin::is_opted_in(&self.config);
        if self.opt_in_logged != Some(opted) {
            if opted {
                if self.opt_in_logged.is_some() {
                    info!("opted in; delivering");
                }
            } else {
                info!(
                    file = %self.config.opt_in_file.display(),
                    "not opted in; records stay in the spool and nothing is sent"
                );
            }
            self.opt_in_logged = Some(opted);
        }
        opted
    }

    fn idle_exit_due(&self) -> bool {
        self.config.daemon_recycling_enabled
            && self.queue.is_empty()
            && self.last_activity.elapsed() >= self.tuning.idle_exit
    }

    fn next_wakeup(&self, opted_in: bool) -> Instant {
        let mut t = self.next_scan;
        if opted_in && !self.queue.is_empty() {
            if let Some(nb) = self.not_before {
                t = t.min(nb);
            }
        }
        if let Some(s) = self.status.due() {
            t = t.min(s);
        }
        if self.config.daemon_recycling_enabled && self.queue.is_empty() {
            t = t.min(self.last_activity + self.tuning.idle_exit);
        }
        t
    }

    /// Between records and before waiting: status write, inotify names, the scan when due.
    fn housekeeping(&mut self) {
        self.status.maybe_write();
        let events = self.watcher.drain();
        self.absorb(events);
        if Instant::now() >= self.next_scan {
            self.full_scan();
        }
    }

    /// A record may be attempted now.
    fn has_work(&self, opted_in: bool) -> bool {
        opted_in && !self.queue.is_empty() && self.not_before.is_none_or(|t| t <= Instant::now())
    }

    /// Runs on the blocking thread: handles due records until none is due or `interrupt` is
    /// set (checked between records, so a POST in flight is always finished).
    fn drain(&mut self, interrupt: &AtomicBool) {
        self.drain_checked = None;
        loop {
            let opted_in = self.drain_housekeeping();
            if interrupt.load(Ordering::SeqCst) || !self.has_work(opted_in) {
                self.finisher.hand_over();
                deliver::idle();
                return;
            }
            self.not_before = None;
            self.process_head();
        }
    }

    /// `housekeeping` and the opt-in check between two records of a drain: the status write and
    /// the scan when due, inotify and the opt-in file every [`DRAIN_RECHECK`].
    fn drain_housekeeping(&mut self) -> bool {
        let now = Instant::now();
        match self.drain_checked {
            Some((at, opted_in)) if now.duration_since(at) < DRAIN_RECHECK => {
                self.status.maybe_write();
                if now >= self.next_scan {
                    self.full_scan();
                }
                opted_in
            }
            _ => {
                self.housekeeping();
                let opted_in = self.check_opt_in();
                self.drain_checked = Some((now, opted_in));
                opted_in
            }
        }
    }

    /// Adds the names inotify reported.
    fn absorb(&mut self, events: crate::watch::Events) {
        if events.rescan {
            self.watching = false;
            self.next_scan = Instant::now();
        }
        for name in events.names {
            if let Some(key) = spool_scan::probe(&self.config.spool_dir, &name, self.uid) {
                if self.finisher.pending().contains(&key)
                    || self.skipped.contains(OsStr::new(&name))
                {
                    continue;
                }
                self.queue.insert(key);
                self.last_activity = Instant::now();
            }
        }
    }

    /// Rebuilds the queue from the directory, then enforces expiry and the quota.
    fn full_scan(&mut self) {
        self.next_scan = Instant::now() + self.scan_interval();
        self.ensure_watch();
        let found = match spool_scan::scan(&self.config.spool_dir, self.uid) {
            Ok(f) => f,
            Err(e) => {
                warn!(dir = %self.config.spool_dir.display(), error = %e, "cannot list the spool");
                return;
            }
        };
        self.queue = found.queue;
        // Files handed to the finisher are delivered; they only wait for their unlink.
        if !self.finisher.pending().is_empty() {
            let pending = self.finisher.pending();
            self.queue.retain(|k| !pending.contains(k));
        }
        if !self.skipped.is_empty() {
            let skipped = &self.skipped;
            self.queue
                .retain(|k| !skipped.contains(OsStr::new(&*k.name())));
        }
        if !self.attempts.is_empty() {
            let names: HashSet<String> = self.queue.iter().map(|k| k.name().into_owned()).collect();
            self.attempts.retain(|n| names.contains(n));
        }
        if !telemetry::optin::is_opted_in(&self.config) {
            // Not opted in: touch nothing (opt-out purges the spool itself).
            return;
        }
        for (name, mtime) in found.odd_names {
            let age = spool_scan::now_secs().saturating_sub(mtime);
            if age >= CORRUPT_GRACE.as_secs() && !self.skipped.contains(&name) {
                let why = format!(
                    "spool file name {:?} is not UTF-8 (no record has such a name)",
                    name.to_string_lossy()
                );
                self.quarantine(&name, None, why);
            }
        }
        let mut allocated = found.allocated;
        // While records move, each one's expiry is checked just before its attempt; reading
        // every file of a backlog to find expired ones is only needed when the queue is stuck
        // (the collector fails, or a rate limit holds it), so a big backlog is not read twice.
        if self.failing || self.not_before.is_some() {
            allocated = allocated.saturating_sub(self.sweep_expired());
        }
        self.enforce_quota(allocated);
    }

    /// Expires what is due in the whole queue; returns the allocated bytes removed.
    fn sweep_expired(&mut self) -> u64 {
        let now = spool_scan::now_secs();
        let mut expired = Vec::new();
        for key in self.queue.iter() {
            let Ok(opened) = spool_scan::read(&self.config.spool_dir, &key.name(), self.uid) else {
                continue;
            };
            if let Ok(sr) = spool::decode(&opened.bytes) {
                if let Some(why) = self.expired(&sr, opened.mtime_secs(), now) {
                    let bytes = spool_scan::allocated_bytes(&opened.meta);
                    expired.push((key.clone(), why, bytes));
                }
            }
        }
        // Only keys are kept meanwhile (a whole expired backlog decoded at once would be
        // large); each expired file is read again for its journal entry.
        let mut freed = 0;
        for (key, why, bytes) in expired {
            let sr = spool_scan::read(&self.config.spool_dir, &key.name(), self.uid)
                .ok()
                .and_then(|o| spool::decode(&o.bytes).ok());
            self.remove(&key, sr.as_ref(), Outcome::Expired, why, false);
            freed += bytes;
        }
        freed
    }

    /// `Some(reason)` when the record is older than `record_expiry`, counted from its
    /// `creation_timestamp` (the file's mtime if that is not a number).
    fn expired(&self, sr: &SpoolRecord, mtime: u64, now: u64) -> Option<String> {
        let created = sr.record.creation_timestamp().unwrap_or(mtime);
        let age = now.saturating_sub(created);
        (age > self.config.record_expiry.saturating_mul(60)).then(|| {
            format!(
                "expired: created {age} s ago, record_expiry is {} min",
                self.config.record_expiry
            )
        })
    }

    /// Over `spool_max_size` (telemprobd refuses new records before that, so this happens only
    /// after the quota was lowered or with files from elsewhere): the oldest records are dropped.
    /// `total` is the queue's allocated size; the files dropped are stat'ed again for theirs.
    fn enforce_quota(&mut self, mut total: u64) {
        let Some(max_kib) = self.config.spool_max_size else {
            return;
        };
        // Above telemprobd's admission limit, so a record it accepted is never dropped here
        // while the configuration is unchanged.
        let limit = telemetry::spool::Quota::from_kib(Some(max_kib))
            .map_or(u64::MAX, telemetry::spool::Quota::drop_limit);
        while total > limit {
            let Some(key) = self.queue.first().cloned() else {
                break;
            };
            let size = spool_scan::allocated_of(&self.config.spool_dir, &key);
            let sr = spool_scan::read(&self.config.spool_dir, &key.name(), self.uid)
                .ok()
                .and_then(|o| spool::decode(&o.bytes).ok());
            let why = format!(
                "spool over quota: {} KiB > spool_max_size {max_kib} KiB",
                total / 1024
            );
            self.remove(&key, sr.as_ref(), Outcome::Dropped, why, false);
            total = total.saturating_sub(size);
        }
    }

    /// Handles the oldest record: expire, drop, reject, deliver, or back off.
    fn process_head(&mut self) {
        let Some(key) = self.head() else {
            return;
        };
        let read = self
            .read_ahead
            .take(&key)
            .unwrap_or_else(|| spool_scan::read(&self.config.spool_dir, &key.name(), self.uid));
        let opened = match read {
            Ok(o) => o,
            Err(OpenError::Gone) => {
                self.queue.remove(&key);
                return;
            }
            Err(OpenError::NotOurs(why)) => {
                debug!(file = %key.name(), why, "ignoring spool entry");
                self.queue.remove(&key);
                return;
            }
            Err(OpenError::TooLarge(n)) => {
                let why = format!("spool file of {n} bytes is larger than any record");
                self.quarantine(OsStr::new(&*key.name()), Some(&key), why);
                return;
            }
            Err(OpenError::Io(e)) => {
                let path = self.config.spool_dir.join(&*key.name());
                let age = fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok());
                if age.is_some_and(|a| a >= CORRUPT_GRACE) {
                    let why = format!("cannot read spool file: {e}");
                    self.quarantine(OsStr::new(&*key.name()), Some(&key), why);
                } else {
                    debug!(file = %key.name(), error = %e, "cannot read spool file yet; retrying at the next scan");
                    self.queue.remove(&key);
                }
                return;
            }
        };
        let sr = match spool::decode(&opened.bytes) {
            Ok(sr) => sr,
            Err(e) => {
                let age = opened.meta.modified().ok().and_then(|m| m.elapsed().ok());
                if age.is_none_or(|a| a < CORRUPT_GRACE) {
                    debug!(file = %key.name(), error = %e, "incomplete spool file; retrying later");
                    self.queue.remove(&key);
                } else {
                    let why = format!("unreadable spool file {}: {e}", key.name());
                    self.quarantine(OsStr::new(&*key.name()), Some(&key), why);
                }
                return;
            }
        };
        if let Some(why) = self.expired(&sr, opened.mtime_secs(), spool_scan::now_secs()) {
            self.remove(&key, Some(&sr), Outcome::Expired, why, false);
            return;
        }
        if !self.config.record_server_delivery_enabled {
            let why = "kept locally (record_server_delivery_enabled=false)".to_string();
            self.remove(&key, Some(&sr), Outcome::Delivered, why, true);
            return;
        }
        let bytes = sr.record.payload().len() as u64;
        if let Decision::Wait(wait) = self.rate.check(SystemTime::now(), bytes) {
            match self.config.rate_limit_strategy {
                RateLimitStrategy::Spool => {
                    debug!(wait_ms = wait.as_millis() as u64, "rate limited; waiting");
                    self.not_before = Some(Instant::now() + wait);
                }
                RateLimitStrategy::Drop => {
                    let why = "rate limited (rate_limit_strategy=drop)".to_string();
                    self.remove(&key, Some(&sr), Outcome::Dropped, why, false);
                }
            }
            return;
        }
        // No configuration problem deletes a record: the daemon's own holds the queue (with
        // backoff) until a reload fixes it; one record's holds that record until the next scan
        // while the others go on.
        let target = match self.target_for(sr.cfg.as_deref()) {
            Ok(t) => t,
            Err(why) => {
                self.hold(&key, why);
                return;
            }
        };
        if Arc::ptr_eq(&target, &self.target) {
            if let Some(why) = &self.target_problem {
                self.failed(why.clone(), None);
                return;
            }
        } else if let Err(why) = deliver::check_target(&target) {
            self.hold(&key, format!("per-record config {}: {why}", cfg_name(&sr)));
            return;
        }
        let agent = match self.agent_for(&target) {
            Ok(a) => a,
            // The daemon's own CA file: an admin can fix it, keep the records.
            Err(e) if target.cainfo == self.target.cainfo => {
                self.failed(e.to_string(), None);
                return;
            }
            // One record's CA file: do not hold up the whole queue for it.
            Err(e) => {
                self.hold(&key, format!("per-record config unusable: {e}"));
                return;
            }
        };
        let req = deliver::encode(&sr.record, &target, self.tuning.keepalive);
        if let Some(next) = self.queue.iter().find(|k| **k != key) {
            self.read_ahead
                .want(self.config.spool_dir.clone(), next.clone());
        }
        let was_failing = self.backoff.failures() > 0;
        // We are on the blocking thread (see `drain`).
        let attempt = deliver::post_overlapped(&agent, &req, self.read_ahead.while_waiting());
        if was_failing {
            self.status.bump("retried");
        }
        match deliver::classify(&attempt, SystemTime::now()) {
            v @ Verdict::Delivered { .. } => {
                self.answered();
                self.rate.record(SystemTime::now(), bytes);
                self.status.delivered_now();
                self.remove(&key, Some(&sr), Outcome::Delivered, v.to_string(), true);
            }
            v @ Verdict::Rejected { .. } => {
                if !matches!(attempt, Attempt::Unsendable(_)) {
                    self.answered();
                }
                let why = v.to_string();
                self.status.error(&format!("record rejected: {why}"));
                self.remove(&key, Some(&sr), Outcome::Rejected, why, false);
            }
            Verdict::Retry {
                reason,
                retry_after,
            } => {
                // The server answered and did not take it: count it against this record, so
                // that it goes behind the others after a few (a server that is down is not the
                // record's fault and counts nothing).
                if matches!(attempt, Attempt::Answered { .. }) {
                    let n = self.attempts.failed(&key.name());
                    if n == attempts::BEHIND_AFTER {
                        warn!(file = %key.name(), %reason, "the collector failed this record {n} times; it goes behind the others");
                    }
                }
                self.failed(reason, retry_after)
            }
        }
    }

    /// The record to attempt: the oldest that has not failed [`Attempts::limit`] times while
    /// the server answered; if every queued record has, the one with the fewest failures (the
    /// oldest of those), so they take turns.
    fn head(&self) -> Option<Key> {
        if self.attempts.is_empty() {
            return self.queue.first().cloned();
        }
        let limit = self.attempts.limit();
        let mut best: Option<(u32, &Key)> = None;
        for k in self.queue.iter() {
            let n = self.attempts.get(&k.name());
            if n < limit {
                return Some(k.clone());
            }
            if best.is_none_or(|(b, _)| n < b) {
                best = Some((n, k));
            }
        }
        best.map(|(_, k)| k.clone())
    }

    /// A record that its own configuration keeps from being sent stays in the spool; it leaves
    /// the queue until the next scan (or reload), so the others go on.
    fn hold(&mut self, key: &Key, why: String) {
        warn!(file = %key.name(), %why, "record kept in the spool until its configuration is fixed");
        self.status.bump("config_errors");
        self.status.error(&why);
        self.queue.remove(key);
    }

    /// A file that is no record is moved to quarantine (never deleted) and journaled as
    /// rejected; if it cannot be moved, it stays and is skipped until the daemon restarts.
    fn quarantine(&mut self, name: &OsStr, key: Option<&Key>, why: String) {
        if let Some(k) = key {
            self.queue.remove(k);
        }
        match quarantine::move_aside(&self.config.spool_dir, name, self.uid) {
            Ok(to) => {
                let detail = format!("{why}; moved to {}", to.display());
                warn!(file = %name.to_string_lossy(), %detail, "not a record: moved to quarantine");
                let lossy = name.to_string_lossy();
                let k = key.cloned().unwrap_or_else(|| Key::new(&lossy, 0));
                self.journal_leave(&k, None, Outcome::Rejected, detail, false, None);
            }
            Err(e) => {
                warn!(file = %name.to_string_lossy(), %why, error = %e, "not a record and not movable to quarantine; skipped until restart");
                self.status.error(&format!("{why}; {e}"));
                self.skipped.insert(name.to_os_string());
            }
        }
    }

    /// The server answered: end any backoff.
    fn answered(&mut self) {
        if self.failing {
            info!("collector reachable again");
            self.failing = false;
        }
        self.backoff.reset();
    }

    /// The head record could not be delivered: back off the whole queue.
    fn failed(&mut self, reason: String, retry_after: Option<Duration>) {
        let delay = self.backoff.on_failure(retry_after, self.jitter.unit());
        self.not_before = Some(Instant::now() + delay);
        self.status.bump("failed_attempts");
        self.status.error(&reason);
        if self.failing {
            debug!(%reason, retry_in_ms = delay.as_millis() as u64, "delivery failed again");
        } else {
            warn!(%reason, retry_in_ms = delay.as_millis() as u64, "delivery failed; backing off");
            self.failing = true;
        }
    }

    /// The target for a record: the daemon's, or its `CFG:` file's (regular files only). A
    /// `CFG:` file whose error touches the target (a bad line, or a bad `server`, `tidheader`,
    /// `cainfo` or `post_format`) rejects the record (`Err(reason)`); an error in a key the
    /// target does not use is logged and does not cost the record.
    fn target_for(&self, cfg: Option<&Path>) -> Result<Arc<Target>, String> {
        let Some(path) = cfg else {
            return Ok(self.target.clone());
        };
        match fs::metadata(path) {
            Ok(m) if m.is_file() => {
                let (c, diagnostics) =
                    Config::load_from_with_diagnostics(&self.config.root, Some(path));
                for d in diagnostics
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                {
                    match d.key {
                        Some(k)
                            if !["server", "tidheader", "cainfo", "post_format"].contains(&k) =>
                        {
                            warn!(cfg = %path.display(), "per-record config: {d}; not used for delivery");
                        }
                        _ => return Err(format!("per-record config does not load: {d}")),
                    }
                }
                Ok(Arc::new(Target::from_config(&c)))
            }
            _ => {
                debug!(cfg = %path.display(), "CFG path is not a regular file; using the daemon's config");
                Ok(self.target.clone())
            }
        }
    }

    /// The kept-alive agent for the daemon's CA setting; a one-off agent for a per-record
    /// `cainfo` that differs.
    fn agent_for(&mut self, target: &Target) -> Result<Agent, AgentError> {
        if target.cainfo == self.target.cainfo {
            if let Some(a) = &self.agent {
                return Ok(a.clone());
            }
            let a = deliver::build_agent(target.cainfo.as_deref(), &self.http())?;
            self.agent = Some(a.clone());
            return Ok(a);
        }
        deliver::build_agent(target.cainfo.as_deref(), &self.http())
    }

    /// A record leaves the spool: the finisher writes its journal entry (and the retained
    /// body), then unlinks it, so a crash in between can duplicate an entry but never lose one.
    fn remove(
        &mut self,
        key: &Key,
        sr: Option<&SpoolRecord>,
        outcome: Outcome,
        detail: String,
        retain: bool,
    ) {
        let path = self.config.spool_dir.join(&*key.name());
        self.journal_leave(key, sr, outcome, detail, retain, Some(path));
    }

    /// The journal entry of a record that leaves the spool, and the unlink of `path` after it.
    fn journal_leave(
        &mut self,
        key: &Key,
        sr: Option<&SpoolRecord>,
        outcome: Outcome,
        detail: String,
        retain: bool,
        path: Option<PathBuf>,
    ) {
        let (class, event) = sr.map_or(("", ""), |s| deliver::ids(&s.record));
        debug!(file = %key.name(), classification = class, event_id = event, outcome = outcome.as_str(), %detail, "record leaves the spool");
        // The entry's own random id is made on the finishing thread (a syscall less here).
        let entry = Entry {
            record_id: String::new(),
            timestamp: spool_scan::now_secs(),
            classification: class.to_string(),
            event_id: event.to_string(),
            boot_id: self.boot_id.clone(),
            outcome: Some(outcome),
            detail,
        };
        let retained = (retain && self.config.record_retention_enabled)
            .then(|| sr.map(|s| s.record.payload().to_vec()))
            .flatten();
        self.finisher.leave(Leaving {
            key: key.clone(),
            path,
            entry,
            retained,
        });
        self.queue.remove(key);
        if !self.attempts.is_empty() {
            self.attempts.forget(&key.name());
        }
        self.status.bump(outcome.as_str());
        self.last_activity = Instant::now();
    }

    /// SIGHUP: reread the configuration; keep the old one if the new one does not load.
    fn reload(&mut self) {
        let new = match Config::load(self.config_file.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                error!("configuration not reloaded, keeping the old one: {e}");
                return;
            }
        };
        for w in &new.warnings {
            warn!("{w}");
        }
        if new.spool_dir != self.config.spool_dir {
            self.watching = false;
        }
        if new.journal_file != self.config.journal_file
            || new.retention_dir != self.config.retention_dir
        {
            self.finisher
                .reconfigure(open_journal(&new.journal_file), new.retention_dir.clone());
        }
        self.target = Arc::new(Target::from_config(&new));
        self.attempts.set_path(Attempts::path_in(&new.state_dir));
        self.skipped.clear();
        self.agent = None;
        self.rate.set_limits(Limits::from_config(&new));
        self.backoff.set_policy(policy(&new, &self.tuning));
        self.status.set_config(&new);
        self.config = new;
        self.check_cainfo();
        self.check_target();
        self.next_scan = Instant::now();
        self.not_before = None;
        info!(server = %self.config.server, "configuration reloaded");
    }
}

/// The `CFG:` path of a record, for messages.
fn cfg_name(sr: &SpoolRecord) -> String {
    sr.cfg
        .as_deref()
        .map_or_else(String::new, |p| p.display().to_string())
}

fn policy(config: &Config, tuning: &Tuning) -> Policy {
    Policy {
        base: tuning.retry_base,
        cap: tuning
            .retry_cap
            .unwrap_or(Duration::from_secs(config.spool_process_time)),
    }
}

fn open_journal(path: &Path) -> Option<Journal> {
    if let Some(dir) = path.parent() {
        let _ = fs::DirBuilder::new().recursive(true).create(dir);
    }
    match Journal::open(path) {
        Ok(j) => Some(j),
        Err(e) => {
            warn!(error = %e, "journal disabled");
            None
        }
    }
}
