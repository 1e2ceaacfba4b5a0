//! Finding records in the spool directory, oldest first, and opening them safely.
//!
//! Order: our file names (`spool::file_name`: 20-digit nanoseconds, `-`, sequence) carry their
//! creation time; any other name (the original daemon's 6-character `mkstemp` names) is ordered
//! by its mtime. Both become one sort key in nanoseconds, ties broken by name.
//!
//! Skipped, never touched: dot-files (being written), and anything that is not a regular file
//! owned by us (symlinks, directories, FIFOs, other users' files). Files are opened with
//! `O_NOFOLLOW | O_NONBLOCK` and checked again with `fstat`, so a swap between listing and
//! opening cannot make us read through a symlink or block on a FIFO.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::OFlags;
use telemetry::spool;

/// Largest spool file we read: a full record is well below this (8 KiB payload + headers).
pub const MAX_FILE: u64 = 64 * 1024;

/// A queued record: its sort time (nanoseconds since the epoch) and its file name.
///
/// Compact on purpose (32 bytes, no heap for our own names): the queue holds one per spooled
/// record, and a backlog of tens of thousands must not grow the daemon's memory. Our names are
/// rebuilt from (time, sequence) when needed; any other name is kept as a boxed `str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    time: u128,
    name: Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    /// `<20-digit time>-<8-digit seq>`: exactly what `spool::file_name` writes.
    Ours(u32),
    /// Anything else (the original's `mkstemp` names), ordered by mtime.
    Other(Box<str>),
}

/// Length of our names: 20 digits, `-`, 8 digits.
const OUR_NAME_LEN: usize = 29;

impl Key {
    /// The key of a file name with the given fallback time (its mtime) for foreign names.
    pub fn new(name: &str, mtime_nanos: u128) -> Key {
        match parse_ours(name) {
            Some((time, seq)) => Key {
                time,
                name: Name::Ours(seq),
            },
            None => Key {
                time: mtime_nanos,
                name: Name::Other(name.into()),
            },
        }
    }

    /// Sort time in nanoseconds since the epoch.
    pub fn time(&self) -> u128 {
        self.time
    }

    /// The file name.
    pub fn name(&self) -> Cow<'_, str> {
        match &self.name {
            Name::Ours(seq) => Cow::Owned(format!("{:020}-{seq:08}", self.time)),
            Name::Other(n) => Cow::Borrowed(n),
        }
    }
}

impl Ord for Key {
    /// Oldest first, ties by name (as the names compare as strings).
    fn cmp(&self, other: &Key) -> Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| match (&self.name, &other.name) {
                // Same time, fixed-width digits: the sequence orders the names.
                (Name::Ours(a), Name::Ours(b)) => a.cmp(b),
                (Name::Other(a), Name::Other(b)) => a.cmp(b),
                _ => self.name().cmp(&other.name()),
            })
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The pending records, oldest first: a sorted `VecDeque` of compact keys (32 bytes a record,
/// no tree nodes). The head leaves from the front and new records, the newest, join at the
/// back, both O(1); anything else is a binary search.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Queue {
    keys: VecDeque<Key>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Queue {
        Queue::default()
    }

    /// A queue of the given keys (any order, duplicates dropped).
    pub fn from_keys(mut keys: Vec<Key>) -> Queue {
        keys.sort_unstable();
        keys.dedup();
        Queue { keys: keys.into() }
    }

    /// Adds a key; false if it was there.
    pub fn insert(&mut self, key: Key) -> bool {
        if self.keys.back().is_none_or(|last| *last < key) {
            self.keys.push_back(key);
            return true;
        }
        match self.keys.binary_search(&key) {
            Ok(_) => false,
            Err(i) => {
                self.keys.insert(i, key);
                true
            }
        }
    }

    /// Removes a key; false if it was not there.
    pub fn remove(&mut self, key: &Key) -> bool {
        if self.keys.front() == Some(key) {
            self.keys.pop_front();
            return true;
        }
        match self.keys.binary_search(key) {
            Ok(i) => self.keys.remove(i).is_some(),
            Err(_) => false,
        }
    }

    /// The oldest record.
    pub fn first(&self) -> Option<&Key> {
        self.keys.front()
    }

    /// Whether the key is queued.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.binary_search(key).is_ok()
    }

    /// Number of queued records.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keeps only the keys for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Key) -> bool) {
        self.keys.retain(keep);
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// The sort key of a file: the creation time in its name when it is one of ours, else its mtime.
pub fn sort_key(name: &str, meta: &Metadata) -> Key {
    Key::new(name, mtime_nanos(meta))
}

/// Creation time encoded in our names (`01700000000123456789-00000001`).
pub fn name_time(name: &str) -> Option<u128> {
    parse_ours(name).map(|(t, _)| t)
}

