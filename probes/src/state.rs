//! Small state files of the probes (klogscanner's last sequence number, journalprobe's cursor,
//! pstoreprobe's list of handled dumps), kept in the configured `state_dir`. Written whole to a
//! temporary file and renamed, so a crash leaves the old or the new content, never a mix.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Reads a state file; `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces a state file's content atomically, creating its directory if needed.
pub fn write(path: &Path, content: &str) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "state file has no directory")
    })?;
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "state file has no name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Removes a state file; a missing file is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.state");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, "one").unwrap();
        write(&p, "two").unwrap();
        assert_eq!(read(&p).unwrap().as_deref(), Some("two"));
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
    }
}
