//! The local record journal: one line per record that left the spool, written by telempostd and
//! read by `telemctl journal`.
//!
//! The line format is the original's (`original-client.md` §10.1), fields separated by ASCII RS
//! (0x1E), with two fields appended:
//!
//! ```text
//! record_id RS timestamp RS classification RS event_id RS boot_id [RS outcome RS detail] \n
//! ```
//!
//! - `record_id`: a fresh 32-hex id per entry; the retained body (if any) is stored under it;
//! - `timestamp`: seconds since the epoch when the record left the spool;
//! - `outcome`: `delivered`, `rejected`, `expired` or `dropped`; `detail`: why, in words.
//!
//! Lines written by the original daemon have five fields and read back with `outcome: None`. The
//! original `telem_journal` splits on RS and prints only the first five fields, so it ignores the
//! two extra ones (the last of them would at worst be joined to the boot id by a reader that
//! splits into exactly five parts).
//!
//! Pruning is the original's: when the journal holds more than [`RECORD_LIMIT`] + [`DEVIATION`]
//! lines, the oldest are dropped so that the newest [`RECORD_LIMIT`] remain; the caller deletes
//! the retained copies of the dropped ids.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Field separator (ASCII record separator).
pub const RS: char = '\u{1e}';
/// Entries kept after pruning; also how many `telemctl journal` considers.
pub const RECORD_LIMIT: usize = 100;
/// How far past [`RECORD_LIMIT`] the journal may grow before it is pruned.
pub const DEVIATION: usize = 50;
/// Where the kernel publishes the current boot id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// Why a record left the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The collector accepted it (or local-only mode journaled it).
    Delivered,
    /// The collector refused it permanently, or it could not be read or sent at all.
    Rejected,
    /// It was older than `record_expiry`.
    Expired,
    /// Rate limiting with strategy `drop`, or the spool was over its quota.
    Dropped,
}

impl Outcome {
    /// The word written in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Rejected => "rejected",
            Outcome::Expired => "expired",
            Outcome::Dropped => "dropped",
        }
    }

    /// Parses the journal word.
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "delivered" => Outcome::Delivered,
            "rejected" => Outcome::Rejected,
            "expired" => Outcome::Expired,
            "dropped" => Outcome::Dropped,
            _ => return None,
        })
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Fresh id of this entry; the retained body is stored under it.
    pub record_id: String,
    /// When the record left the spool, seconds since the epoch.
    pub timestamp: u64,
    /// The record's classification.
    pub classification: String,
    /// The record's event id.
    pub event_id: String,
    /// Boot id at the time of the entry.
    pub boot_id: String,
    /// Why the record left the spool; `None` for lines written by the original daemon.
    pub outcome: Option<Outcome>,
    /// Details (HTTP status and server message, reason); empty when there is nothing to add.
    pub detail: String,
}

impl Entry {
    /// A new entry stamped now, with a fresh record id and the current boot id.
    pub fn new(
        classification: &str,
        event_id: &str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) -> Result<Entry> {
        Ok(Entry {
            record_id: crate::record::new_event_id()?,
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            classification: classification.to_string(),
            event_id: event_id.to_string(),
            boot_id: boot_id(),
            outcome: Some(outcome),
            detail: detail.into(),
        })
    }

    /// The line, with its `\n`. Separators and line breaks inside fields become spaces, so one
    /// entry is always exactly one line of exactly the expected fields.
    pub fn to_line(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c == RS || c == '\n' || c == '\r' {
                        ' '
                    } else {
                        c
                    }
                })
                .collect()
        };
        let mut line = format!(
            "{}{RS}{}{RS}{}{RS}{}{RS}{}",
            clean(&self.record_id),
            self.timestamp,
            clean(&self.classification),
            clean(&self.event_id),
            clean(&self.boot_id)
        );
        if let Some(o) = self.outcome {
            line.push(RS);
            line.push_str(o.as_str());
            line.push(RS);
            line.push_str(&clean(&self.detail));
        }
        line.push('\n');
        line
    }

    /// Parses a line (with or without its `\n`). Lines with fewer than five fields or a
    /// non-numeric timestamp are not entries. An unknown outcome word reads as `None`; fields past
    /// the seventh are joined to the detail.
    pub fn parse_line(line: &str) -> Option<Entry> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut f = line.splitn(7, RS);
        let record_id = f.next()?.to_string();
        let timestamp = f.next()?.parse().ok()?;
        let classification = f.next()?.to_string();
        let event_id = f.next()?.to_string();
        let boot_id = f.next()?.to_string();
        let outcome = f.next().and_then(Outcome::parse);
        let detail = f.next().unwrap_or("").replace(RS, " ");
        Some(Entry {
            record_id,
            timestamp,
            classification,
            event_id,
            boot_id,
            outcome,
            detail,
        })
    }
}

