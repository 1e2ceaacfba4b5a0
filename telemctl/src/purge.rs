//! Deleting collected data at opt-out: only the contents of our own directories, never
//! following a symlink (a link is removed, never its target), never the directories themselves.

use std::fs;
use std::io;
use std::path::Path;

/// What a purge removed.
#[derive(Debug, Default)]
pub struct Purged {
    pub entries: usize,
    pub problems: Vec<String>,
}

/// Removes everything inside `dir`. A missing directory is fine; a `dir` that is itself a
/// symlink or not a directory is left alone and reported.
pub fn contents(dir: &Path, purged: &mut Purged) {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            purged.problems.push(format!("{}: {e}", dir.display()));
            return;
        }
        Ok(m) if !m.file_type().is_dir() => {
            purged.problems.push(format!(
                "{}: not a directory (a symlink?); left alone",
                dir.display()
            ));
            return;
        }
        Ok(_) => {}
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            purged.problems.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        // DirEntry::file_type does not follow symlinks; remove_dir_all does not either.
        let res = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => purged.entries += 1,
            Err(e) => purged.problems.push(format!("{}: {e}", path.display())),
        }
    }
}

/// Removes one file (or symlink) if it exists.
pub fn file(path: &Path, purged: &mut Purged) {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_dir() => match fs::remove_file(path) {
            Ok(()) => purged.entries += 1,
            Err(e) => purged.problems.push(format!("{}: {e}", path.display())),
        },
        _ => {}
    }
}
