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

use std::collections::BTreeSet;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::OFlags;
use telemetry::spool;

/// Largest spool file we read: a full record is well below this (8 KiB payload + headers).
pub const MAX_FILE: u64 = 64 * 1024;

/// A queued record: sort key (nanoseconds since the epoch) and file name.
pub type Key = (u128, String);

/// The pending records, oldest first.
pub type Queue = BTreeSet<Key>;

/// The sort key of a file: the creation time in its name when it is one of ours, else its mtime.
pub fn sort_key(name: &str, meta: &Metadata) -> Key {
    (
        name_time(name).unwrap_or_else(|| mtime_nanos(meta)),
        name.to_string(),
    )
}

/// Creation time encoded in our names (`00000001700000000123456789-00000001`).
pub fn name_time(name: &str) -> Option<u128> {
    let (nanos, seq) = name.split_once('-')?;
    let ours = nanos.len() == 20
        && seq.len() == 8
        && nanos.bytes().all(|b| b.is_ascii_digit())
        && seq.bytes().all(|b| b.is_ascii_digit());
    ours.then(|| nanos.parse().ok()).flatten()
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

/// One directory entry that is a candidate, with its allocated size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Sort key and name.
    pub key: Key,
    /// Allocated bytes (`st_blocks * 512`, as the original measured the spool).
    pub allocated: u64,
}

/// Lists the candidates, oldest first.
pub fn scan(dir: &Path, uid: u32) -> io::Result<Vec<Found>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // DirEntry::metadata does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if is_candidate(&name, &meta, uid) {
            out.push(Found {
                key: sort_key(&name, &meta),
                allocated: meta.blocks() * 512,
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
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
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32)
        .open(&path);
    let file: File = match file {
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
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(OpenError::Io)?;
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
        let names: Vec<String> = scan(p, uid())
            .unwrap()
            .into_iter()
            .map(|f| f.key.1)
            .collect();
        assert_eq!(names, ["Xy12Ab".to_string(), ours_a.clone(), ours_b]);
        // Foreign owner: nothing is ours.
        assert!(scan(p, uid() + 1).unwrap().is_empty());

        assert!(probe(p, ".tmpfile", uid()).is_none());
        assert!(probe(p, "link", uid()).is_none());
        assert!(probe(p, "subdir", uid()).is_none());
        assert_eq!(probe(p, &ours_a, uid()).unwrap().1, ours_a);

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
        assert!(scan(d.path(), uid()).unwrap().is_empty());
        assert!(matches!(
            read(d.path(), "fifo", uid()),
            Err(OpenError::NotOurs(_))
        ));
    }
}
