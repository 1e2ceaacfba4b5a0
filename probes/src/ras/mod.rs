//! rasprobe's logic: machine checks, memory controller (EDAC) and PCIe AER errors from the
//! kernel's RAS tracepoints, and CPU thermal throttling, turned into records.
//!
//! - [`format`]: a tracepoint's `format` file; [`text`]: one `trace_pipe` line decoded by it;
//!   [`raw`]: the binary `trace_pipe_raw` pages decoded by it (kernels before 6.8).
//! - [`mce`]: machine check classes from MCi_STATUS and the mcelog-style report.
//! - [`memory`]: EDAC memory errors and PCIe AER errors.
//! - [`thermal`]: the CPU throttling counters.
//! - [`storm`]: flood control (one record per source and window, with the count).
//! - [`tracefs`]: finding tracefs, our tracing instance, reading its `trace_pipe`.

pub mod format;
pub mod mce;
pub mod memory;
pub mod raw;
pub mod storm;
pub mod text;
pub mod thermal;
pub mod tracefs;

use std::path::{Path, PathBuf};

use format::Format;
use storm::Report;
use text::Event;

/// The tracepoints rasprobe reads: (system, event).
pub const EVENTS: [(&str, &str); 3] = [
    ("mce", "mce_record"),
    ("ras", "mc_event"),
    ("ras", "aer_event"),
];

/// What can go wrong reading tracefs or format files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RasError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: format::FormatError,
    },
    /// `events/header_page` does not describe a page rasprobe can read.
    #[error("{}: {source}", path.display())]
    HeaderPage {
        path: PathBuf,
        #[source]
        source: raw::RawError,
    },
    /// Something other than our directory is in the instance's place.
    #[error("{}: exists and is not a directory; not touching it", .0.display())]
    NotOurs(PathBuf),
}

impl RasError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> RasError {
        RasError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The format files of the [`EVENTS`] present below `events_dir` (`<system>/<event>/format`).
/// Events the kernel lacks are left out; a format file that exists but does not parse is an
/// error.
pub fn load_formats(events_dir: &Path) -> Result<Vec<Format>, RasError> {
    let mut out = Vec::new();
    for (system, event) in EVENTS {
        let path = events_dir.join(system).join(event).join("format");
        if path.exists() {
            out.push(Format::read(&path)?);
        }
    }
    Ok(out)
}

/// What an event reports; `None` for one that reports nothing (a machine check whose VAL bit is
/// clear, an event of another name).
pub fn report(event: &Event) -> Option<Report> {
    match event.name.as_str() {
        "mce_record" => {
            let status = event.u64("status")?;
            let class = mce::classify(status)?;
            let socket = event.u64("socketid").unwrap_or(0);
            let bank = event.u64("bank").unwrap_or(0);
            Some(Report {
                classification: class.classification(),
                severity: class.severity(),
                source: format!("socket {socket} bank {bank}"),
                text: mce::report(event, class),
                count: 1,
            })
        }
        "mc_event" => {
            let (classification, severity) = memory::mc_class(event.u64("error_type")?);
            Some(Report {
                classification,
                severity,
                source: format!("DIMM {}", memory::dimm(event)),
                text: memory::mc_report(event),
                // An event may stand for several errors; a count of 0 is still one event.
                count: event.u64("error_count").unwrap_or(1).max(1),
            })
        }
        "aer_event" => {
            let (classification, severity) = memory::aer_class(event.u64("severity")?);
            Some(Report {
                classification,
                severity,
                source: format!("device {}", event.str("dev_name").unwrap_or("?")),
                text: memory::aer_report(event),
                count: 1,
            })
        }
        _ => None,
    }
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, proleptic Gregorian).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_733_563_845), "2024-12-07 09:30:45 UTC");
        // A hostile walltime does not panic.
        let _ = utc(u64::MAX);
    }
}
