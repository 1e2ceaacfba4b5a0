//! The machine id telemprobd substitutes into every record: a random 32-hex-digit id kept in
//! `machine_id_file` and replaced after three days, unless the administrator set a static id.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::record::new_event_id;

/// Age after which the id is replaced (the original's `TM_MACHINE_ID_EXPIRY`).
pub const ROTATION: Duration = Duration::from_secs(3 * 24 * 3600);
/// Longest id used from either file.
pub const MAX_LEN: usize = 32;

fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn read_prefix(path: &Path, max: usize) -> io::Result<String> {
    let mut buf = Vec::with_capacity(max);
    open_nofollow(path)?
        .take(max as u64)
        .read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The id in `path`: its first whitespace-separated word, at most 32 characters.
pub fn read(path: &Path) -> Option<String> {
    let text = read_prefix(path, 256).ok()?;
    let word: String = text
        .split_whitespace()
        .next()?
        .chars()
        .take(MAX_LEN)
        .collect();
    Some(word)
}

/// The static override: the file's first line, at most 32 bytes; an empty line means no override.
pub fn read_static(path: &Path) -> Option<String> {
    let text = read_prefix(path, MAX_LEN).ok()?;
    let line: String = text
        .split('\n')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let line = line.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// Creates the id file if it is missing and replaces the id if it is older than [`ROTATION`].
/// The new id is written to a temporary file and renamed into place, so readers never see a
/// half-written id. Returns the current id.
pub fn ensure(path: &Path, now: SystemTime) -> Result<String> {
    let fresh = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => m
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_none_or(|age| age < ROTATION),
        Ok(_) => {
            return Err(Error::io(
                format!("{} is not a regular file", path.display()),
                io::Error::from_raw_os_error(crate::error::libc_errno::EINVAL),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(format!("checking {}", path.display()), e)),
    };
    if fresh {
        if let Some(id) = read(path) {
            return Ok(id);
        }
    }
    let id = new_event_id()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".machine_id.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("writing machine id {}", path.display()), e)
    })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_kept_and_rotated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("machine_id");
        let now = SystemTime::now();
        let a = ensure(&p, now).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(read(&p).as_deref(), Some(a.as_str()));
        assert_eq!(ensure(&p, now + Duration::from_secs(3600)).unwrap(), a);
        let b = ensure(&p, now + ROTATION + Duration::from_secs(1)).unwrap();
        assert_ne!(a, b);
        assert_eq!(read(&p).as_deref(), Some(b.as_str()));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp left"
        );
    }

    #[test]
    fn symlinked_id_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let p = d.path().join("machine_id");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(ensure(&p, SystemTime::now()).is_err());
        assert_eq!(read(&p), None);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");
    }

    #[test]
    fn static_override_rules() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("static");
        assert_eq!(read_static(&p), None);
        std::fs::write(&p, "my-laptop\nmore").unwrap();
        assert_eq!(read_static(&p).as_deref(), Some("my-laptop"));
        std::fs::write(&p, "\nnot this").unwrap();
        assert_eq!(read_static(&p), None);
        std::fs::write(&p, "x".repeat(50)).unwrap();
        assert_eq!(read_static(&p).unwrap().len(), 32);
    }
}