/// (time, sequence) of one of our names.
fn parse_ours(name: &str) -> Option<(u128, u32)> {
    if name.len() != OUR_NAME_LEN {
        return None;
    }
    let (nanos, seq) = name.split_once('-')?;
    let ours = nanos.len() == 20
        && seq.len() == 8
        && nanos.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit());
    if !ours {
        return None;
    }
    Some((nanos.parse().ok()?, seq.parse().ok()?))
}

fn mtime_nanos(meta: &Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// Whether a directory entry is a candidate: not a dot-file, a regular file (not followed),
/// owned by `uid`.
pub fn is_candidate(name: &str, meta: &Metadata, uid: u32) -> bool {
    !spool::is_temporary(name) && meta.file_type().is_file() && meta.uid() == uid
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The candidates, oldest first.
    pub queue: Queue,
    /// Their quota total ([`allocated_bytes`]).
    pub allocated: u64,
}

/// Lists the candidates. Only the compact keys are kept (no per-file list beside the queue), so
/// a large backlog costs 32 bytes a record, at the scan too.
pub fn scan(dir: &Path, uid: u32) -> io::Result<Scan> {
    let mut keys = Vec::new();
    let mut allocated = 0u64;
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // DirEntry::metadata does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if is_candidate(name, &meta, uid) {
            keys.push(sort_key(name, &meta));
            allocated += allocated_bytes(&meta);
        }
    }
    Ok(Scan {
        queue: Queue::from_keys(keys),
        allocated,
    })
}

/// What a file counts against the quota: the one measure telemprobd uses too
/// ([`spool::quota_cost`] of its size).
pub fn allocated_bytes(meta: &Metadata) -> u64 {
    spool::quota_cost(meta.len())
}

/// The allocated bytes of a queued file now (0 if it is gone).
pub fn allocated_of(dir: &Path, key: &Key) -> u64 {
    fs::symlink_metadata(dir.join(&*key.name())).map_or(0, |m| allocated_bytes(&m))
}

/// Looks at one name reported by inotify: its key if it is a candidate.
pub fn probe(dir: &Path, name: &str, uid: u32) -> Option<Key> {
    if spool::is_temporary(name) {
        return None;
    }
    let meta = fs::symlink_metadata(dir.join(name)).ok()?;
    is_candidate(name, &meta, uid).then(|| sort_key(name, &meta))
}

/// Why a queued file was not read.
#[derive(Debug)]
pub enum OpenError {
    /// It is gone (delivered by someone else, deleted).
    Gone,
    /// Not a regular file we own (any more).
    NotOurs(String),
    /// Larger than any record can be.
    TooLarge(u64),
    /// Another I/O error.
    Io(io::Error),
}

/// A spool file's bytes and metadata.
#[derive(Debug)]
pub struct Opened {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// `fstat` of the opened file.
    pub meta: Metadata,
}

impl Opened {
    /// The file's mtime as seconds since the epoch.
    pub fn mtime_secs(&self) -> u64 {
        self.meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }
}

