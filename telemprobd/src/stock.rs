//! Temporary spool files created ahead of need.
//!
//! Creating a file is the part of a durable write that touches the directory twice: the new
//! entry is inserted (under the directory's lock), and the first sync of a new file also writes
//! the directory that holds it (ext4 without a journal syncs the parent of a new inode; a
//! journaled file system commits the creation with the data). Here a `spool-stock` thread
//! creates empty temporary dot-files in batches, syncs the directory once per batch, and keeps
//! them open for the writer. A record then only writes into a file that already exists:
//! the creation and its share of directory writes are off its path (measured with a plain
//! sequential writer on this machine: 12 instead of 33 µs to get a file written, 110 instead of
//! 140 µs for its `fdatasync`).
//!
//! The protocol is unchanged: the record is written to a temporary dot-file, synced, renamed to
//! its final name (taken when the record is written, so names still sort in creation order),
//! and the directory synced. Readers skip dot-files; the files left in stock are removed when
//! the stock is dropped (clean stop, reload to another directory), and by the start-up sweep of
//! unfinished temporaries after a crash. At most [`CAPACITY`] empty files and descriptors
//! are held.
//!
//! The files stay empty. Until session 7 each was also given its first block ahead (4 KiB of
//! zeros written out with `sync_file_range`, the record then written over it and the file cut
//! to length), which had gained one sender 4.5 % in session 4. Measured again once lone
//! records no longer went through the writer thread, alternating in one daemon: no gain at
//! one sender (+3.9 %, pairs both ways) nor at eight (+1.8 %), for one more 4 KiB device write
//! per record and 6–7 % of the machine's CPU at eight senders (the stock thread's `pwrite`
//! and `sync_file_range` in a profile). So it was dropped, and `writeout.rs`, the crate's
//! `unsafe` wrapper of `sync_file_range`, with it.
//!
//! When creation fails (no inodes, no permission), the thread logs it once and ends; the
//! writer creates files itself, which reports the error to the sender, and the next file taken
//! at least [`RETRY_AFTER`] later starts a new attempt.
//!
//! The thread is there only while there is filling to do: it ends after
//! [`crate::THREAD_KEEP_ALIVE`] without any (an idle daemon has no thread waiting), and taking
//! a file that leaves the stock low starts it again.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};
use telemetry::spool;

/// Most files held ready.
pub const CAPACITY: usize = 32;
/// The thread refills the stock (up to [`CAPACITY`]) once it is down to this many.
const REFILL_AT: usize = CAPACITY / 2;
/// Time after a failed creation before a file taken starts another attempt. Ten minutes in unit tests, so that a test
/// showing that a stop does not wait out the pause can use a bound no loaded machine reaches.
const RETRY_AFTER: Duration = if cfg!(test) {
    Duration::from_secs(600)
} else {
    Duration::from_secs(1)
};

/// An empty temporary file in the spool directory, open for writing.
#[derive(Debug)]
pub struct Temp {
    /// Its dot-file name, relative to the spool directory.
    pub name: String,
    pub file: File,
}

impl Temp {
    /// Makes the (empty) file's content `data`.
    ///
    /// # Errors
    /// Writing failed.
    pub fn fill(&self, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, 0)
    }
}

/// The stock of ready temporary files for one spool directory, and its filling thread.
pub struct Stock {
    shared: Arc<Shared>,
}

struct Shared {
    dir: Arc<OwnedFd>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Temp>,
    closed: bool,
    /// The filling thread, while it runs (it clears this when it ends on its own).
    thread: Option<JoinHandle<()>>,
    /// When creating failed last; no new attempt before [`RETRY_AFTER`] from then.
    failed_at: Option<Instant>,
    /// A file was created by the thread before (to log a recovery once).
    failing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue inconsistent (push/pop only).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the filling thread (the caller holds the lock and saw none running).
    fn spawn_filler(self: &Arc<Self>, state: &mut State) {
        if state.closed {
            return;
        }
        let filler = self.clone();
        state.thread = std::thread::Builder::new()
            .name("spool-stock".into())
            .stack_size(64 * 1024)
            .spawn(move || fill(&filler))
            .map_err(|e| tracing::warn!(error = %e, "spool stock thread not started"))
            .ok();
        if state.thread.is_none() {
            state.failed_at = Some(Instant::now());
        }
    }
}

impl Stock {
    /// Starts filling a stock in `dir`. If the thread cannot start, [`Stock::take`] returns
    /// `None` until a later attempt starts it, and the writer creates files itself.
    pub fn start(dir: Arc<OwnedFd>) -> Stock {
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let stock = Stock { shared };
        stock.shared.spawn_filler(&mut stock.shared.lock());
        stock
    }

    /// A ready temporary file, if there is one; never waits. Taking one that leaves the stock
    /// low wakes the filling thread, or starts it if it has ended.
    pub fn take(&self) -> Option<Temp> {
        let mut state = self.shared.lock();
        let temp = state.ready.pop_front();
        if state.ready.len() <= REFILL_AT {
            if state.thread.is_some() {
                self.shared.wake.notify_one();
            } else if state.failed_at.is_none_or(|t| t.elapsed() >= RETRY_AFTER) {
                self.shared.spawn_filler(&mut state);
            }
        }
        temp
    }

