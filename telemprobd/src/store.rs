//! The durable spool writer: one dedicated thread that writes records, a few sync workers, and
//! one directory syncer that commits them in groups.
//!
//! Handlers send encoded spool files through a channel and await a status. The writer takes
//! everything that is waiting (up to [`MAX_BATCH`]) and:
//!
//! 1. checks the quota and writes each record to its own temporary dot-file, mode 0600,
//!    relative to the spool directory's fd: one created ahead by [`crate::stock`] when there is
//!    one (the creation is then off the record's path), else created here
//!    (`O_CREAT|O_EXCL|O_NOFOLLOW`);
//! 2. hands each written record to the sync workers ([`crate::workers`], [`SYNC_WORKERS`]
//!    threads), which `fdatasync` it and rename it to its final name (`RENAME_NOREPLACE`), each
//!    record on its own: several records' syncs are in flight at once and none waits for the
//!    slowest of a group (measured with 8 senders, alternating in one daemon with the previous
//!    design, the writer writing out a group's data and syncing its files one after the
//!    other: +31 % records/s, +5 % CPU per record);
//! 3. the workers hand each renamed record to the directory syncer thread, which `fsync`s the
//!    directory ONCE for everything handed to it since its last sync, then answers their
//!    senders: that is the group commit;
//! 4. a lone record, with nothing queued behind it and no worker busy, is synced, renamed, and
//!    its directory synced on the writer thread itself: no hand-off on its path. One served at
//!    accept does not even come to the writer when nothing else is in flight and no other
//!    client waits: the runtime thread commits it ([`StoreHandle::store_for`]);
//! 5. answers each sender by writing the status word straight to its connection: a
//!    connection served at accept ([`crate::fast`]) travels with its record and is finished and
//!    closed here; for one read by a task, a duplicate of its descriptor travels with the
//!    record and the task is told afterwards, answering itself only if that failed. Each
//!    hand-off between threads is a cross-CPU wake-up on a lone record's path; answering from
//!    here saved two of them (measured: one sender 0.67× → 0.73× of the raw baseline).
//!
//! A record received again after it was stored (a sender whose wait for the answer timed out
//! retries the same record) is answered 0 and not stored twice: the store remembers the
//! identities ([`telemetry::record::Record::identity`], taken as the record was received) of the
//! last [`RECENT_IDENTITIES`] records it answered 0. A repeat that arrives while the first copy
//! is still being written is stored again: delivery is at-least-once, and the collector
//! de-duplicates by the same identity.
//!
//! Records renamed while a directory sync runs wait for the next one, so under load the cost of
//! one directory fsync (and mostly one journal commit) is shared by many records, and a lone
//! record pays exactly what a careful sequential writer pays. A record is answered only by a
//! directory sync that started after its rename, and renamed only after its `fdatasync`.
//! Dedicated OS threads (not the async runtime) do the blocking syscalls, so the runtime keeps
//! reading frames while the disk works; the one exception is the lone record above, when there
//! is nothing else for the runtime to do.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags, RenameFlags};
use telemetry::error::libc_errno;
use telemetry::record::Identity;
use telemetry::spool;
use tokio::sync::{mpsc, oneshot};

use crate::fast::{self, Accepted};
use crate::stats::Stats;
use crate::stock::{Stock, Temp};
use crate::workers::Workers;

/// Most records the writer takes from the queue in one pass.
pub const MAX_BATCH: usize = 256;
/// Threads syncing and renaming records. Each holds one record at a time, so this is how many
/// records' syncs can be in flight at once; more than the usual number of concurrent senders
/// buys nothing, and each costs a small stack.
pub const SYNC_WORKERS: usize = 8;
/// Records that may wait for the writer; senders beyond that wait for room (backpressure).
const QUEUE: usize = 1024;
/// How many stored records' identities are remembered to recognise a resend. A sender retries
/// within seconds (its timeout is `send_timeout_ms`), and this covers the last 4096 records: 128
/// KiB at most (16 bytes of each identity, a deque and a set), allocated as records come.
pub const RECENT_IDENTITIES: usize = 4096;
/// When the incremental size says "full", the directory is rescanned (telempostd may have
/// removed files since), but at most this often.
const RESCAN_WHEN_FULL: Duration = Duration::from_secs(1);

/// Where and how much the writer may store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The spool directory.
    pub spool_dir: PathBuf,
    /// Admission limit in bytes, counted by [`spool::quota_cost`] over the final files
    /// ([`spool::Quota::admission_limit`]); `None` = unlimited.
    pub quota: Option<u64>,
}

impl StoreConfig {
    /// From the daemon config (`spool_max_size` is in KiB).
    pub fn from_config(c: &telemetry::Config) -> StoreConfig {
        StoreConfig {
            spool_dir: c.spool_dir.clone(),
            quota: spool::Quota::from_kib(c.spool_max_size).map(spool::Quota::admission_limit),
        }
    }
}

/// A record's spool file, and the identity of the record as it was received (`None` when
/// unknown: such a record is never taken for a resend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolFile {
    /// The complete spool file.
    pub data: Vec<u8>,
    /// [`telemetry::record::Record::identity`] before the daemon changed anything.
    pub identity: Option<Identity>,
}

impl From<Vec<u8>> for SpoolFile {
    fn from(data: Vec<u8>) -> SpoolFile {
        SpoolFile {
            data,
            identity: None,
        }
    }
}

/// The identities of the records most recently answered 0, oldest first out. The first 16
/// bytes of a SHA-256 are plenty to tell 4096 records apart and halve the memory.
#[derive(Default)]
struct Recent {
    order: std::collections::VecDeque<u128>,
    set: std::collections::HashSet<u128>,
}