/// The first line of [`BOOT_ID_FILE`], or an empty string if it cannot be read.
pub fn boot_id() -> String {
    fs::read_to_string(BOOT_ID_FILE)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_default()
}

/// The filters of `telem_journal` (`-r -e -c -b`), ANDed; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Exact record id.
    pub record_id: Option<String>,
    /// Exact event id.
    pub event_id: Option<String>,
    /// Exact classification, or a prefix when it ends with `/*` (`a/b/*` matches `a/b/anything`).
    pub classification: Option<String>,
    /// Exact boot id.
    pub boot_id: Option<String>,
}

impl Filter {
    /// True when the entry passes every given filter.
    pub fn matches(&self, e: &Entry) -> bool {
        let exact = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        exact(&self.record_id, &e.record_id)
            && exact(&self.event_id, &e.event_id)
            && exact(&self.boot_id, &e.boot_id)
            && self
                .classification
                .as_deref()
                .is_none_or(|c| classification_matches(c, &e.classification))
    }
}

/// `telem_journal`'s classification rule: exact, or everything before the `*` as a prefix when
/// the pattern ends with `/*`.
pub fn classification_matches(pattern: &str, classification: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('/') => classification.starts_with(prefix),
        _ => pattern == classification,
    }
}

/// Reads every entry of a journal file, oldest first. A missing file is an empty journal; lines
/// that are not entries are skipped.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if let Some(e) = Entry::parse_line(&String::from_utf8_lossy(&line)) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The newest `n` entries (what `telem_journal` considers with `n` = [`RECORD_LIMIT`]).
pub fn newest(entries: &[Entry], n: usize) -> &[Entry] {
    &entries[entries.len().saturating_sub(n)..]
}

/// An open journal for appending, with its line count.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    count: usize,
}