    /// Files ready now.
    #[cfg(test)]
    pub(crate) fn ready(&self) -> usize {
        self.shared.lock().ready.len()
    }
}

impl Drop for Stock {
    /// Stops the thread and removes the files still in stock.
    fn drop(&mut self) {
        let thread = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.thread.take()
        };
        self.shared.wake.notify_one();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let left = std::mem::take(&mut self.shared.lock().ready);
        for temp in left {
            remove(&self.shared.dir, temp);
        }
    }
}

fn remove(dir: &OwnedFd, temp: Temp) {
    drop(temp.file);
    let _ = rustix::fs::unlinkat(dir, temp.name.as_str(), AtFlags::empty());
}

/// The thread: creates a batch whenever the stock is low, syncs the directory once per batch,
/// hands the batch over; ends when closed, after [`crate::THREAD_KEEP_ALIVE`] with nothing to
/// do, or when creating fails.
fn fill(shared: &Shared) {
    // Its own name space (`.ahead-…`), so names never collide with the writer's own
    // temporaries; the nanoseconds in the name keep a later thread's names apart.
    let mut seq: u64 = 0;
    loop {
        let want = {
            let mut state = shared.lock();
            while !state.closed && state.ready.len() > REFILL_AT {
                let (s, waited) = shared
                    .wake
                    .wait_timeout(state, crate::THREAD_KEEP_ALIVE)
                    .unwrap_or_else(|p| p.into_inner());
                state = s;
                if waited.timed_out() && !state.closed && state.ready.len() > REFILL_AT {
                    // Nothing to do for a while: end. Dropping our own handle detaches us.
                    state.thread = None;
                    return;
                }
            }
            if state.closed {
                return;
            }
            CAPACITY - state.ready.len()
        };
        let mut batch = Vec::with_capacity(want);
        let mut error = None;
        for _ in 0..want {
            seq = seq.wrapping_add(1);
            let name = spool::temp_name(&format!("ahead-{}", spool::file_name(seq)));
            let created = rustix::fs::openat(
                &*shared.dir,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            );
            match created {
                Ok(fd) => batch.push(Temp {
                    name,
                    file: File::from(fd),
                }),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            // One directory sync for the whole batch: the entries are then on disk, and a
            // record's own syncs find the directory clean of them.
            if let Err(e) = rustix::fs::fsync(&*shared.dir) {
                tracing::debug!(error = %e, "spool stock: directory sync failed");
            }
        }
        let mut state = shared.lock();
        if state.closed {
            drop(state);
            for temp in batch {
                remove(&shared.dir, temp);
            }
            return;
        }
        state.ready.extend(batch.drain(..));
        match error {
            Some(e) => {
                if !state.failing {
                    tracing::warn!(error = %e, "cannot create spool files ahead; creating them per record");
                    state.failing = true;
                }
                // Ended; a file taken after the pause starts another attempt.
                state.failed_at = Some(Instant::now());
                state.thread = None;
                return;
            }
            None => {
                if state.failing {
                    tracing::info!("creating spool files ahead again");
                    state.failing = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &std::path::Path) -> Arc<OwnedFd> {
        let fd = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        Arc::new(fd)
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn wait_for(stock: &Stock, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stock.ready() < n {
            assert!(std::time::Instant::now() < deadline, "stock not filled");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn fills_with_private_empty_dot_files_refills_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let stock = Stock::start(open(tmp.path()));
        wait_for(&stock, CAPACITY);
        let listed = names(tmp.path());
        assert_eq!(listed.len(), CAPACITY);
        for n in &listed {
            assert!(n.starts_with(".ahead-") && n.ends_with(".tmp"), "{n}");
            assert!(spool::is_temporary(n));
            let m = std::fs::metadata(tmp.path().join(n)).unwrap();
            assert_eq!(m.len(), 0);
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }

        // Taking files: each is writable, and the stock refills once it runs low.
        let mut taken = Vec::new();
        for _ in 0..CAPACITY - REFILL_AT {
            let t = stock.take().unwrap();
            t.fill(b"record").unwrap();
            taken.push(t);
        }
        wait_for(&stock, CAPACITY);
        assert_eq!(names(tmp.path()).len(), CAPACITY + taken.len());
        let t = &taken[0];
        assert_eq!(std::fs::read(tmp.path().join(&t.name)).unwrap(), b"record");

        // Dropping removes what is left in stock, and only that.
        drop(stock);
        let left = names(tmp.path());
        let mut expect: Vec<String> = taken.iter().map(|t| t.name.clone()).collect();
        expect.sort();
        assert_eq!(left, expect);
    }

    #[test]
    fn a_directory_where_nothing_can_be_created_gives_none_and_stops_promptly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gone");
        std::fs::create_dir(&dir).unwrap();
        let fd = open(&dir);
        // Creating in a removed directory fails with ENOENT, even for root.
        std::fs::remove_dir(&dir).unwrap();
        let stock = Stock::start(fd);
        std::thread::sleep(Duration::from_millis(50));
        assert!(stock.take().is_none());
        let started = std::time::Instant::now();
        drop(stock);
        // Dropping does not wait out the retry pause (ten minutes here).
        assert!(
            started.elapsed() < RETRY_AFTER / 2,
            "{:?}",
            started.elapsed()
        );
    }
}