/// Opens and reads a spool file safely (see the module docs).
pub fn read(dir: &Path, name: &str, uid: u32) -> Result<Opened, OpenError> {
    let path = dir.join(name);
    let open = |flags: OFlags| {
        OpenOptions::new()
            .read(true)
            .custom_flags(
                (OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | flags).bits() as i32,
            )
            .open(&path)
    };
    // O_NOATIME: a read that updates the access time dirties the inode (an ext4 journal
    // transaction per delivered record, for a file about to be deleted). Only the owner may ask
    // for it; for anyone else's file (refused below anyway) the open is retried without.
    let file = match open(OFlags::NOATIME) {
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
            open(OFlags::empty())
        }
        other => other,
    };
    let mut file: File = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Gone),
        // ELOOP: it is a symlink.
        Err(e) if e.raw_os_error() == Some(40) => {
            return Err(OpenError::NotOurs("a symbolic link".into()))
        }
        Err(e) => return Err(OpenError::Io(e)),
    };
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotOurs("not a regular file".into()));
    }
    if meta.uid() != uid {
        return Err(OpenError::NotOurs(format!("owned by uid {}", meta.uid())));
    }
    if meta.len() > MAX_FILE {
        return Err(OpenError::TooLarge(meta.len()));
    }
    // One byte more than fstat says: a short read of a regular file is its end, so a file that
    // did not change is read with a single read(2); one that grew is read on to its end.
    let want = meta.len() as usize + 1;
    let mut bytes = vec![0u8; want];
    let got = loop {
        match file.read(&mut bytes) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OpenError::Io(e)),
        }
    };
    bytes.truncate(got);
    if got == want {
        file.take(MAX_FILE + 1 - got as u64)
            .read_to_end(&mut bytes)
            .map_err(OpenError::Io)?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(OpenError::TooLarge(bytes.len() as u64));
        }
    }
    Ok(Opened { bytes, meta })
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn our_names_carry_their_time() {
        assert_eq!(name_time("00000001700000000123456789-00000001"), None);
        assert_eq!(
            name_time("01700000000123456789-00000001"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(name_time("aB3dE9"), None);
        assert_eq!(name_time(&spool::file_name(3)).map(|n| n > 0), Some(true));
    }

    #[test]
    fn scan_orders_oldest_first_and_skips_what_is_not_ours() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        // A foreign (original-style) name with an old mtime sorts before our new names.
        let ours_a = spool::file_name(1);
        let ours_b = spool::file_name(2);
        fs::write(p.join(&ours_b), "b").unwrap();
        fs::write(p.join(&ours_a), "a").unwrap();
        fs::write(p.join("Xy12Ab"), "old").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(p.join("Xy12Ab"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        fs::write(p.join(".tmpfile"), "x").unwrap();
        fs::create_dir(p.join("subdir")).unwrap();
        symlink(p.join(&ours_a), p.join("link")).unwrap();
        let found = scan(p, uid()).unwrap();
        let names: Vec<String> = found.queue.iter().map(|k| k.name().into_owned()).collect();
        assert!(found.allocated > 0);
        assert_eq!(names, ["Xy12Ab".to_string(), ours_a.clone(), ours_b]);
        // Foreign owner: nothing is ours.
        assert!(scan(p, uid() + 1).unwrap().queue.is_empty());

        assert!(probe(p, ".tmpfile", uid()).is_none());
        assert!(probe(p, "link", uid()).is_none());
        assert!(probe(p, "subdir", uid()).is_none());
        assert_eq!(probe(p, &ours_a, uid()).unwrap().name(), ours_a);

        assert!(matches!(read(p, "link", uid()), Err(OpenError::NotOurs(_))));
        assert!(matches!(
            read(p, "subdir", uid()),
            Err(OpenError::NotOurs(_))
        ));
        assert!(matches!(read(p, "nothing", uid()), Err(OpenError::Gone)));
        assert!(matches!(
            read(p, &ours_a, uid() + 1),
            Err(OpenError::NotOurs(_))
        ));
        assert_eq!(read(p, &ours_a, uid()).unwrap().bytes, b"a");
        fs::write(p.join("big"), vec![b'x'; MAX_FILE as usize + 1]).unwrap();
        assert!(matches!(read(p, "big", uid()), Err(OpenError::TooLarge(_))));
    }

    #[test]
    fn keys_are_compact_and_order_like_names() {
        assert_eq!(std::mem::size_of::<Key>(), 32);
        let ours = spool::file_name(7);
        let k = Key::new(&ours, 5);
        assert_eq!(k.name(), ours);
        assert_eq!(Some(k.time()), name_time(&ours));
        // Same time: ours by sequence; ours against foreign by name, as strings compare.
        let a = Key::new("01700000000000000000-00000002", 0);
        let b = Key::new("01700000000000000000-00000010", 0);
        let foreign = Key::new("Xy12Ab", 1_700_000_000_000_000_000);
        assert!(a < b && b < foreign);
        assert_eq!(foreign.name(), "Xy12Ab");
        // A 29-character name that is not ours keeps its own name.
        let odd = Key::new("0170000000000000000x-00000001", 9);
        assert_eq!(
            (odd.time(), odd.name().as_ref()),
            (9, "0170000000000000000x-00000001")
        );
    }

    #[test]
    fn queue_keeps_oldest_first() {
        let k = |t: u128| Key::new(&format!("{t:020}-00000001"), 0);
        let mut q = Queue::from_keys(vec![k(5), k(1), k(3), k(1)]);
        assert_eq!(q.len(), 3);
        assert!(q.insert(k(9)));
        assert!(q.insert(k(2)));
        assert!(!q.insert(k(3)));
        let times: Vec<u128> = q.iter().map(Key::time).collect();
        assert_eq!(times, [1, 2, 3, 5, 9]);
        assert!(q.remove(&k(1)));
        assert!(q.remove(&k(5)));
        assert!(!q.remove(&k(5)));
        assert_eq!(q.first(), Some(&k(2)));
        assert!(q.contains(&k(9)) && !q.contains(&k(5)));
    }

    #[test]
    fn reads_whole_files_of_any_size() {
        let d = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 629, 4096, MAX_FILE as usize] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            fs::write(d.path().join("f"), &body).unwrap();
            assert_eq!(read(d.path(), "f", uid()).unwrap().bytes, body, "{len}");
        }
    }

    #[test]
    fn fifos_do_not_block() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(scan(d.path(), uid()).unwrap().queue.is_empty());
        assert!(matches!(
            read(d.path(), "fifo", uid()),
            Err(OpenError::NotOurs(_))
        ));
    }
}