/// `opts.open(path)` with `O_NOFOLLOW`: a symlink as the last component fails with `ELOOP`.
fn open_nofollow(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    opts.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

impl Journal {
    /// Opens (creating if missing) the journal for appending and counts its lines. A symlink
    /// in the journal's place is refused (`ELOOP`), never written through: the daemons run as
    /// their own user and must not append to whatever file a link names.
    pub fn open(path: &Path) -> Result<Journal> {
        let ctx = |e| Error::io(format!("opening journal {}", path.display()), e);
        let file =
            open_nofollow(OpenOptions::new().append(true).create(true), path).map_err(ctx)?;
        let count = count_lines(path).map_err(ctx)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            count,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of lines in the journal.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Appends one entry with a single write, so concurrent readers never see half a line.
    pub fn append(&mut self, entry: &Entry) -> Result<()> {
        self.file
            .write_all(entry.to_line().as_bytes())
            .map_err(|e| Error::io(format!("writing journal {}", self.path.display()), e))?;
        self.count += 1;
        Ok(())
    }

    /// Appends entries with a single write (none for an empty slice), so concurrent readers
    /// never see half a line and a batch costs one system call.
    pub fn append_all(&mut self, entries: &[&Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let text: String = entries.iter().map(|e| e.to_line()).collect();
        self.file
            .write_all(text.as_bytes())
            .map_err(|e| Error::io(format!("writing journal {}", self.path.display()), e))?;
        self.count += entries.len();
        Ok(())
    }

    /// Appends entries and prunes exactly as appending them one by one with
    /// [`Journal::prune_if_needed`] after each would, with one write per stretch between
    /// prunes. Returns the record ids of the dropped lines.
    pub fn append_and_prune(&mut self, entries: &[&Entry]) -> Result<Vec<String>> {
        let mut dropped = Vec::new();
        let mut rest = entries;
        while !rest.is_empty() {
            // Up to the line that takes the journal over the limit, which is pruned right away.
            let room = (RECORD_LIMIT + DEVIATION + 1)
                .saturating_sub(self.count)
                .max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.append_all(now)?;
            dropped.extend(self.prune_if_needed()?);
            rest = later;
        }
        Ok(dropped)
    }

    /// Prunes like the original: more than `RECORD_LIMIT + DEVIATION` lines → keep the newest
    /// `RECORD_LIMIT`. The rest is written to a dot-file beside the journal and renamed over it,
    /// so readers see the old or the new journal, never a mix. Returns the record ids of the
    /// dropped lines (so the caller can delete their retained bodies).
    pub fn prune_if_needed(&mut self) -> Result<Vec<String>> {
        if self.count <= RECORD_LIMIT + DEVIATION {
            return Ok(Vec::new());
        }
        self.prune_to(RECORD_LIMIT)
    }

    /// Keeps the newest `keep` lines; returns the record ids of the dropped ones.
    pub fn prune_to(&mut self, keep: usize) -> Result<Vec<String>> {
        let ctx = |what: &str, e| Error::io(format!("{what} journal {}", self.path.display()), e);
        let mut bytes = Vec::new();
        open_nofollow(OpenOptions::new().read(true), &self.path)
            .and_then(|mut f| io::Read::read_to_end(&mut f, &mut bytes))
            .map_err(|e| ctx("reading", e))?;
        let lines: Vec<&[u8]> = bytes
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() <= keep {
            self.count = lines.len();
            return Ok(Vec::new());
        }
        let cut = lines.len() - keep;
        let dropped: Vec<String> = lines[..cut]
            .iter()
            .filter_map(|l| {
                let s = String::from_utf8_lossy(l);
                let id = s.split(RS).next()?.trim_end_matches('\n').to_string();
                (!id.is_empty()).then_some(id)
            })
            .collect();
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "journal".into());
        let tmp = self.path.with_file_name(format!(".{name}.tmp"));
        let res = (|| -> io::Result<File> {
            // A file (or link) left there by a crash is replaced, never written through.
            let _ = fs::remove_file(&tmp);
            let mut f = open_nofollow(OpenOptions::new().write(true).create_new(true), &tmp)?;
            f.write_all(&lines[cut..].concat())?;
            fs::rename(&tmp, &self.path)?;
            open_nofollow(OpenOptions::new().append(true), &self.path)
        })();
        match res {
            Ok(f) => {
                self.file = f;
                self.count = keep;
                Ok(dropped)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(ctx("pruning", e))
            }
        }
    }
}

fn count_lines(path: &Path) -> io::Result<usize> {
    let mut n = 0;
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        line?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(class: &str, outcome: Outcome) -> Entry {
        Entry::new(class, "3a2d799826edc6266d72824d2aac6763", outcome, "201").unwrap()
    }

    #[test]
    fn line_round_trip_and_original_lines() {
        let e = entry("org.clearlinux/hello/world", Outcome::Delivered);
        assert_eq!(e.record_id.len(), 32);
        let line = e.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches(RS).count(), 6);
        assert_eq!(Entry::parse_line(&line).unwrap(), e);

        // A line of the original daemon: five fields.
        let orig = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\u{1e}1700000000\u{1e}a/b/c\u{1e}\
                    3a2d799826edc6266d72824d2aac6763\u{1e}0c4a5b1e-1111-2222-3333-444455556666\n";
        let o = Entry::parse_line(orig).unwrap();
        assert_eq!(o.outcome, None);
        assert_eq!(o.boot_id, "0c4a5b1e-1111-2222-3333-444455556666");
        assert_eq!(o.timestamp, 1_700_000_000);
        assert_eq!(o.to_line(), orig);

        assert!(Entry::parse_line("garbage").is_none());
        assert!(Entry::parse_line("a\u{1e}notanumber\u{1e}c\u{1e}d\u{1e}e").is_none());
    }

    #[test]
    fn separators_in_fields_cannot_break_the_line() {
        let mut e = entry("a/b/c", Outcome::Rejected);
        e.detail = "400 bad\u{1e}thing\nsecond line".into();
        let line = e.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert_eq!(line.matches(RS).count(), 6);
        assert_eq!(
            Entry::parse_line(&line).unwrap().detail,
            "400 bad thing second line"
        );
    }

    #[test]
    fn filters_and_classification_prefix() {
        let e = entry("org.clearlinux/hello/world", Outcome::Delivered);
        assert!(Filter::default().matches(&e));
        let f = |c: &str| Filter {
            classification: Some(c.into()),
            ..Default::default()
        };
        assert!(f("org.clearlinux/hello/world").matches(&e));
        assert!(f("org.clearlinux/hello/*").matches(&e));
        assert!(f("org.clearlinux/*").matches(&e));
        assert!(!f("org.clearlinux/hell*").matches(&e));
        assert!(!f("org.clearlinux/hello").matches(&e));
        assert!(!f("org.clearlinux/other/*").matches(&e));
        let by_id = Filter {
            record_id: Some(e.record_id.clone()),
            event_id: Some(e.event_id.clone()),
            boot_id: Some(e.boot_id.clone()),
            ..Default::default()
        };
        assert!(by_id.matches(&e));
        let wrong = Filter {
            event_id: Some("x".into()),
            ..by_id
        };
        assert!(!wrong.matches(&e));
    }

    #[test]
    fn append_read_and_prune_like_the_original() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let mut j = Journal::open(&p).unwrap();
        let mut ids = Vec::new();
        for i in 0..(RECORD_LIMIT + DEVIATION) {
            let e = entry(&format!("a/b/c{i}"), Outcome::Delivered);
            ids.push(e.record_id.clone());
            j.append(&e).unwrap();
        }
        assert_eq!(j.prune_if_needed().unwrap(), Vec::<String>::new());
        assert_eq!(read(&p).unwrap().len(), 150);

        // Reopening counts the lines already there.
        drop(j);
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.count(), 150);
        let last = entry("a/b/last", Outcome::Expired);
        j.append(&last).unwrap();
        let dropped = j.prune_if_needed().unwrap();
        assert_eq!(dropped, ids[..51].to_vec());
        let all = read(&p).unwrap();
        assert_eq!(all.len(), RECORD_LIMIT);
        assert_eq!(all.last().unwrap(), &last);
        assert_eq!(all[0].classification, "a/b/c51");
        // Appends after a prune go to the new file.
        j.append(&entry("a/b/after", Outcome::Dropped)).unwrap();
        assert_eq!(read(&p).unwrap().len(), RECORD_LIMIT + 1);
        assert_eq!(newest(&read(&p).unwrap(), 2)[1].classification, "a/b/after");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn append_all_writes_a_batch_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal");
        let mut j = Journal::open(&p).unwrap();
        j.append_all(&[]).unwrap();
        assert_eq!(j.count(), 0);
        let batch: Vec<Entry> = (0..3)
            .map(|i| entry(&format!("a/b/c{i}"), Outcome::Delivered))
            .collect();
        j.append_all(&batch.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(j.count(), 3);
        assert_eq!(read(&p).unwrap(), batch);
    }

    #[test]
    fn a_symlinked_journal_is_refused_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let path = d.path().join("journal");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(Journal::open(&path).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn append_and_prune_matches_one_by_one() {
        let d = tempfile::tempdir().unwrap();
        let entries: Vec<Entry> = (0..(2 * RECORD_LIMIT + 37))
            .map(|i| entry(&format!("a/b/c{i}"), Outcome::Delivered))
            .collect();
        let one = d.path().join("one");
        let mut j1 = Journal::open(&one).unwrap();
        let mut dropped1 = Vec::new();
        for e in &entries {
            j1.append(e).unwrap();
            dropped1.extend(j1.prune_if_needed().unwrap());
        }
        let many = d.path().join("many");
        let mut j2 = Journal::open(&many).unwrap();
        let mut dropped2 = Vec::new();
        for chunk in entries.chunks(32) {
            let refs: Vec<&Entry> = chunk.iter().collect();
            dropped2.extend(j2.append_and_prune(&refs).unwrap());
        }
        assert_eq!(read(&one).unwrap(), read(&many).unwrap());
        assert_eq!(dropped1, dropped2);
        assert_eq!(j1.count(), j2.count());
    }

    #[test]
    fn missing_journal_reads_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(read(&d.path().join("none")).unwrap().is_empty());
    }
}
