//! Attempt counts of records the server answered with a failure, so that one record the server
//! keeps failing does not starve the others (head-of-line blocking).
//!
//! A record that failed [`BEHIND_AFTER`] times while the server was answering goes behind every
//! record with fewer failures (once one has, a single failure is enough: see
//! [`Attempts::limit`]); among those, the one with the fewest goes first (ties: oldest), so the
//! failing records take turns. The counts live in `<state_dir>/telempostd.attempts`, a
//! small file of our own (telempostd never rewrites a spool file), so a restart does not put a
//! failing record back at the head: one line `<count> <spool file name>` per record, rewritten
//! through a temporary file and a rename when a count changes, at most [`MAX_ENTRIES`] lines
//! (the lowest counts are dropped first). An entry goes when its spool file goes. Records that
//! never failed have no entry, so a healthy queue never touches the file.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use tracing::warn;

/// Failures (server answered, not 2xx) after which a record goes behind the others.
pub const BEHIND_AFTER: u32 = 3;

/// Most records whose count is kept (a few bytes each).
pub const MAX_ENTRIES: usize = 1024;

/// The counts and where they are kept.
#[derive(Debug)]
pub struct Attempts {
    path: PathBuf,
    counts: HashMap<String, u32>,
}

impl Attempts {
    /// Reads the counts left by an earlier run (none if the file is missing or unreadable; bad
    /// lines are skipped: losing a count only puts a record back in its place by age).
    pub fn load(path: PathBuf) -> Attempts {
        let mut counts = HashMap::new();
        match read_nofollow(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let Some((n, name)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(n) = n.parse::<u32>() {
                        if n > 0 && !name.is_empty() && counts.len() < MAX_ENTRIES {
                            counts.insert(name.to_string(), n);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %path.display(), error = %e, "cannot read attempt counts"),
        }
        Attempts { path, counts }
    }

    /// The file for a state directory.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("telempostd.attempts")
    }

    /// Follows a changed `state_dir` (config reload): the counts are written there from now on.
    pub fn set_path(&mut self, path: PathBuf) {
        if path != self.path {
            self.path = path;
            self.save();
        }
    }

    /// No record has a count (the usual case: the head is simply the oldest record).
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The failures counted for a record.
    pub fn get(&self, name: &str) -> u32 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Whether a record has gone behind the others.
    pub fn is_behind(&self, name: &str) -> bool {
        self.get(name) >= BEHIND_AFTER
    }

    /// Failures after which a record goes behind now: [`BEHIND_AFTER`], or one once some record
    /// is behind already (the server fails more than one record: the records take turns at
    /// once, so a server that fails every record sees each of N records within about N + 2
    /// backoff delays rather than 3 N).
    pub fn limit(&self) -> u32 {
        if self.counts.values().any(|&n| n >= BEHIND_AFTER) {
            1
        } else {
            BEHIND_AFTER
        }
    }

    /// One more failure for a record; returns its count.
    pub fn failed(&mut self, name: &str) -> u32 {
        let n = self.get(name).saturating_add(1);
        self.counts.insert(name.to_string(), n);
        if self.counts.len() > MAX_ENTRIES {
            self.trim();
        }
        self.save();
        n
    }

    /// The record left the spool.
    pub fn forget(&mut self, name: &str) {
        if self.counts.remove(name).is_some() {
            self.save();
        }
    }

    /// Keeps only the records `keep` says are still spooled (after a scan).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.counts.len();
        self.counts.retain(|name, _| keep(name));
        if self.counts.len() != before {
            self.save();
        }
    }

    /// Drops the lowest counts down to [`MAX_ENTRIES`].
    fn trim(&mut self) {
        let mut all: Vec<(u32, String)> = self.counts.drain().map(|(k, v)| (v, k)).collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.truncate(MAX_ENTRIES);
        self.counts = all.into_iter().map(|(v, k)| (k, v)).collect();
    }

    /// Writes the file through a temporary file and a rename (or removes it when empty).
    /// Failures are logged: the counts still work for this process.
    fn save(&self) {
        let res = if self.counts.is_empty() {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            let mut text = String::new();
            let mut entries: Vec<_> = self.counts.iter().collect();
            entries.sort();
            for (name, n) in entries {
                // A name with a line feed cannot be written as a line: kept in memory only.
                if !name.contains('\n') {
                    text.push_str(&format!("{n} {name}\n"));
                }
            }
            write_replace(&self.path, text.as_bytes())
        };
        if let Err(e) = res {
            warn!(file = %self.path.display(), error = %e, "cannot write attempt counts");
        }
    }
}

fn read_nofollow(path: &Path) -> io::Result<String> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(path)?;
    let mut text = String::new();
    io::Read::read_to_string(&mut f, &mut text)?;
    Ok(text)
}

/// `path` gets `bytes` whole or not at all: a temporary file beside it (created new, never
/// through a symlink), then a rename over it.
fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.tmp", name.unwrap_or_default()));
    // Left by a crash between create and rename.
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_survive_a_reload_and_leave_with_their_file() {
        let d = tempfile::tempdir().unwrap();
        let path = Attempts::path_in(d.path());
        let mut a = Attempts::load(path.clone());
        assert!(a.is_empty());
        assert!(!path.exists(), "nothing written while nothing failed");
        for _ in 0..BEHIND_AFTER {
            a.failed("one");
        }
        a.failed("two");
        assert!(a.is_behind("one") && !a.is_behind("two"));
        let b = Attempts::load(path.clone());
        assert_eq!((b.get("one"), b.get("two"), b.get("x")), (3, 1, 0));
        a.forget("one");
        a.retain(|n| n != "two");
        assert!(a.is_empty());
        assert!(!path.exists());
        // Garbage lines are skipped.
        fs::write(&path, "x y\n5 ok\n0 zero\n7\n").unwrap();
        let c = Attempts::load(path);
        assert_eq!(c.counts.len(), 1);
        assert_eq!(c.get("ok"), 5);
    }

    #[test]
    fn the_file_stays_bounded_keeping_the_highest_counts() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Attempts::load(Attempts::path_in(d.path()));
        a.failed("old");
        a.failed("old");
        for i in 0..MAX_ENTRIES {
            a.failed(&format!("n{i}"));
        }
        assert_eq!(a.counts.len(), MAX_ENTRIES);
        assert_eq!(a.get("old"), 2);
        let text = fs::read_to_string(Attempts::path_in(d.path())).unwrap();
        assert_eq!(text.lines().count(), MAX_ENTRIES);
    }
}
