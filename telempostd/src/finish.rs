//! Finishing records that left the spool — the journal line, the retained body, the unlink — on
//! a thread of its own, so that file work runs on the other core while the delivery loop and
//! the collector take turns (it was about 40 % of a delivered record's CPU; done in the gap of
//! the same thread it made the loop's turn longer than the collector's).
//!
//! Order per record is kept: journal line, retained body, then the unlink, so a crash can leave
//! a journaled record still in the spool (delivered again after a restart: at-least-once, see
//! `docs/delivery.md`) but never a removed record without its journal line.
//!
//! The thread takes records in batches: it wakes when the first record of a batch arrives,
//! lingers up to [`LINGER`] (or until [`BATCH`] records are there, or the delivery loop is about
//! to wait), then writes the batch's journal lines with one `write` and unlinks the files. Waking
//! it for every record cost about as much as the overlap saved; the linger bounds how long a
//! delivered record stays in the spool (and so what a crash can make us deliver twice).
//!
//! The delivery loop must not queue a file again between handing it over and its unlink: names
//! handed over stay in the shared [`Pending`] set until they are gone, and scans skip them.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use telemetry::journal::{Entry, Journal};
use tracing::{error, warn};

use crate::spool_scan::Key;

/// Records that make a batch: the thread starts on them at once.
pub const BATCH: usize = 16;

/// Records handed over and not yet finished (journaled and unlinked), at most: one batch being
/// finished while the next one fills. [`Finisher::leave`] waits when there are this many, so a
/// finishing thread that falls behind slows delivery instead of piling up delivered records
/// that a crash would send again (it was unbounded: 1,368 after one `kill -9` at full speed).
pub const MAX_UNFINISHED: usize = 2 * BATCH;

/// How long the thread waits for a batch to fill once its first record arrived.
pub const LINGER: Duration = Duration::from_millis(10);