impl Recent {
    fn key(id: &Identity) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&id.0[..16]);
        u128::from_le_bytes(b)
    }

    fn contains(&self, id: &Identity) -> bool {
        self.set.contains(&Recent::key(id))
    }

    fn insert(&mut self, id: &Identity) {
        let k = Recent::key(id);
        if self.set.insert(k) {
            self.order.push_back(k);
            if self.order.len() > RECENT_IDENTITIES {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The shared [`Recent`] list.
type RecentIds = Arc<Mutex<Recent>>;

fn lock_recent(r: &RecentIds) -> MutexGuard<'_, Recent> {
    // A panic while it was held leaves at worst an identity more or less: a duplicate stored.
    r.lock().unwrap_or_else(|p| p.into_inner())
}

enum Msg {
    Write(Job),
    Reconfigure(StoreConfig, oneshot::Sender<io::Result<()>>),
    /// Nothing happened for a while ([`StoreHandle::park`]): once everything before it is
    /// answered, the writer stops its sync threads and ends, unless more is queued.
    Park,
}

struct Job {
    /// The complete spool file.
    data: Vec<u8>,
    /// The record's identity and where to remember it once the record is stored.
    remember: Option<(Identity, RecentIds)>,
    /// Who is told the outcome.
    to: Requester,
    /// Counts the record in [`Shared::in_flight`] until it is answered (`None` in tests that
    /// make jobs by hand).
    flight: Option<InFlight>,
}

/// A record handed to the store and not answered yet: one count in [`Shared::in_flight`].
/// Holds only the counter, not [`Shared`]: a job waiting on a worker must not keep the spool
/// (and its stock of temporaries) alive.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> InFlight {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the writer thread and the runtime thread share.
struct Shared {
    /// The spool. The writer holds the lock while it works through a batch; the runtime
    /// thread takes it only with `try_lock`, for a lone record ([`StoreHandle::store_for`]).
    spool: Mutex<Spool>,
    /// Records handed to the store and not answered yet, wherever they are: queued, being
    /// written, syncing on a worker, waiting for the directory sync.
    in_flight: Arc<AtomicUsize>,
    stats: Arc<Stats>,
    /// Identities of the records stored last.
    recent: RecentIds,
    /// The writer thread's queue while no writer runs.
    writer: Mutex<WriterSlot>,
    /// Dropped with the last reference, after the spool (fields drop in order): what
    /// [`StoreDone`] waits for.
    _done: oneshot::Sender<()>,
}

/// Whether the writer thread runs; if not, its queue waits here for the next one.
struct WriterSlot {
    running: bool,
    rx: Option<mpsc::Receiver<Msg>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Spool> {
        // A panic while the lock was held left at worst a stale count, which the next full
        // scan corrects; the spool itself is files on disk.
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, WriterSlot> {
        // Two plain fields, each written whole.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the writer thread if none runs, after something was queued for it. Under the
    /// slot's lock, so that a writer deciding to end (it looks at its queue under the same
    /// lock) either sees what was queued or leaves its queue here for this call to hand on.
    fn wake_writer(self: &Arc<Self>) {
        let mut slot = self.writer();
        if slot.running {
            return;
        }
        if slot.rx.is_none() {
            return;
        }
        let writer = self.clone();
        // The thread takes the queue from the slot itself (once this lock is released), so
        // that it stays here if the thread cannot start.
        let spawned = std::thread::Builder::new()
            .name("spool-writer".into())
            // Small stack: the writer's frames are shallow, and this keeps the daemon's RSS low.
            .stack_size(256 * 1024)
            .spawn(move || {
                let rx = writer.writer().rx.take();
                if let Some(rx) = rx {
                    writer_loop(&writer, rx);
                }
            });
        match spawned {
            Ok(_) => slot.running = true,
            Err(e) => {
                // No thread: commit what is queued on this thread, so that nobody waits for an
                // answer that would never come.
                tracing::warn!(error = %e, "spool writer thread not started; writing here");
                let rx = slot.rx.take();
                drop(slot);
                if let Some(mut rx) = rx {
                    self.drain_here(&mut rx);
                    self.writer().rx = Some(rx);
                }
            }
        }
    }

    /// Commits everything queued, one record at a time, on the calling thread.
    fn drain_here(&self, rx: &mut mpsc::Receiver<Msg>) {
        while let Ok(msg) = rx.try_recv() {
            let mut spool = self.lock();
            match msg {
                Msg::Write(job) => spool.commit_here(&mut vec![job]),
                Msg::Reconfigure(cfg, reply) => {
                    let _ = reply.send(spool.reconfigure(cfg));
                }
                Msg::Park => {}
            }
            self.stats.set_quota_used_bytes(spool.used());
        }
    }
}

/// Who hears what became of a record.
enum Requester {
    /// A connection task ([`crate::handler`]), which awaits `reply`. When `peer` (a duplicate
    /// of its descriptor) is given, the status word is written to it from here first.
    Task {
        peer: Option<OwnedFd>,
        reply: oneshot::Sender<(i32, bool)>,
    },
    /// A connection served at accept ([`crate::fast`]): answered, finished and closed here.
    Connection(Accepted),
}

impl Job {
    /// Answers: the status word straight to the sender's socket when we have it (the sender
    /// wakes without a detour through the runtime thread: one cross-CPU wake-up less per
    /// record), then the handler, which answers itself if that did not work.
    fn answer(mut self, status: i32) {
        // Remembered before the sender hears, so its resend is recognised.
        if let (0, Some((id, recent))) = (status, &self.remember) {
            lock_recent(recent).insert(id);
        }
        // No longer in flight before the sender hears: its next record may arrive at once,
        // and must find the store idle if it is.
        drop(self.flight.take());
        match self.to {
            Requester::Task { peer, reply } => {
                let answered = peer.is_some_and(|fd| fast::send_status(&fd, status));
                let _ = reply.send((status, answered));
            }
            Requester::Connection(c) => c.finish(status),
        }
    }
}

/// What became of a record: its status, and whether the sender already has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// 0 or a negative errno.
    pub status: i32,
    /// The status word was written to the sender's connection.
    pub answered: bool,
}

/// Sends records to the writer. Clone one per connection; the writer stops once every handle
/// is dropped and the queue is drained.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl StoreHandle {
    /// Stores one spool file durably; returns 0 once it is on disk, else a negative errno.
    pub async fn store(&self, data: impl Into<SpoolFile>) -> i32 {
        self.store_answering(data, None).await.status
    }

    /// [`StoreHandle::store`], answering the sender on `peer` (a duplicate of its connection)
    /// as soon as the status is known.
    pub async fn store_answering(
        &self,
        file: impl Into<SpoolFile>,
        peer: Option<OwnedFd>,
    ) -> Stored {
        let failed = Stored {
            status: -libc_errno::EIO,
            answered: false,
        };
        let (reply, rx) = oneshot::channel();
        let job = self.job(file.into(), Requester::Task { peer, reply });
        if self.tx.send(Msg::Write(job)).await.is_err() {
            return failed;
        }
        self.shared.wake_writer();
        rx.await
            .map(|(status, answered)| Stored { status, answered })
            .unwrap_or(failed)
    }

    /// Stores one spool file for a connection served at accept, answers it, finishes and
    /// closes it.
    ///
    /// A lone record, with no other record in flight, no other client waiting to be accepted
    /// (`others_waiting`, asked only then) and the writer idle, is committed right here, on
    /// the calling (runtime) thread: write, sync, rename, directory sync, answer. Handing it
    /// to the writer thread would add a cross-CPU wake-up to its path and another one to the
    /// answer's (measured with one sender, alternating in one daemon: +7.4 % records/s). The
    /// runtime is blocked for that one commit; nobody else is waiting on it by then, and
    /// whoever connects meanwhile waits in the backlog, then goes to the writer as before.
    /// Anything else goes to the writer, without waiting; when its queue is full, a task
    /// waits for room.
    pub fn store_for(
        &self,
        file: impl Into<SpoolFile>,
        conn: Accepted,
        others_waiting: impl FnOnce() -> bool,
    ) {
        let job = self.job(file.into(), Requester::Connection(conn));
        let Err(job) = self.commit_if_alone(job, others_waiting) else {
            return;
        };
        match self.tx.try_send(Msg::Write(job)) {
            Ok(()) => self.shared.wake_writer(),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                // Full: the writer runs (it ends only with an empty queue).
                let (tx, shared) = (self.tx.clone(), self.shared.clone());
                tokio::spawn(async move {
                    match tx.send(msg).await {
                        Ok(()) => shared.wake_writer(),
                        Err(mpsc::error::SendError(Msg::Write(job))) => {
                            job.answer(-libc_errno::EIO)
                        }
                        Err(_) => {}
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(Msg::Write(job))) => job.answer(-libc_errno::EIO),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// A job for `file`, counted in flight.
    fn job(&self, file: SpoolFile, to: Requester) -> Job {
        Job {
            data: file.data,
            remember: file.identity.map(|id| (id, self.shared.recent.clone())),
            to,
            flight: Some(InFlight::new(&self.shared.in_flight)),
        }
    }

    /// No record in flight.
    pub fn idle(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) == 0
    }

    /// Commits `job` on this thread if it is alone (see [`StoreHandle::store_for`]); gives it
    /// back otherwise.
    fn commit_if_alone(&self, job: Job, others_waiting: impl FnOnce() -> bool) -> Result<(), Job> {
        // 1: this record is counted already, and no other is.
        if self.shared.in_flight.load(Ordering::Acquire) != 1 || others_waiting() {
            return Err(job);
        }
        // The writer holds the lock while it works on a batch: then it is not idle.
        let Ok(mut spool) = self.shared.spool.try_lock() else {
            return Err(job);
        };
        spool.commit_here(&mut vec![job]);
        self.shared.stats.set_quota_used_bytes(spool.used());
        Ok(())
    }

    /// The writer thread runs (with its sync threads, while it has any).
    pub fn writer_running(&self) -> bool {
        self.shared.writer().running
    }

    /// Asks the writer to end once it has answered everything queued so far, taking its sync
    /// threads with it, unless more arrives meanwhile; the next record starts it again. For a
    /// daemon with nothing to do, so that it waits as one thread.
    pub fn park(&self) {
        if self.writer_running() {
            // A full queue means work: then there is nothing to park.
            let _ = self.tx.try_send(Msg::Park);
        }
    }

    /// Switches directory or quota (config reload). Records already queued use the old values.
    ///
    /// # Errors
    /// The new directory cannot be created or opened; the old one stays in use.
    pub async fn reconfigure(&self, config: StoreConfig) -> io::Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Reconfigure(config, reply))
            .await
            .map_err(|_| io::Error::other("spool writer has stopped"))?;
        self.shared.wake_writer();
        rx.await
            .map_err(|_| io::Error::other("spool writer has stopped"))?
    }
}

/// Resolves once every record handed to the store is answered, the writer has ended and the
/// spool is closed (its stock of temporaries removed).
pub struct StoreDone(oneshot::Receiver<()>);

impl StoreDone {
    /// Waits for the writer to finish.
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

/// Opens the spool (creating the directory if needed, removing temporary files a crash left,
/// measuring its size). The writer thread starts with the first record that needs it.
///
/// # Errors
/// The spool directory cannot be created or opened.
pub fn start(config: StoreConfig, stats: Arc<Stats>) -> io::Result<(StoreHandle, StoreDone)> {
    let spool = Spool::open(config)?;
    stats.set_quota_used_bytes(spool.used);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        in_flight: Arc::new(AtomicUsize::new(0)),
        stats,
        recent: RecentIds::default(),
        writer: Mutex::new(WriterSlot {
            running: false,
            rx: Some(rx),
        }),
        _done: done_tx,
    });
    Ok((StoreHandle { tx, shared }, StoreDone(done_rx)))
}

/// The sync workers and the directory syncer, started with the writer's first group.
fn sync_threads() -> (Workers<Handed>, DirSyncer) {
    let syncer = DirSyncer::start();
    let handoff = syncer.handoff.clone();
    let workers = Workers::start(SYNC_WORKERS, "spool-sync", move |h: Handed| {
        if let Some((dir, job)) = h.settle() {
            handoff.send(Renamed::one(dir, job));
        }
    });
    (workers, syncer)
}

/// The writer thread: takes what is queued, in batches, until every handle is gone (then it
/// answers everything and ends) or it is asked to park with nothing queued.
fn writer_loop(shared: &Arc<Shared>, mut rx: mpsc::Receiver<Msg>) {
    let mut threads: Option<(Workers<Handed>, DirSyncer)> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut park = false;
        let mut spool = shared.lock();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(job) => batch.push(job),
                Msg::Reconfigure(cfg, reply) => {
                    // Records queued before the reload are committed under the old settings.
                    let (workers, syncer) = threads.get_or_insert_with(sync_threads);
                    spool.dispatch(&mut batch, workers, syncer);
                    let _ = reply.send(spool.reconfigure(cfg));
                }
                Msg::Park => park = true,
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // A lone record with nothing else queued and no worker busy is committed here: the
        // hand-offs to a worker and to the syncer would be two cross-CPU wake-ups on its path
        // (always handing it over cost one sender 9 %). Otherwise the workers take it, even
        // when the queue is empty at this moment: records tend to arrive while others sync,
        // and the writer must be free to write them.
        let workers_idle = threads.as_ref().is_none_or(|(w, _)| w.idle());
        if batch.len() == 1 && rx.is_empty() && workers_idle {
            spool.commit_here(&mut batch);
        } else if !batch.is_empty() {
            let (workers, syncer) = threads.get_or_insert_with(sync_threads);
            spool.dispatch(&mut batch, workers, syncer);
        }
        shared.stats.set_quota_used_bytes(spool.used());
        drop(spool);
        if park {
            // Everything handed over is answered before the threads end.
            if let Some((workers, syncer)) = threads.take() {
                workers.finish();
                syncer.finish();
            }
            let mut slot = shared.writer();
            if rx.is_empty() {
                slot.rx = Some(rx);
                slot.running = false;
                tracing::debug!("spool writer parked");
                return;
            }
        }
    }
    // Every record handed over is synced, renamed, its directory synced and answered before
    // the writer reports done (the workers hand over to the syncer, so they finish first).
    if let Some((workers, syncer)) = threads.take() {
        workers.finish();
        syncer.finish();
    }
}

/// Records whose files are in place under their final names, waiting for the directory sync.
struct Renamed {
    dir: Arc<OwnedFd>,
    jobs: Vec<Job>,
}

impl Renamed {
    fn one(dir: Arc<OwnedFd>, job: Job) -> Renamed {
        Renamed {
            dir,
            jobs: vec![job],
        }
    }
}

/// The way to the directory syncer; whoever holds one can hand renamed records over.
#[derive(Clone)]
struct Handoff(
    /// `None` when the thread could not start: records are synced where they are handed over.
    Option<std::sync::mpsc::Sender<Renamed>>,
);

impl Handoff {
    fn send(&self, group: Renamed) {
        let group = match &self.0 {
            Some(tx) => match tx.send(group) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(g)) => g,
            },
            None => group,
        };
        sync_and_answer(vec![group]);
    }
}

