//! crashprobe's logic, testable without its binary: the privacy filters, flood control and the
//! payloads (flood control: docs/crashprobe.md).

use std::path::{Path, PathBuf};

use crate::state;

/// Classification of a symbolized crash.
pub const CLASS_CRASH: &str = "org.clearlinux/crash/clr";
/// Crash of a binary from a package build root (privacy filter).
pub const CLASS_BUILD: &str = "org.clearlinux/crash/clr-build";
/// Crash of a binary outside `/usr` or under `/usr/local` (privacy filter).
pub const CLASS_THIRD_PARTY: &str = "org.clearlinux/crash/unknown";
/// The core could not be read or unwound.
pub const CLASS_ERROR: &str = "org.clearlinux/crash/error";

/// Payload sent instead of a backtrace for a package-build crash.
pub const BUILD_PAYLOAD: &str = "Crash from Clear package build\n";
/// Payload sent instead of a backtrace for a third-party crash.
pub const THIRD_PARTY_PAYLOAD: &str = "Crash from third party\n";

/// Default flood-control window in seconds.
pub const DEFAULT_FLOOD_WINDOW: u64 = 60;

/// `%E` of core_pattern writes the path with `!` for `/`; this undoes it.
pub fn unescape_path(escaped: &str) -> String {
    escaped.replace('!', "/")
}

/// What the privacy filters make of an executable path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Under `/usr` (not `/usr/local`): report the backtrace.
    Distribution,
    /// A package build root: report only that it happened.
    PackageBuild,
    /// Anything else: report only that it happened.
    ThirdParty,
}

impl Origin {
    /// Classifies an executable path (already unescaped), as the original: the build root
    /// first, then "not under /usr/ or under /usr/local/".
    pub fn of(path: &str) -> Origin {
        if path.starts_with("/builddir/build/BUILD/") {
            Origin::PackageBuild
        } else if !path.starts_with("/usr/") || path.starts_with("/usr/local/") {
            Origin::ThirdParty
        } else {
            Origin::Distribution
        }
    }

    /// Severity, classification and fixed payload for a filtered crash; `None` for a
    /// distribution binary (whose backtrace is sent).
    pub fn filtered_record(self) -> Option<(u32, &'static str, &'static str)> {
        match self {
            Origin::Distribution => None,
            Origin::PackageBuild => Some((2, CLASS_BUILD, BUILD_PAYLOAD)),
            Origin::ThirdParty => Some((2, CLASS_THIRD_PARTY, THIRD_PARTY_PAYLOAD)),
        }
    }
}

/// The first lines of every crash payload.
pub fn header(process: &str, pid: Option<i32>, signal: Option<i32>) -> String {
    let mut h = format!("Process: {process}\n");
    if let Some(pid) = pid {
        h.push_str(&format!("PID: {pid}\n"));
    }
    if let Some(sig) = signal {
        h.push_str(&format!("Signal: {sig}\n"));
    }
    h
}

/// The backtrace payload; `suppressed` repeated crashes are noted after the header lines.
pub fn crash_payload(
    bt: &coredump::Backtrace,
    process: &str,
    signal: Option<i32>,
    suppressed: u64,
) -> String {
    let text = bt.payload(process, signal);
    if suppressed == 0 {
        return text;
    }
    // Header lines end at the first empty line (before the first "Backtrace (TID").
    let at = text.find("\n\n").map_or(text.len(), |i| i + 1);
    format!(
        "{}Repeated crashes suppressed: {suppressed}\n{}",
        &text[..at],
        &text[at..]
    )
}

/// The payload of an error record: the header lines and `Error: <message>`.
pub fn error_payload(process: &str, signal: Option<i32>, message: &str) -> String {
    format!("{}Error: {message}\n", header(process, None, signal))
}

/// Flood control: one report per executable per window; crashes in between are counted and
/// the count goes out with the next report.
///
/// State is one small file per executable in `<cache_dir>/crashprobe/`: `<last report time>
/// <suppressed count>`. Two crashes at the very same moment may both be reported (no lock):
/// flood control limits volume, it is not exact accounting.
#[derive(Debug, Clone)]
pub struct Flood {
    dir: PathBuf,
    window: u64,
}

/// What flood control decided for one crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Report it, mentioning this many suppressed crashes since the last report.
    Report { suppressed: u64 },
    /// Within the window of the last report: counted, not reported.
    Suppress { count: u64 },
}