/// Spool files handed over but not yet unlinked (at most [`MAX_UNFINISHED`]: a list beats a
/// hash set here).
#[derive(Debug, Default)]
pub struct Pending {
    keys: Mutex<Vec<Key>>,
    /// Signalled when finished names leave the list.
    freed: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, Vec<Key>> {
        // Every step leaves the list consistent, so a poisoned lock is used as is.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many are on their way out.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the file is on its way out.
    pub fn contains(&self, key: &Key) -> bool {
        self.lock().contains(key)
    }

    /// Nothing on its way out.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// One record leaving the spool.
#[derive(Debug)]
pub struct Leaving {
    /// Its queue key (removed from [`Pending`] after the unlink).
    pub key: Key,
    /// The spool file.
    pub path: PathBuf,
    /// Its journal line; an empty `record_id` is made by the finishing thread.
    pub entry: Entry,
    /// The delivered body to keep under the retention directory, by journal record id.
    pub retained: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Job {
    Leave(Leaving),
    /// A reload changed where the journal or the retained bodies go.
    Reconfigure {
        journal: Option<Journal>,
        retention_dir: PathBuf,
    },
}

/// What the delivery loop hands over, under one lock.
#[derive(Debug, Default)]
struct Inbox {
    jobs: Vec<Job>,
    /// `Leave` jobs in `jobs`.
    leaves: usize,
    /// Start now, do not linger (the delivery loop is about to wait).
    urgent: bool,
    /// The handle is gone: finish what is there and stop.
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The finishing thread's handle. Dropping it finishes every record handed over, then joins.
#[derive(Debug)]
pub struct Finisher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    pending: Arc<Pending>,
}

impl Finisher {
    /// Starts the thread with the journal (if it could be opened) and the retention directory.
    pub fn start(journal: Option<Journal>, retention_dir: PathBuf) -> io::Result<Finisher> {
        let shared = Arc::new(Shared::default());
        let pending = Arc::new(Pending::default());
        let worker = Worker {
            journal,
            retention_dir,
            pending: pending.clone(),
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("finish".into())
            .spawn(move || worker.run(&s))?;
        Ok(Finisher {
            shared,
            thread: Some(thread),
            pending,
        })
    }

    /// The names handed over and not yet unlinked.
    pub fn pending(&self) -> &Pending {
        &self.pending
    }

    /// A record leaves the spool: it is finished within [`LINGER`] (sooner in a full batch).
    /// Waits while [`MAX_UNFINISHED`] records are unfinished.
    pub fn leave(&mut self, leaving: Leaving) {
        self.wait_for_room();
        self.pending.lock().push(leaving.key.clone());
        let n = {
            let mut inbox = self.shared.lock();
            inbox.jobs.push(Job::Leave(leaving));
            inbox.leaves += 1;
            inbox.leaves
        };
        // The first record starts the thread's linger; a full batch ends it.
        if n == 1 || n == BATCH {
            self.shared.wake.notify_one();
        }
    }

    /// Back-pressure: returns once fewer than [`MAX_UNFINISHED`] records are unfinished (or the
    /// thread is gone, when nothing will ever be finished: a bug, logged at `flush`).
    fn wait_for_room(&mut self) {
        let mut keys = self.pending.lock();
        while keys.len() >= MAX_UNFINISHED {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
            drop(keys);
            // The thread must not linger for a batch that cannot fill.
            self.hand_over();
            keys = self.pending.lock();
            if keys.len() >= MAX_UNFINISHED {
                keys = self
                    .pending
                    .freed
                    .wait_timeout(keys, Duration::from_millis(100))
                    .map_or_else(|p| p.into_inner().0, |(g, _)| g);
            }
        }
    }

    /// Finish what was left without lingering: the delivery loop is about to wait.
    pub fn hand_over(&mut self) {
        let mut inbox = self.shared.lock();
        if !inbox.jobs.is_empty() && !inbox.urgent {
            inbox.urgent = true;
            drop(inbox);
            self.shared.wake.notify_one();
        }
    }

    /// A reload: the journal to append to and where retained bodies go from now on (records
    /// left before this still go to the old ones).
    pub fn reconfigure(&mut self, journal: Option<Journal>, retention_dir: PathBuf) {
        self.shared.lock().jobs.push(Job::Reconfigure {
            journal,
            retention_dir,
        });
        self.shared.wake.notify_one();
    }

    /// Finishes everything left so far and stops the thread.
    pub fn flush(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if t.join().is_err() {
            error!("finishing thread panicked; records it did not finish stay in the spool");
        }
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        self.flush();
    }
}

struct Worker {
    journal: Option<Journal>,
    retention_dir: PathBuf,
    pending: Arc<Pending>,
}

impl Worker {
    fn run(mut self, shared: &Shared) {
        loop {
            let jobs = {
                let mut inbox = shared.lock();
                while inbox.jobs.is_empty() && !inbox.closed {
                    inbox = shared.wake.wait(inbox).unwrap_or_else(|p| p.into_inner());
                }
                if inbox.jobs.is_empty() {
                    return;
                }
                let until = Instant::now() + LINGER;
                while inbox.leaves < BATCH && !inbox.urgent && !inbox.closed {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    inbox = shared
                        .wake
                        .wait_timeout(inbox, left)
                        .map_or_else(|p| p.into_inner().0, |(g, _)| g);
                }
                inbox.leaves = 0;
                inbox.urgent = false;
                std::mem::take(&mut inbox.jobs)
            };
            let mut run = Vec::with_capacity(jobs.len());
            for job in jobs {
                match job {
                    Job::Leave(l) => run.push(l),
                    Job::Reconfigure {
                        journal,
                        retention_dir,
                    } => {
                        self.finish(std::mem::take(&mut run));
                        self.journal = journal;
                        self.retention_dir = retention_dir;
                    }
                }
            }
            self.finish(run);
        }
    }

    /// Journal lines first (pruned as the original prunes after each line), retained bodies,
    /// the unlinks, then the retained bodies of pruned lines.
    fn finish(&mut self, mut run: Vec<Leaving>) {
        if run.is_empty() {
            return;
        }
        for l in &mut run {
            if l.entry.record_id.is_empty() {
                match telemetry::record::new_event_id() {
                    Ok(id) => l.entry.record_id = id,
                    Err(e) => warn!(error = %e, "cannot make a journal entry id"),
                }
            }
        }
        let mut dropped = Vec::new();
        if let Some(j) = &mut self.journal {
            let entries: Vec<&Entry> = run
                .iter()
                .map(|l| &l.entry)
                .filter(|e| !e.record_id.is_empty())
                .collect();
            match j.append_and_prune(&entries) {
                Ok(ids) => dropped = ids,
                Err(e) => warn!(error = %e, "cannot write the journal"),
            }
        }
        for l in &run {
            if let Some(body) = &l.retained {
                if !l.entry.record_id.is_empty() {
                    self.retain(&l.entry.record_id, body);
                }
            }
        }
        for l in &run {
            if let Err(e) = fs::remove_file(&l.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(file = %l.path.display(), error = %e, "cannot remove spool file");
                }
            }
        }
        self.pending
            .lock()
            .retain(|k| !run.iter().any(|l| l.key == *k));
        self.pending.freed.notify_all();
        // Without a retention directory there is nothing to delete (one stat instead of an
        // unlink per pruned line, every 50 records).
        if !dropped.is_empty() && self.retention_dir.is_dir() {
            for id in dropped {
                let _ = fs::remove_file(self.retention_dir.join(id));
            }
        }
    }

    fn retain(&self, record_id: &str, body: &[u8]) {
        let dir = &self.retention_dir;
        let res = fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .and_then(|()| fs::write(dir.join(record_id), body));
        if let Err(e) = res {
            warn!(dir = %dir.display(), error = %e, "cannot retain record body");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use telemetry::journal::Outcome;

    fn entry(id: &str) -> Entry {
        Entry {
            record_id: id.to_string(),
            timestamp: 1,
            classification: "a/b/c".into(),
            event_id: "ev".into(),
            boot_id: "boot".into(),
            outcome: Some(Outcome::Delivered),
            detail: "201".into(),
        }
    }

    fn name(i: u64) -> String {
        format!("{:020}-{:08}", 1_000 + i, i)
    }

    #[test]
    fn journals_then_unlinks_everything_and_prunes_like_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let jpath = dir.path().join("journal");
        let journal = Journal::open(&jpath).unwrap();
        let mut f = Finisher::start(Some(journal), dir.path().join("kept")).unwrap();
        for i in 0..200 {
            let path = dir.path().join(name(i));
            fs::write(&path, "x").unwrap();
            let id = if i % 2 == 0 {
                String::new()
            } else {
                format!("id{i}")
            };
            f.leave(Leaving {
                key: Key::new(&name(i), 0),
                path,
                entry: entry(&id),
                retained: (i == 199).then(|| b"body".to_vec()),
            });
        }
        f.flush();
        assert!(f.pending().is_empty());
        let left = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("0000"))
            .count();
        assert_eq!(left, 0);
        // Whatever the batches were: as if one by one, pruned to 100 at the 151st, 49 more.
        let lines = telemetry::journal::read(&jpath).unwrap();
        assert_eq!(lines.len(), 149);
        assert_eq!(lines.last().unwrap().record_id, "id199");
        assert_eq!(fs::read(dir.path().join("kept/id199")).unwrap(), b"body");
        // Ids left empty are made by the thread.
        let made: Vec<_> = lines
            .iter()
            .filter(|l| !l.record_id.starts_with("id"))
            .collect();
        assert!(!made.is_empty());
        assert!(made.iter().all(|l| l.record_id.len() == 32), "{made:?}");
    }

    #[test]
    fn a_name_stays_pending_until_unlinked_and_is_finished_within_the_linger() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Finisher::start(None, dir.path().join("kept")).unwrap();
        let key = Key::new(&name(1), 0);
        let path = dir.path().join(name(1));
        fs::write(&path, "x").unwrap();
        let t0 = Instant::now();
        f.leave(Leaving {
            key: key.clone(),
            path: path.clone(),
            entry: entry("x"),
            retained: None,
        });
        assert!(
            f.pending().contains(&key),
            "pending from the moment it is left"
        );
        // No hand-over: the linger alone ends the batch. Whenever the key is no longer
        // pending, the unlink has happened, so a scan that skips pending names never sees a
        // delivered file.
        while f.pending().contains(&key) {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::yield_now();
        }
        assert!(!path.exists());
    }

    #[test]
    fn leave_waits_while_the_unfinished_records_reach_the_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        fs::create_dir(&kept).unwrap();
        // The thread blocks writing the first record's retained body into a FIFO: a finishing
        // thread that falls behind.
        let fifo = kept.join("stuck");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let mut f = Finisher::start(None, kept).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let (d, base) = (done.clone(), dir.path().to_path_buf());
        let sender = std::thread::spawn(move || {
            for i in 0..100u64 {
                let path = base.join(name(i));
                fs::write(&path, "x").unwrap();
                f.leave(Leaving {
                    key: Key::new(&name(i), 0),
                    path,
                    entry: entry(if i == 0 { "stuck" } else { "" }),
                    retained: (i == 0).then(|| b"body".to_vec()),
                });
                d.fetch_add(1, Ordering::SeqCst);
            }
            f
        });
        std::thread::sleep(Duration::from_millis(500));
        let handed = done.load(Ordering::SeqCst);
        // Unblock the thread (before asserting, so a failure does not hang): everything is
        // handed over and finished.
        let mut reader = fs::File::open(&fifo).unwrap();
        let mut f = sender.join().unwrap();
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
        f.flush();
        assert!(
            handed <= MAX_UNFINISHED,
            "{handed} handed over while none could be finished"
        );
        assert_eq!(done.load(Ordering::SeqCst), 100);
        assert!(f.pending().is_empty());
    }

    #[test]
    fn a_reload_sends_later_records_to_the_new_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let mut f = Finisher::start(Some(Journal::open(&a).unwrap()), dir.path().into()).unwrap();
        let leave = |f: &mut Finisher, i: u64| {
            let path = dir.path().join(name(i));
            fs::write(&path, "x").unwrap();
            f.leave(Leaving {
                key: Key::new(&name(i), 0),
                path,
                entry: entry(&format!("id{i}")),
                retained: None,
            });
        };
        leave(&mut f, 1);
        f.reconfigure(Some(Journal::open(&b).unwrap()), dir.path().into());
        leave(&mut f, 2);
        f.flush();
        let ids = |p: &std::path::Path| -> Vec<String> {
            telemetry::journal::read(p)
                .unwrap()
                .into_iter()
                .map(|e| e.record_id)
                .collect()
        };
        assert_eq!(ids(&a), ["id1"]);
        assert_eq!(ids(&b), ["id2"]);
    }
}