/// The thread that syncs the spool directory and answers the senders (see the module docs).
struct DirSyncer {
    handoff: Handoff,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirSyncer {
    fn start() -> DirSyncer {
        let (tx, rx) = std::sync::mpsc::channel::<Renamed>();
        let spawned = std::thread::Builder::new()
            .name("spool-dirsync".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Everything handed over meanwhile shares this sync.
                    let mut groups = vec![first];
                    groups.extend(rx.try_iter());
                    sync_and_answer(groups);
                }
            });
        match spawned {
            Ok(t) => DirSyncer {
                handoff: Handoff(Some(tx)),
                thread: Some(t),
            },
            Err(e) => {
                tracing::warn!(error = %e, "directory sync thread not started; syncing inline");
                DirSyncer {
                    handoff: Handoff(None),
                    thread: None,
                }
            }
        }
    }

    /// Waits until everything handed over is synced and answered, and stops the thread. Every
    /// other [`Handoff`] must be gone by then (the workers finished).
    fn finish(mut self) {
        drop(self.handoff.0.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `fsync` per directory (a reload may have changed it between groups), then the answers.
fn sync_and_answer(groups: Vec<Renamed>) {
    let mut synced: Vec<(Arc<OwnedFd>, i32)> = Vec::new();
    for g in groups {
        let status = match synced.iter().find(|(d, _)| Arc::ptr_eq(d, &g.dir)) {
            Some((_, s)) => *s,
            None => {
                let s = match rustix::fs::fsync(&*g.dir) {
                    Ok(()) => 0,
                    Err(e) => {
                        // The files are in place but their names may not survive a crash: tell
                        // the senders, who may retry (a duplicate is better than a silent loss).
                        tracing::error!(error = %e, "cannot sync the spool directory");
                        -e.raw_os_error()
                    }
                };
                synced.push((g.dir.clone(), s));
                s
            }
        };
        tracing::debug!(records = g.jobs.len(), "group committed");
        for job in g.jobs {
            job.answer(status);
        }
    }
}

/// The open spool directory and what the writer knows about it.
struct Spool {
    config: StoreConfig,
    /// The directory, opened once: every file is created and renamed relative to it, so a
    /// directory swapped for a symlink later cannot redirect writes. Shared with the syncer.
    dir: Arc<OwnedFd>,
    /// The final (non-dot) regular files' total by [`spool::quota_cost`], kept up to date
    /// incrementally (less [`Spool::released`]).
    used: u64,
    /// Bytes reserved for records that then failed on a sync worker, not yet taken off `used`.
    /// Each spool directory has its own: a worker finishing a record of the previous directory
    /// after a reload cannot change the new one's count.
    released: Arc<AtomicU64>,
    /// Last full scan of the directory.
    scanned: Instant,
    /// Sequence number for file names created within the same nanosecond.
    seq: u64,
    /// Empty temporary files created ahead (see [`crate::stock`]).
    stock: Stock,
}

impl Spool {
    fn open(config: StoreConfig) -> io::Result<Spool> {
        let dir = Arc::new(open_dir(&config.spool_dir)?);
        remove_stale_temporaries(&config.spool_dir);
        let used = scan_size(&config.spool_dir)?;
        tracing::info!(
            spool = %config.spool_dir.display(),
            bytes = used,
            quota = ?config.quota,
            "spool opened"
        );
        let stock = Stock::start(dir.clone());
        Ok(Spool {
            stock,
            config,
            dir,
            used,
            released: Arc::new(AtomicU64::new(0)),
            scanned: Instant::now(),
            seq: 0,
        })
    }

    fn reconfigure(&mut self, config: StoreConfig) -> io::Result<()> {
        if config.spool_dir != self.config.spool_dir {
            *self = Spool::open(config)?;
        } else {
            self.config = config;
        }
        Ok(())
    }

    /// Bytes in the spool by the incremental count.
    fn used(&mut self) -> u64 {
        let released = self.released.swap(0, Ordering::AcqRel);
        self.used = self.used.saturating_sub(released);
        self.used
    }

    /// Reserves room for `len` bytes under the quota, rescanning when the count says full.
    fn reserve(&mut self, len: u64) -> bool {
        self.used();
        let Some(quota) = self.config.quota else {
            self.used = self.used.saturating_add(len);
            return true;
        };
        if self.used.saturating_add(len) > quota && self.scanned.elapsed() >= RESCAN_WHEN_FULL {
            match scan_size(&self.config.spool_dir) {
                Ok(n) => self.used = n,
                Err(e) => tracing::warn!(error = %e, "cannot rescan the spool"),
            }
            self.scanned = Instant::now();
        }
        if self.used.saturating_add(len) > quota {
            return false;
        }
        self.used += len;
        true
    }

    fn release(&mut self, len: u64) {
        self.used = self.used.saturating_sub(len);
    }

    /// Checks the quota for the record and writes it to its temporary file; answers it if
    /// either fails.
    fn prepare(&mut self, job: Job) -> Option<Handed> {
        if let Some((id, recent)) = &job.remember {
            if lock_recent(recent).contains(id) {
                tracing::debug!(identity = %id, "record received again; stored already");
                job.answer(0);
                return None;
            }
        }
        let len = spool::quota_cost(job.data.len() as u64);
        if !self.reserve(len) {
            tracing::debug!(len, "spool full");
            job.answer(-libc_errno::ENOSPC);
            return None;
        }
        match self.write_temp(job) {
            Ok(h) => Some(h),
            Err((job, e)) => {
                self.release(len);
                tracing::error!(error = %e, "cannot write a spool file");
                job.answer(-errno(&e));
                None
            }
        }
    }

    /// Commits the batch on this thread: write, sync, rename, directory sync, answers.
    fn commit_here(&mut self, batch: &mut Vec<Job>) {
        let settled: Vec<Job> = batch
            .drain(..)
            .filter_map(|job| Some(self.prepare(job)?.settle()?.1))
            .collect();
        if !settled.is_empty() {
            sync_and_answer(vec![Renamed {
                dir: self.dir.clone(),
                jobs: settled,
            }]);
        }
    }

    /// Writes each record of the batch and hands it to the sync workers at once (they start
    /// on it while the next one is written), which pass it on to the directory syncer. Without
    /// workers, commits here and hands the group to the syncer.
    fn dispatch(&mut self, batch: &mut Vec<Job>, workers: &Workers<Handed>, syncer: &DirSyncer) {
        let mut unsent = Vec::new();
        for job in batch.drain(..) {
            if let Some(h) = self.prepare(job) {
                if let Err(h) = workers.submit(h) {
                    unsent.push(h);
                }
            }
        }
        let settled: Vec<Job> = unsent
            .into_iter()
            .filter_map(|h| Some(h.settle()?.1))
            .collect();
        if !settled.is_empty() {
            syncer.handoff.send(Renamed {
                dir: self.dir.clone(),
                jobs: settled,
            });
        }
    }

    /// A temporary file from the stock that is still in the directory and still as the stock
    /// left it (empty). Stock files can wait for hours; one removed meanwhile (a purge, an
    /// administrator) would fail its rename, and one written to by someone else is not ours to
    /// reuse, so such a file is skipped (closing it frees a removed one).
    fn take_stock(&self) -> Option<Temp> {
        while let Some(t) = self.stock.take() {
            match rustix::fs::fstat(&t.file) {
                Ok(st) if st.st_nlink > 0 && st.st_size == 0 => return Some(t),
                _ => tracing::debug!(file = %t.name, "temporary from stock was changed; skipped"),
            }
        }
        None
    }

    fn write_temp(&mut self, job: Job) -> Result<Handed, (Job, io::Error)> {
        self.seq = self.seq.wrapping_add(1);
        let name = spool::file_name(self.seq);
        // A file from the stock when there is one: its creation is then off this record's path.
        let (tmp, file, written) = match self.take_stock() {
            Some(t) => {
                let written = t.fill(&job.data);
                (t.name, t.file, written)
            }
            None => {
                let tmp = spool::temp_name(&name);
                let opened = rustix::fs::openat(
                    &*self.dir,
                    tmp.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                );
                let mut file = match opened {
                    Ok(fd) => File::from(fd),
                    Err(e) => return Err((job, e.into())),
                };
                let written = file.write_all(&job.data);
                (tmp, file, written)
            }
        };
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&*self.dir, tmp.as_str(), rustix::fs::AtFlags::empty());
            return Err((job, e));
        }
        Ok(Handed {
            job,
            tmp,
            name,
            file,
            dir: self.dir.clone(),
            released: self.released.clone(),
        })
    }
}

