//! klogscanner's input: `/dev/kmsg` records, the resume point kept across restarts, and the
//! container check.
//!
//! A `/dev/kmsg` record is `pri,seq,ts_usec,flags[,…];message`, followed by dictionary lines
//! that start with a space. Unlike the original's destructive `klogctl` read, reading
//! `/dev/kmsg` takes nothing away from other readers; so that a restart does not report the
//! same oops again, klogscanner keeps `<state_dir>/klogscanner.seq` = the boot id and the first
//! sequence number not yet fully handled (the first line of an oops still being collected, so
//! a restart collects it again from its start).

use std::path::Path;

/// Where the kernel log is read from by default.
pub const DEV_KMSG: &str = "/dev/kmsg";

/// Name of the resume file in `state_dir`.
pub const SEQ_FILE: &str = "klogscanner.seq";

/// Where the current boot id is read from.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// One `/dev/kmsg` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Syslog facility (0 = kernel).
    pub facility: u32,
    /// Log level (0 = emergency … 7 = debug).
    pub level: u32,
    /// Sequence number, increasing by one per record within a boot.
    pub seq: u64,
    /// The message text (non-printable bytes are escaped by the kernel as `\xNN`).
    pub message: &'a str,
}

/// Parses one record line (without its `\n`). `None` for dictionary lines (they start with a
/// space) and for anything malformed.
pub fn parse_record(line: &str) -> Option<Record<'_>> {
    if line.starts_with(' ') {
        return None;
    }
    let (prefix, message) = line.split_once(';')?;
    let mut fields = prefix.split(',');
    let pri: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let _timestamp: u64 = fields.next()?.parse().ok()?;
    Some(Record {
        facility: pri >> 3,
        level: pri & 7,
        seq,
        message,
    })
}

/// Where to resume reading after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The boot the sequence number belongs to (numbers start again at each boot).
    pub boot_id: String,
    /// First sequence number not yet fully handled.
    pub next_seq: u64,
}

impl Resume {
    /// Parses the state file content `<boot id> <seq>`.
    pub fn parse(text: &str) -> Option<Resume> {
        let mut words = text.split_whitespace();
        let boot_id = words.next()?.to_string();
        let next_seq = words.next()?.parse().ok()?;
        Some(Resume { boot_id, next_seq })
    }

    /// The state file content.
    pub fn render(&self) -> String {
        format!("{} {}\n", self.boot_id, self.next_seq)
    }

    /// Records of `boot_id` below this point were handled before.
    pub fn skips(&self, boot_id: &str, seq: u64) -> bool {
        self.boot_id == boot_id && seq < self.next_seq
    }
}

/// The current boot id, or `unknown` when it cannot be read (then resuming never skips).
pub fn current_boot_id() -> String {
    std::fs::read_to_string(BOOT_ID_FILE)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Why we think we run in a container, if we do: the kernel log then belongs to the host.
pub fn container_reason() -> Option<String> {
    if let Some(v) = std::env::var_os("container") {
        return Some(format!(
            "environment variable container={}",
            v.to_string_lossy()
        ));
    }
    ["/run/.containerenv", "/.dockerenv"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| format!("{p} exists"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_records() {
        let r = parse_record("4,1234,5140900,-;WARNING: CPU: 0 PID: 1 at x").unwrap_or_else(|| {
            panic!("record not parsed");
        });
        assert_eq!(
            r,
            Record {
                facility: 0,
                level: 4,
                seq: 1234,
                message: "WARNING: CPU: 0 PID: 1 at x"
            }
        );
        let r = parse_record("30,7,1,c,caller=T1;systemd[1]: a;b").unwrap_or_else(|| {
            panic!("record not parsed");
        });
        assert_eq!(
            (r.facility, r.level, r.seq, r.message),
            (3, 6, 7, "systemd[1]: a;b")
        );
        let r = parse_record("6,8,1,-; [<ffff>] frame+0x1/0x2").unwrap_or_else(|| {
            panic!("record not parsed");
        });
        assert_eq!(r.message, " [<ffff>] frame+0x1/0x2");
        assert_eq!(parse_record(" SUBSYSTEM=pci"), None);
        assert_eq!(parse_record("no semicolon"), None);
        assert_eq!(parse_record("x,1,2,-;m"), None);
        assert_eq!(parse_record("6,1;m"), None);
    }

    #[test]
    fn resume_point() {
        let r = Resume::parse("abc 42\n").unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(r.render(), "abc 42\n");
        assert!(r.skips("abc", 41));
        assert!(!r.skips("abc", 42));
        assert!(!r.skips("other-boot", 1));
        assert_eq!(Resume::parse("abc"), None);
        assert_eq!(Resume::parse("abc x"), None);
    }
}
