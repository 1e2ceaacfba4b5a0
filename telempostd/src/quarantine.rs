//! Moving files that are not records out of the way, never deleting them.
//!
//! A spool file that does not parse (after its grace time), is larger than any record, cannot
//! be read, or has a name that is not UTF-8 is renamed into `<spool_dir>/.quarantine/`: inside
//! the spool directory, so the rename stays on one file system and needs no permission
//! telempostd does not already have; a dot-name, so scans (ours and telemprobd's) skip it. A
//! wrong `spool_dir` pointing at someone's files so moves them aside instead of deleting them.
//! The directory holds at most [`MAX_FILES`] files; when it is full, further files stay where
//! they are and are skipped until the daemon restarts.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{RenameFlags, CWD};

/// The quarantine directory's name inside the spool directory.
pub const DIR_NAME: &str = ".quarantine";

/// Most files the quarantine directory holds.
pub const MAX_FILES: usize = 64;

/// Why a file could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// [`MAX_FILES`] are there already.
    #[error("the quarantine directory {} is full ({MAX_FILES} files)", .0.display())]
    Full(PathBuf),
    /// The directory is not ours to use (a symlink, a file, another owner).
    #[error("{} is not a directory of ours", .0.display())]
    NotOurs(PathBuf),
    /// The rename or the directory failed.
    #[error("cannot move to quarantine: {0}")]
    Io(#[from] io::Error),
}

/// The quarantine directory of a spool directory.
pub fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join(DIR_NAME)
}

/// Renames `spool_dir/name` into the quarantine directory (created if missing), under the same
/// name or, if taken, with `.1`, `.2`, … appended; never over an existing file. Returns where it
/// went.
pub fn move_aside(spool_dir: &Path, name: &OsStr, uid: u32) -> Result<PathBuf, Error> {
    let qdir = dir(spool_dir);
    match fs::DirBuilder::new().mode(0o700).create(&qdir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    // lstat: a symlink here is not followed, not used.
    let meta = fs::symlink_metadata(&qdir)?;
    if !meta.file_type().is_dir() || meta.uid() != uid {
        return Err(Error::NotOurs(qdir));
    }
    if fs::read_dir(&qdir)?.take(MAX_FILES).count() >= MAX_FILES {
        return Err(Error::Full(qdir));
    }
    let from = spool_dir.join(name);
    for n in 0..MAX_FILES * 2 {
        let mut target = OsString::from(name);
        if n > 0 {
            target.push(format!(".{n}"));
        }
        let to = qdir.join(&target);
        match rustix::fs::renameat_with(CWD, &from, CWD, &to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(to),
            Err(rustix::io::Errno::EXIST) => continue,
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
    Err(Error::Full(qdir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn moves_never_overwrite_and_the_directory_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("a"), "1").unwrap();
        let to = move_aside(p, OsStr::new("a"), uid()).unwrap();
        assert_eq!(to, p.join(".quarantine/a"));
        fs::write(p.join("a"), "2").unwrap();
        let to = move_aside(p, OsStr::new("a"), uid()).unwrap();
        assert_eq!(to, p.join(".quarantine/a.1"));
        assert_eq!(fs::read(p.join(".quarantine/a")).unwrap(), b"1");
        assert!(!p.join("a").exists());
        for i in 2..MAX_FILES {
            fs::write(p.join(format!("f{i}")), "x").unwrap();
            move_aside(p, OsStr::new(&format!("f{i}")), uid()).unwrap();
        }
        fs::write(p.join("last"), "x").unwrap();
        assert!(matches!(
            move_aside(p, OsStr::new("last"), uid()),
            Err(Error::Full(_))
        ));
        assert!(p.join("last").exists(), "left in place when full");
    }

    #[test]
    fn a_symlinked_quarantine_directory_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("spool");
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir_all(&p).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, p.join(DIR_NAME)).unwrap();
        fs::write(p.join("a"), "1").unwrap();
        assert!(matches!(
            move_aside(&p, OsStr::new("a"), uid()),
            Err(Error::NotOurs(_))
        ));
        assert!(p.join("a").exists());
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
