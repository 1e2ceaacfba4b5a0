//! The finishing thread ([`crate::finish`]) only while records leave: started with the first
//! record that leaves the spool, stopped (after finishing everything handed over) once none
//! has left for [`KEEP_ALIVE`] and none is unfinished. An idle daemon then waits as the
//! runtime's thread alone.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use telemetry::journal::Journal;
use tracing::{error, warn};

use crate::finish::{Finisher, Leaving, Pending};

/// How long the thread stays after the last record left. Ten seconds, as tokio's blocking
/// threads (the delivery thread goes after the same time).
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Where records that leave the spool are finished.
#[derive(Debug)]
pub struct Finishing {
    running: Option<Finisher>,
    journal_file: PathBuf,
    retention_dir: PathBuf,
    /// What [`Finishing::pending`] shows while no thread runs: nothing is on its way out then.
    none_pending: Pending,
    last_leave: Instant,
}

impl Finishing {
    /// Checks that the thread can start (a daemon that could never finish a record should say
    /// so at start), then lets it go until there is work.
    ///
    /// # Errors
    /// The thread cannot start.
    pub fn new(journal_file: &Path, retention_dir: &Path) -> io::Result<Finishing> {
        let mut f = Finishing {
            running: None,
            journal_file: journal_file.to_path_buf(),
            retention_dir: retention_dir.to_path_buf(),
            none_pending: Pending::default(),
            last_leave: Instant::now(),
        };
        f.start()?;
        f.running = None;
        Ok(f)
    }

    fn start(&mut self) -> io::Result<&mut Finisher> {
        let finisher = match self.running.take() {
            Some(f) => f,
            None => Finisher::start(open_journal(&self.journal_file), self.retention_dir.clone())?,
        };
        Ok(self.running.insert(finisher))
    }

    /// Names handed over and not yet unlinked.
    pub fn pending(&self) -> &Pending {
        self.running
            .as_ref()
            .map_or(&self.none_pending, Finisher::pending)
    }

    /// A record leaves the spool (see [`Finisher::leave`]). If the thread cannot start, the
    /// record stays in the spool and is delivered again later: a duplicate, never a loss.
    pub fn leave(&mut self, leaving: Leaving) {
        self.last_leave = Instant::now();
        match self.start() {
            Ok(f) => f.leave(leaving),
            Err(e) => {
                error!(error = %e, file = %leaving.key.name(), "cannot start the finishing thread; the record stays in the spool");
            }
        }
    }

    /// See [`Finisher::hand_over`].
    pub fn hand_over(&mut self) {
        if let Some(f) = &mut self.running {
            f.hand_over();
        }
    }

    /// A reload: the journal and retention directory from now on.
    pub fn reconfigure(&mut self, journal_file: &Path, retention_dir: &Path) {
        self.journal_file = journal_file.to_path_buf();
        self.retention_dir = retention_dir.to_path_buf();
        if let Some(f) = &mut self.running {
            f.reconfigure(open_journal(journal_file), retention_dir.to_path_buf());
        }
    }

    /// When the thread may be stopped, if it runs.
    pub fn stop_at(&self) -> Option<Instant> {
        self.running.as_ref().map(|_| self.last_leave + KEEP_ALIVE)
    }

    /// Stops the thread after finishing what it holds, if nothing left for [`KEEP_ALIVE`].
    pub fn stop_if_idle(&mut self) {
        if self.stop_at().is_some_and(|t| t <= Instant::now()) {
            if let Some(mut f) = self.running.take() {
                f.flush();
            }
        }
    }
}

/// The journal, its directory created if missing; `None` (journal disabled, logged) if it
/// cannot be opened.
pub fn open_journal(path: &Path) -> Option<Journal> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::DirBuilder::new().recursive(true).create(dir);
    }
    match Journal::open(path) {
        Ok(j) => Some(j),
        Err(e) => {
            warn!(error = %e, "journal disabled");
            None
        }
    }
}