/// A record written to its temporary file, on its way to its final name.
struct Handed {
    job: Job,
    /// Its temporary dot-file's name, relative to `dir`.
    tmp: String,
    /// Its final name, taken when it was written.
    name: String,
    file: File,
    /// The spool directory it was written in (a reload may switch directories meanwhile).
    dir: Arc<OwnedFd>,
    /// Where to give its bytes back to the quota if it fails ([`Spool::released`]).
    released: Arc<AtomicU64>,
}

impl Handed {
    /// Makes the file durable (data and inode) and only then renames it to its final name
    /// (`RENAME_NOREPLACE`). Returns the job, for the directory sync and the answer; on failure
    /// removes the temporary, gives its bytes back to the quota, answers the error and returns
    /// `None`. The directory is not synced here.
    fn settle(self) -> Option<(Arc<OwnedFd>, Job)> {
        let Handed {
            job,
            tmp,
            name,
            file,
            dir,
            released,
        } = self;
        let done = rustix::fs::fdatasync(&file).and_then(|()| {
            rustix::fs::renameat_with(
                &*dir,
                tmp.as_str(),
                &*dir,
                name.as_str(),
                RenameFlags::NOREPLACE,
            )
        });
        drop(file);
        match done {
            Ok(()) => Some((dir, job)),
            Err(e) => {
                tracing::error!(error = %e, file = %tmp, "cannot commit a spool file");
                let _ = rustix::fs::unlinkat(&*dir, tmp.as_str(), rustix::fs::AtFlags::empty());
                released.fetch_add(spool::quota_cost(job.data.len() as u64), Ordering::AcqRel);
                job.answer(-e.raw_os_error());
                None
            }
        }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc_errno::EIO)
}

