//! Daemon status files: how telemprobd and telempostd tell `telemctl status` what they did.
//!
//! Each daemon rewrites `<state_dir>/<daemon>.status` (temp file + rename, so a reader never sees
//! half a file) when its figures change and at exit. The format is `key=value` lines:
//!
//! ```text
//! pid=1234
//! started=1700000000
//! updated=1700000100
//! last_delivery=1700000090
//! last_error=collector answered 503
//! last_error_at=1700000095
//! counter.received=10
//! counter.rejected=1
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};

/// What one daemon reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonStatus {
    /// Process id of the daemon.
    pub pid: u32,
    /// Start time, seconds since the epoch.
    pub started: u64,
    /// Time of this report, seconds since the epoch.
    pub updated: u64,
    /// Time of the last successful delivery (telempostd).
    pub last_delivery: Option<u64>,
    /// The last error, in words.
    pub last_error: Option<String>,
    /// When the last error happened, seconds since the epoch (absent in files of older
    /// daemons: the report's time is the best guess then).
    pub last_error_at: Option<u64>,
    /// Named counters (received, rejected, stored, delivered, retried, expired, dropped, ...).
    pub counters: BTreeMap<String, u64>,
}

/// The status file of `daemon` (e.g. "telemprobd").
pub fn path(config: &Config, daemon: &str) -> PathBuf {
    config.state_dir.join(format!("{daemon}.status"))
}

impl DaemonStatus {
    /// Serialises to the `key=value` text.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "pid={}\nstarted={}\nupdated={}\n",
            self.pid, self.started, self.updated
        );
        if let Some(t) = self.last_delivery {
            s.push_str(&format!("last_delivery={t}\n"));
        }
        if let Some(e) = &self.last_error {
            let one_line: String = e
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            s.push_str(&format!("last_error={one_line}\n"));
        }
        if let Some(t) = self.last_error_at {
            s.push_str(&format!("last_error_at={t}\n"));
        }
        for (k, v) in &self.counters {
            s.push_str(&format!("counter.{k}={v}\n"));
        }
        s
    }

    /// Parses the `key=value` text; unknown keys are ignored so newer daemons can add some.
    pub fn from_text(text: &str) -> Result<DaemonStatus> {
        let mut st = DaemonStatus::default();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| {
                Error::invalid("status file", format!("line {} has no '='", n + 1))
            })?;
            let num = || {
                v.parse::<u64>().map_err(|_| {
                    Error::invalid(
                        "status file",
                        format!("line {}: {v:?} is not a number", n + 1),
                    )
                })
            };
            match k {
                "pid" => st.pid = num()? as u32,
                "started" => st.started = num()?,
                "updated" => st.updated = num()?,
                "last_delivery" => st.last_delivery = Some(num()?),
                "last_error" => st.last_error = Some(v.to_string()),
                "last_error_at" => st.last_error_at = Some(num()?),
                _ => {
                    if let Some(name) = k.strip_prefix("counter.") {
                        st.counters.insert(name.to_string(), num()?);
                    }
                }
            }
        }
        Ok(st)
    }
}

/// Writes the status atomically.
pub fn write(file: &Path, status: &DaemonStatus) -> Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| -> io::Result<()> {
        // 0644 whatever the daemon's umask: `telemctl status` is for any user to run.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        f.write_all(status.to_text().as_bytes())?;
        fs::rename(&tmp, file)
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("writing {}", file.display()), e)
    })
}

/// Reads a status file; `Ok(None)` when it does not exist.
pub fn read(file: &Path) -> Result<Option<DaemonStatus>> {
    match fs::read_to_string(file) {
        Ok(t) => DaemonStatus::from_text(&t).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", file.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_atomic_write() {
        let d = tempfile::tempdir().unwrap();
        let mut st = DaemonStatus {
            pid: 7,
            started: 1,
            updated: 2,
            last_delivery: Some(3),
            last_error: Some("bad\nthing".into()),
            last_error_at: Some(4),
            ..Default::default()
        };
        st.counters.insert("received".into(), 10);
        let f = d.path().join("telemprobd.status");
        write(&f, &st).unwrap();
        let back = read(&f).unwrap().unwrap();
        assert_eq!(back.last_error.as_deref(), Some("bad thing"));
        assert_eq!(back.last_error_at, Some(4));
        assert_eq!(back.last_delivery, Some(3));
        assert_eq!(back.counters["received"], 10);
        assert_eq!(back.pid, 7);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(read(&d.path().join("none")).unwrap(), None);
        assert!(DaemonStatus::from_text("pid=x\n").is_err());
    }
}
