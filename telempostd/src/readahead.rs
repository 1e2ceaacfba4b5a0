//! Reading the next spool file while the collector handles the current request.
//!
//! Records go one at a time over one connection, so a record's time is the daemon's turn plus
//! the collector's. Opening, reading and decoding the next file is taken out of the daemon's
//! turn: before posting record *n* the delivery loop asks for record *n + 1*, and our TCP layer
//! reads it in the gap between sending the request and its answer
//! ([`crate::deliver::post_overlapped`]), on the same thread: no wake-up of another thread (a
//! read-ahead thread was tried first; its wake-ups cost most of what it saved).
//!
//! A result is used only for the key it was made for and within [`FRESH`]; anything else (the
//! queue changed, the request failed before it was sent, a backoff came between) falls back to
//! reading in the loop, so the read-ahead never changes what is delivered, only when the file
//! was read. The read has the same checks ([`spool_scan::read`]); a file removed within that
//! moment is delivered as it would have been had the removal come a moment later.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::spool_scan::{self, Key, OpenError, Opened};

/// How long a result may be used: a few round trips, never across a backoff.
pub const FRESH: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct Slot {
    want: Option<(PathBuf, Key)>,
    ready: Option<(Key, Instant, Result<Opened, OpenError>)>,
}

/// The read-ahead, shared (behind a mutex nobody contends for) so it can run from inside a
/// request.
#[derive(Debug, Clone)]
pub struct ReadAhead {
    slot: Arc<Mutex<Slot>>,
    uid: u32,
}

impl ReadAhead {
    /// Reads files owned by `uid` (see [`spool_scan::read`]).
    pub fn new(uid: u32) -> ReadAhead {
        ReadAhead {
            slot: Arc::default(),
            uid,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A stale or missing result only means the loop reads the file itself.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for `key` in `dir` to be read during the next request.
    pub fn want(&self, dir: PathBuf, key: Key) {
        self.lock().want = Some((dir, key));
    }

    /// The result for `key`, if there is a fresh one.
    pub fn take(&self, key: &Key) -> Option<Result<Opened, OpenError>> {
        let mut slot = self.lock();
        match &slot.ready {
            Some((k, at, _)) if k == key && at.elapsed() < FRESH => {
                slot.ready.take().map(|(_, _, r)| r)
            }
            _ => None,
        }
    }

    /// The work for [`crate::deliver::post_overlapped`]: reads what was asked for, and says
    /// whether a record follows (so the next connection may be opened ahead).
    pub fn while_waiting(&self) -> impl FnOnce() -> bool + 'static {
        let me = self.clone();
        move || me.read_wanted()
    }

    /// Reads the wanted file; `false` when nothing was wanted (no record follows).
    fn read_wanted(&self) -> bool {
        let Some((dir, key)) = self.lock().want.take() else {
            return false;
        };
        let res = spool_scan::read(&dir, &key.name(), self.uid);
        self.lock().ready = Some((key, Instant::now(), res));
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn name(i: u64) -> String {
        format!("{:020}-{:08}", 1_000 + i, i)
    }

    #[test]
    fn a_result_is_for_its_key_once_and_fresh_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name(1)), b"bytes").unwrap();
        let (one, two) = (Key::new(&name(1), 0), Key::new(&name(2), 0));
        let ra = ReadAhead::new(rustix::process::geteuid().as_raw());
        assert!(ra.take(&one).is_none(), "nothing asked, nothing read");
        assert!(!(ra.while_waiting())(), "nothing wanted, nothing follows");
        ra.want(dir.path().into(), one.clone());
        assert!((ra.while_waiting())(), "a record follows");
        assert!(ra.take(&two).is_none());
        assert_eq!(ra.take(&one).unwrap().unwrap().bytes, b"bytes");
        assert!(ra.take(&one).is_none(), "handed out once");
        ra.want(dir.path().into(), one.clone());
        (ra.while_waiting())();
        std::thread::sleep(FRESH + Duration::from_millis(20));
        assert!(ra.take(&one).is_none(), "stale");
    }

    #[test]
    fn a_missing_or_unsafe_file_reports_what_a_direct_read_would() {
        let dir = tempfile::tempdir().unwrap();
        let ra = ReadAhead::new(rustix::process::geteuid().as_raw());
        let gone = Key::new(&name(2), 0);
        ra.want(dir.path().into(), gone.clone());
        (ra.while_waiting())();
        assert!(matches!(ra.take(&gone), Some(Err(OpenError::Gone))));
        let link = name(3);
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(&link)).unwrap();
        let link = Key::new(&link, 0);
        ra.want(dir.path().into(), link.clone());
        (ra.while_waiting())();
        assert!(matches!(ra.take(&link), Some(Err(OpenError::NotOurs(_)))));
    }
}