/// Opens (creating if missing, mode 0750 as tmpfiles would) the spool directory, refusing a
/// symlink.
fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(path)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("creating spool directory {}: {e}", path.display()),
            ))
        }
    }
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("opening spool directory {}: {e}", path.display()),
        )
    })
}

/// The quota total of the final regular files (dot-files are being written, or were left by a
/// crash, and are not records), as the shared spool scanner lists and measures them.
pub fn scan_size(dir: &Path) -> io::Result<u64> {
    Ok(spool::quota_used(&spool::scan(dir)?))
}

/// Removes `.<name>.tmp` files a crash left behind: no sender was ever told they were stored.
/// Only our own pattern is touched, and only at start, when no writer of ours is running.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let bytes = OsStr::as_bytes(&name);
        if bytes.starts_with(b".") && bytes.ends_with(b".tmp") && bytes.len() > 5 {
            if let Ok(m) = entry.metadata() {
                if m.file_type().is_file() && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed unfinished temporary spool files");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn handle(dir: &Path, quota: Option<u64>) -> (StoreHandle, StoreDone, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let (h, d) = start(
            StoreConfig {
                spool_dir: dir.to_path_buf(),
                quota,
            },
            stats.clone(),
        )
        .unwrap();
        (h, d, stats)
    }

    fn names(dir: &Path, temporary: bool) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| spool::is_temporary(n) == temporary)
            .collect();
        v.sort();
        v
    }

    /// The final (non-dot) files. While the writer runs, the directory also holds the
    /// temporaries of its stock.
    fn files(dir: &Path) -> Vec<String> {
        names(dir, false)
    }

    /// After a clean stop nothing temporary is left: no unfinished record, no stock.
    fn no_temporaries_left(dir: &Path) {
        assert_eq!(names(dir, true), Vec::<String>::new());
    }

    fn wait_until(what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_writer_starts_with_work_parks_when_asked_and_starts_again() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        let (h, done, _) = handle(&spool, None);
        assert!(!h.writer_running(), "no writer before the first record");
        // Several at once, so that the sync threads have work too.
        let many: Vec<_> = (0..20)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.store(format!("first {i}\n").into_bytes()).await })
            })
            .collect();
        for t in many {
            assert_eq!(t.await.unwrap(), 0);
        }
        assert!(h.writer_running());
        h.park();
        wait_until("writer not parked", || !h.writer_running());
        // The next record starts it again and is stored.
        assert_eq!(h.store(b"after parking\n".to_vec()).await, 0);
        assert_eq!(files(&spool).len(), 21);
        // A park request with records queued behind it leaves the writer running for them.
        let again: Vec<_> = (0..20)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.store(format!("second {i}\n").into_bytes()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        h.park();
        for t in again {
            assert_eq!(t.await.unwrap(), 0);
        }
        assert_eq!(files(&spool).len(), 41);
        drop(h);
        done.wait().await;
        no_temporaries_left(&spool);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stores_in_order_with_mode_0600_and_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        let (h, done, _) = handle(&spool, None);
        for i in 0..5 {
            assert_eq!(h.store(format!("record {i}\n").into_bytes()).await, 0);
        }
        let names = files(&spool);
        assert_eq!(names.len(), 5);
        for (i, n) in names.iter().enumerate() {
            assert!(!spool::is_temporary(n));
            let p = spool.join(n);
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                format!("record {i}\n")
            );
            let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        drop(h);
        done.wait().await;
        no_temporaries_left(&spool);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_sender_is_answered_on_its_connection_once_the_record_is_stored() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        let (h, done, _) = handle(&spool, Some(spool::QUOTA_BLOCK));
        let pair = || {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            (OwnedFd::from(ours), theirs)
        };
        // Stored: the word 0 is already on the sender's side when the handler hears of it.
        let (fd, mut sender) = pair();
        let s = h.store_answering(b"stored\n".to_vec(), Some(fd)).await;
        assert_eq!((s.status, s.answered), (0, true));
        let mut word = [0u8; 4];
        sender.read_exact(&mut word).unwrap();
        assert_eq!(i32::from_le_bytes(word), 0);
        assert_eq!(files(&spool).len(), 1);
        // Refused (quota): the sender gets the negative errno the same way.
        let (fd, mut sender) = pair();
        let s = h.store_answering(vec![b'x'; 10], Some(fd)).await;
        assert_eq!((s.status, s.answered), (-libc_errno::ENOSPC, true));
        sender.read_exact(&mut word).unwrap();
        assert_eq!(i32::from_le_bytes(word), -libc_errno::ENOSPC);
        // A sender that is gone: not answered, the handler is told so (and the record is kept).
        h.reconfigure(StoreConfig {
            spool_dir: spool.clone(),
            quota: None,
        })
        .await
        .unwrap();
        let (fd, sender) = pair();
        drop(sender);
        let s = h.store_answering(b"kept\n".to_vec(), Some(fd)).await;
        assert_eq!((s.status, s.answered), (0, false));
        assert_eq!(files(&spool).len(), 2);
        drop(h);
        done.wait().await;
        no_temporaries_left(&spool);
    }

    /// A job for a connection served at accept, counted in flight as `store_for` does, and the
    /// sender's end of that connection (non-blocking).
    fn connection_job(h: &StoreHandle, data: &[u8]) -> (Job, std::os::unix::net::UnixStream) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let conn = Accepted::peeked(ours.into(), 0, Arc::new(Stats::default()));
        let job = Job {
            data: data.to_vec(),
            remember: None,
            to: Requester::Connection(conn),
            flight: Some(InFlight::new(&h.shared.in_flight)),
        };
        (job, theirs)
    }

    fn answer_of(sender: &mut std::os::unix::net::UnixStream) -> Option<i32> {
        use std::io::Read;
        let mut word = [0u8; 4];
        sender.read_exact(&mut word).ok()?;
        Some(i32::from_le_bytes(word))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_lone_record_is_committed_by_the_caller_and_any_other_goes_to_the_writer() {
        let d = tempfile::tempdir().unwrap();
        let spool = d.path().join("spool");
        let (h, done, _) = handle(&spool, None);

        // Alone: stored, answered and counted before the call returns.
        let (job, mut sender) = connection_job(&h, b"lone\n");
        assert!(h.commit_if_alone(job, || false).is_ok());
        assert_eq!(answer_of(&mut sender), Some(0));
        assert_eq!(files(&spool).len(), 1);
        assert_eq!(h.shared.lock().used(), spool::QUOTA_BLOCK);
        assert_eq!(h.shared.in_flight.load(Ordering::Acquire), 0);

        // Another client waiting to be accepted: given back, untouched.
        let (job, mut sender) = connection_job(&h, b"second\n");
        let job = h.commit_if_alone(job, || true).unwrap_err();
        assert_eq!(answer_of(&mut sender), None);
        // Another record in flight: given back without even asking about waiting clients.
        let (other, _other_sender) = connection_job(&h, b"third\n");
        let other = h
            .commit_if_alone(other, || panic!("asked although a record is in flight"))
            .unwrap_err();
        assert_eq!(files(&spool).len(), 1);

        // The writer at work (it holds the spool): given back at once, never waited for.
        drop(other);
        let busy = h.shared.lock();
        let job = h.commit_if_alone(job, || false).unwrap_err();
        drop(busy);
        assert_eq!(files(&spool).len(), 1, "nothing committed on the way");
        // Queued instead, it is stored by the writer.
        h.tx.send(Msg::Write(job)).await.unwrap();
        h.shared.wake_writer();
        drop(h);
        done.wait().await;
        assert_eq!(answer_of(&mut sender), Some(0));
        assert_eq!(files(&spool).len(), 2);
        no_temporaries_left(&spool);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn records_written_into_stock_files_are_exact_whatever_their_size() {
        let d = tempfile::tempdir().unwrap();
        let (h, done, _) = handle(d.path(), None);
        let sizes = [1, 100, 4095, 4096, 4097, 3 * 4096 + 7];
        // Wait until the stock is full (six records will not make it refill).
        let deadline = Instant::now() + Duration::from_secs(10);
        while names(d.path(), true).len() < crate::stock::CAPACITY {
            assert!(Instant::now() < deadline, "stock not filled");
            std::thread::sleep(Duration::from_millis(2));
        }
        // It is handed to the writer right after its directory sync.
        std::thread::sleep(Duration::from_millis(100));
        for (i, size) in sizes.into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            assert_eq!(h.store(data.clone()).await, 0);
            let last = files(d.path()).pop().unwrap();
            assert_eq!(
                std::fs::read(d.path().join(last)).unwrap(),
                data,
                "size {size}"
            );
            // The record went into a stock file (one temporary fewer), not a new one.
            assert_eq!(names(d.path(), true).len(), crate::stock::CAPACITY - i - 1);
        }
        drop(h);
        done.wait().await;
        no_temporaries_left(d.path());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_records_are_grouped_and_all_stored() {
        let d = tempfile::tempdir().unwrap();
        let (h, done, _) = handle(d.path(), None);
        let mut tasks = Vec::new();
        for i in 0..100 {
            let h = h.clone();
            tasks.push(tokio::spawn(
                async move { h.store(vec![b'x'; i + 1]).await },
            ));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 0);
        }
        assert_eq!(files(d.path()).len(), 100);
        assert_eq!(scan_size(d.path()).unwrap(), 100 * spool::QUOTA_BLOCK);
        drop(h);
        done.wait().await;
        no_temporaries_left(d.path());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reload_to_another_directory_while_records_sync_loses_none() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let (h, done, _) = handle(&a, Some(1_000_000));
        let send = |range: std::ops::Range<usize>| {
            range
                .map(|i| {
                    let h = h.clone();
                    tokio::spawn(async move { h.store(vec![b'r'; 100 + i]).await })
                })
                .collect::<Vec<_>>()
        };
        let first = send(0..32);
        // Let them queue their records (single-threaded runtime): the reload comes after them,
        // so the writer hands them to the workers and switches directories while they sync.
        tokio::task::yield_now().await;
        h.reconfigure(StoreConfig {
            spool_dir: b.clone(),
            quota: Some(1_000_000),
        })
        .await
        .unwrap();
        let second = send(32..64);
        for t in first.into_iter().chain(second) {
            assert_eq!(t.await.unwrap(), 0);
        }
        assert_eq!(files(&a).len(), 32);
        assert_eq!(files(&b).len(), 32);
        assert_eq!(scan_size(&a).unwrap(), 32 * spool::QUOTA_BLOCK);
        assert_eq!(scan_size(&b).unwrap(), 32 * spool::QUOTA_BLOCK);
        drop(h);
        done.wait().await;
        no_temporaries_left(&a);
        no_temporaries_left(&b);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn quota_is_enforced_and_counts_existing_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("old"), vec![b'o'; 600]).unwrap();
        std::fs::write(d.path().join(".old.tmp"), vec![b'o'; 5000]).unwrap();
        // Each file counts as whole 4 KiB blocks: the 600-byte one takes one of the three.
        let (h, done, _) = handle(d.path(), Some(3 * 4096));
        assert_eq!(h.store(vec![b'a'; 4000]).await, 0);
        assert_eq!(h.store(vec![b'b'; 4097]).await, -libc_errno::ENOSPC);
        assert_eq!(h.store(vec![b'c'; 10]).await, 0, "exactly full is allowed");
        assert_eq!(h.store(vec![b'x'; 1]).await, -libc_errno::ENOSPC);
        // Stale temporary removed at start, refused records left nothing.
        assert!(!d.path().join(".old.tmp").exists());
        assert_eq!(files(d.path()).len(), 3);
        // telempostd deletes a file: after the rescan interval the room is seen again.
        std::fs::remove_file(d.path().join("old")).unwrap();
        std::thread::sleep(RESCAN_WHEN_FULL);
        assert_eq!(h.store(vec![b'd'; 500]).await, 0);
        h.reconfigure(StoreConfig {
            spool_dir: d.path().to_path_buf(),
            quota: None,
        })
        .await
        .unwrap();
        assert_eq!(h.store(vec![b'e'; 5000]).await, 0);
        drop(h);
        done.wait().await;
        no_temporaries_left(d.path());
    }

    #[test]
    fn stock_files_removed_or_written_behind_its_back_are_skipped() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::open(StoreConfig {
            spool_dir: d.path().to_path_buf(),
            quota: None,
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while spool.stock.ready() < crate::stock::CAPACITY {
            assert!(Instant::now() < deadline, "stock not filled");
            std::thread::sleep(Duration::from_millis(2));
        }
        // In creation order, which is the order they are handed out.
        let stock = names(d.path(), true);
        assert_eq!(stock.len(), crate::stock::CAPACITY);
        let (last, gone) = stock.split_last().unwrap();
        // One written to by someone else, the others but the last removed (as a purge would).
        std::fs::write(d.path().join(&gone[0]), b"not ours").unwrap();
        for n in &gone[1..] {
            std::fs::remove_file(d.path().join(n)).unwrap();
        }
        let t = spool.take_stock().unwrap();
        assert_eq!(&t.name, last, "the first untouched file is handed out");
        drop(t);
        drop(spool);
        // The written file is not ours to remove; the handed-out one is the taker's (unused
        // here); the rest of the stock went with it.
        assert_eq!(names(d.path(), true), vec![gone[0].clone(), last.clone()]);
    }

    #[test]
    fn a_record_that_cannot_be_renamed_is_answered_removed_and_given_back_to_the_quota() {
        let d = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(StoreConfig {
            spool_dir: d.path().to_path_buf(),
            quota: Some(10_000),
        })
        .unwrap();
        let (reply, mut answer) = oneshot::channel();
        let mut batch = vec![Job {
            data: b"a record".to_vec(),
            remember: None,
            to: Requester::Task { peer: None, reply },
            flight: None,
        }];
        let h = spool.prepare(batch.pop().unwrap()).unwrap();
        assert_eq!(spool.used(), spool::QUOTA_BLOCK);
        // Someone took the final name meanwhile: the rename must not replace their file.
        let (tmp, name) = (h.tmp.clone(), h.name.clone());
        std::fs::write(d.path().join(&name), b"theirs").unwrap();
        assert!(h.settle().is_none());
        assert_eq!(answer.try_recv().unwrap().0, -libc::EEXIST);
        assert!(!d.path().join(&tmp).exists(), "temporary removed");
        assert_eq!(std::fs::read(d.path().join(&name)).unwrap(), b"theirs");
        assert_eq!(spool.used(), 0, "its bytes are given back");
    }

    fn with_identity(data: &[u8], id: u8) -> SpoolFile {
        SpoolFile {
            data: data.to_vec(),
            identity: Some(Identity([id; 32])),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_record_stored_already_is_answered_0_and_not_stored_again() {
        let d = tempfile::tempdir().unwrap();
        let (h, done, _) = handle(d.path(), Some(2 * spool::QUOTA_BLOCK));
        assert_eq!(h.store(with_identity(b"first\n", 1)).await, 0);
        assert_eq!(h.store(with_identity(b"first\n", 1)).await, 0);
        assert_eq!(files(d.path()).len(), 1);
        // Without an identity, or with another one, it is a record of its own.
        assert_eq!(h.store(b"first\n".to_vec()).await, 0);
        assert_eq!(files(d.path()).len(), 2);
        // Refused (full): not remembered, so its resend is refused too, not answered 0.
        assert_eq!(
            h.store(with_identity(b"third\n", 3)).await,
            -libc_errno::ENOSPC
        );
        assert_eq!(
            h.store(with_identity(b"third\n", 3)).await,
            -libc_errno::ENOSPC
        );
        assert_eq!(files(d.path()).len(), 2);
        drop(h);
        done.wait().await;
    }

    #[test]
    fn recent_identities_are_bounded_oldest_first_out() {
        let mut r = Recent::default();
        let id = |n: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&n.to_le_bytes());
            Identity(b)
        };
        for n in 0..=RECENT_IDENTITIES as u32 {
            r.insert(&id(n));
            r.insert(&id(n));
        }
        assert_eq!(r.order.len(), RECENT_IDENTITIES);
        assert_eq!(r.set.len(), RECENT_IDENTITIES);
        assert!(!r.contains(&id(0)));
        assert!(r.contains(&id(1)));
        assert!(r.contains(&id(RECENT_IDENTITIES as u32)));
    }

    #[test]
    fn symlinked_spool_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(open_dir(&link).is_err());
    }
}