impl Flood {
    /// Flood control with state in `dir` and a window of `window` seconds (0 disables it).
    pub fn new(dir: PathBuf, window: u64) -> Flood {
        Flood { dir, window }
    }

    /// The state directory below a cache directory.
    pub fn dir_in(cache_dir: &Path) -> PathBuf {
        cache_dir.join("crashprobe")
    }

    fn file(&self, executable: &str) -> PathBuf {
        // A stable, short, safe file name: FNV-1a of the path plus a readable tail.
        let hash = executable.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let tail: String = executable
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .take(40)
            .collect();
        self.dir.join(format!("{hash:016x}-{tail}"))
    }

    /// Decides for a crash of `executable` at `now` (seconds) and records the decision.
    /// State errors are returned; the caller then reports (better one too many than none).
    pub fn check(&self, executable: &str, now: u64) -> std::io::Result<Verdict> {
        if self.window == 0 {
            return Ok(Verdict::Report { suppressed: 0 });
        }
        let path = self.file(executable);
        let (last, count) = state::read(&path)?
            .and_then(|s| {
                let mut it = s.split_whitespace().map(str::parse::<u64>);
                Some((it.next()?.ok()?, it.next()?.ok()?))
            })
            .unwrap_or((0, 0));
        // A clock set back counts as outside the window.
        if last != 0 && now >= last && now - last < self.window {
            let count = count + 1;
            state::write(&path, &format!("{last} {count}\n"))?;
            return Ok(Verdict::Suppress { count });
        }
        state::write(&path, &format!("{now} 0\n"))?;
        Ok(Verdict::Report { suppressed: count })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn privacy_filters_classify_paths_as_the_original() {
        assert_eq!(Origin::of("/usr/bin/bash"), Origin::Distribution);
        assert_eq!(Origin::of("/usr/local/bin/x"), Origin::ThirdParty);
        assert_eq!(Origin::of("/opt/app/bin"), Origin::ThirdParty);
        assert_eq!(Origin::of("/home/u/a.out"), Origin::ThirdParty);
        assert_eq!(
            Origin::of(&unescape_path("!builddir!build!BUILD!x!a")),
            Origin::PackageBuild
        );
        assert_eq!(unescape_path("!usr!bin!bash"), "/usr/bin/bash");
    }

    #[test]
    fn suppressed_count_goes_after_the_header() {
        let bt = coredump::Backtrace {
            pid: 7,
            process_name: "x".into(),
            signal: Some(11),
            threads: vec![coredump::Thread {
                tid: 7,
                frames: vec![],
                truncated: false,
            }],
        };
        assert_eq!(
            crash_payload(&bt, "/usr/bin/x", Some(11), 3),
            "Process: /usr/bin/x\nPID: 7\nSignal: 11\nRepeated crashes suppressed: 3\n\n\
             Backtrace (TID 7):\n"
        );
        assert!(!crash_payload(&bt, "/usr/bin/x", None, 0).contains("Repeated"));
    }

    #[test]
    fn flood_window_counts_and_reports_the_count_later() {
        let dir = tempfile::tempdir().unwrap();
        let flood = Flood::new(dir.path().join("crashprobe"), 60);
        assert_eq!(
            flood.check("/usr/bin/a", 1000).unwrap(),
            Verdict::Report { suppressed: 0 }
        );
        assert_eq!(
            flood.check("/usr/bin/a", 1010).unwrap(),
            Verdict::Suppress { count: 1 }
        );
        assert_eq!(
            flood.check("/usr/bin/b", 1011).unwrap(),
            Verdict::Report { suppressed: 0 }
        );
        assert_eq!(
            flood.check("/usr/bin/a", 1059).unwrap(),
            Verdict::Suppress { count: 2 }
        );
        assert_eq!(
            flood.check("/usr/bin/a", 1060).unwrap(),
            Verdict::Report { suppressed: 2 }
        );
        assert_eq!(
            flood.check("/usr/bin/a", 1061).unwrap(),
            Verdict::Suppress { count: 1 }
        );
        // Clock set back: report.
        assert_eq!(
            flood.check("/usr/bin/a", 10).unwrap(),
            Verdict::Report { suppressed: 1 }
        );
        let off = Flood::new(dir.path().join("x"), 0);
        assert_eq!(
            off.check("/usr/bin/a", 1).unwrap(),
            Verdict::Report { suppressed: 0 }
        );
        assert_eq!(
            off.check("/usr/bin/a", 1).unwrap(),
            Verdict::Report { suppressed: 0 }
        );
    }
}
