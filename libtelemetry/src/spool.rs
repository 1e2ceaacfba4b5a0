//! The spool record file: the original's text layout, shared by telemprobd (writer) and
//! telempostd (reader), so files left by the original daemons are delivered by ours.
//!
//! ```text
//! [CFG:<absolute config path>\n]
//! record_format_version: 4\n   … the 15 header lines …   event_id: <id>\n
//! <payload>\n                   (the writer always appends one LF; the reader removes it)
//! ```
//!
//! Names: a record is written to a dot-file and renamed to its final name, which sorts in
//! creation order; readers skip dot-files.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::frame::MAX_CFG_PATH;
use crate::record::{parse_header_line, Record, HEADER_COUNT, HEADER_NAMES};

/// One record as stored in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Config file the sender asked for, if any.
    pub cfg: Option<PathBuf>,
    /// The record.
    pub record: Record,
}

/// Serialises a record to the spool text format.
pub fn encode(record: &Record, cfg: Option<&Path>) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.header_block_len() + record.payload().len() + 64);
    if let Some(c) = cfg {
        out.extend_from_slice(b"CFG:");
        out.extend_from_slice(c.as_os_str().as_encoded_bytes());
        out.push(b'\n');
    }
    record.write_header_block(&mut out);
    out.extend_from_slice(record.payload());
    out.push(b'\n');
    out
}

/// Parses a spool file. Truncated or foreign content is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<SpoolRecord> {
    let bad = |why: String| Error::Spool(why);
    let mut rest = bytes;
    let mut cfg = None;
    if let Some(after) = rest.strip_prefix(b"CFG:") {
        let end = after
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("CFG: line has no end".into()))?;
        let path = std::str::from_utf8(&after[..end])
            .ok()
            .filter(|p| p.starts_with('/') && p.len() <= MAX_CFG_PATH && !p.contains('\0'))
            .ok_or_else(|| bad("CFG: line is not an absolute UTF-8 path".into()))?;
        cfg = Some(PathBuf::from(path));
        rest = &after[end + 1..];
    }
    let mut values: [String; HEADER_COUNT] = Default::default();
    for (i, name) in HEADER_NAMES.iter().enumerate() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad(format!("ends before header {name:?}")))?;
        let line = std::str::from_utf8(&rest[..end])
            .map_err(|_| bad(format!("header {name:?} is not UTF-8")))?;
        values[i] = parse_header_line(line, name)
            .map_err(|e| bad(e.to_string()))?
            .to_string();
        rest = &rest[end + 1..];
    }
    let payload = rest.strip_suffix(b"\n").ok_or_else(|| {
        bad("body is missing or does not end with a line feed (truncated?)".into())
    })?;
    let record = Record::from_parts(values, payload.to_vec())?;
    Ok(SpoolRecord { cfg, record })
}

/// True for names readers must skip: temporary files being written, and `.`/`..`.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
}

/// A final file name that sorts in creation order: nanoseconds since the epoch, then a sequence
/// number for records created within the same nanosecond.
pub fn file_name(seq: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:020}-{seq:08}")
}

/// The temporary dot-file a record is written to before it is renamed to `name`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.tmp")
}

/// The unit the spool quota is counted in: a file costs its size rounded up to a whole 4 KiB
/// block, the usual filesystem block and page size.
pub const QUOTA_BLOCK: u64 = 4096;

/// What one spool file of `size` bytes counts against `spool_max_size`: its size rounded up to a
/// whole [`QUOTA_BLOCK`]. Both daemons measure the spool with this one function, telemprobd before
/// it writes a record and telempostd from `st_size`, so they always agree; it is computed from the
/// size rather than read from `st_blocks`, which differs between filesystems (tmpfs, btrfs
/// inlining, delayed allocation) and cannot be known before the file is written. A 600-byte record
/// takes a 4 KiB block on ext4, so counting plain sizes let telemprobd accept 7 times more than
/// the quota telempostd then enforced.
pub fn quota_cost(size: u64) -> u64 {
    size.div_ceil(QUOTA_BLOCK)
        .max(1)
        .saturating_mul(QUOTA_BLOCK)
}

/// The spool quota (`spool_max_size`), with its two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `spool_max_size` in bytes.
    bytes: u64,
}

impl Quota {
    /// From `spool_max_size` (KiB; `None` = unlimited).
    pub fn from_kib(kib: Option<u64>) -> Option<Quota> {
        kib.map(|k| Quota {
            bytes: k.saturating_mul(1024),
        })
    }

    /// telemprobd accepts a record only while the spool's [`quota_cost`] total, the record
    /// included, stays at or below this: `spool_max_size` itself.
    pub fn admission_limit(self) -> u64 {
        self.bytes
    }

    /// telempostd drops the oldest records only while the total is above this: the admission
    /// limit plus an eighth. With the configuration unchanged the spool never gets there from
    /// telemprobd's records (both count the same files the same way); only a lowered quota or
    /// files from elsewhere do.
    pub fn drop_limit(self) -> u64 {
        self.bytes.saturating_add(self.bytes / 8)
    }
}

/// One record file in the spool, as listed by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time.
    pub modified: SystemTime,
}

/// Lists the record files of a spool directory: regular, non-temporary files only (symlinks and
/// other types are not followed and not listed), oldest first (by modification time, then name).
pub fn scan(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_temporary(&name) {
            continue;
        }
        // DirEntry::metadata does not follow symlinks.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.file_type().is_file() {
            continue;
        }
        out.push(Entry {
            name,
            size: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
        });
    }
    out.sort_by(|a, b| {
        a.modified
            .cmp(&b.modified)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// The spool's total by [`quota_cost`], over the files [`scan`] lists.
pub fn quota_used(entries: &[Entry]) -> u64 {
    entries
        .iter()
        .map(|e| quota_cost(e.size))
        .fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quota_cost_is_the_size_in_whole_blocks() {
        assert_eq!(quota_cost(0), 4096);
        assert_eq!(quota_cost(1), 4096);
        assert_eq!(quota_cost(600), 4096);
        assert_eq!(quota_cost(4096), 4096);
        assert_eq!(quota_cost(4097), 8192);
        assert_eq!(quota_cost(u64::MAX), u64::MAX);
    }

    #[test]
    fn admission_sits_below_the_drop_limit() {
        assert_eq!(Quota::from_kib(None), None);
        for kib in [1, 4, 64, 5120, u64::MAX / 2048] {
            let q = Quota::from_kib(Some(kib)).unwrap();
            assert!(q.admission_limit() < q.drop_limit(), "{kib}");
        }
        let q = Quota::from_kib(Some(5120)).unwrap();
        assert_eq!(q.admission_limit(), 5120 * 1024);
        assert_eq!(q.drop_limit(), 5120 * 1024 + 640 * 1024);
    }

    #[test]
    fn scan_lists_only_record_files_oldest_first() {
        let d = tempfile::tempdir().unwrap();
        let a = file_name(1);
        let b = file_name(2);
        std::fs::write(d.path().join(&b), "b").unwrap();
        std::fs::write(d.path().join(&a), "aa").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(d.path().join(&b))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::write(d.path().join(temp_name(&a)), "tmp").unwrap();
        std::fs::create_dir(d.path().join("subdir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let names: Vec<String> = scan(d.path())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, [b, a]);
    }

    const ORIGINAL_FILE: &str = "record_format_version: 4
classification: org.clearlinux/hello/world
severity: 1
machine_id: 0123456789abcdef0123456789abcdef
creation_timestamp: 1700000000
arch: x86_64
host_type: QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2
build: 40000
kernel_version: 6.1.0-13-amd64
payload_format_version: 1
system_name: clear-linux-os
board_name: no_bn_file|no_bv_file
cpu_model: Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz
bios_version: 1.16.0-debian-1.16.0-5
event_id: 3a2d799826edc6266d72824d2aac6763
hello
";

    #[test]
    fn reads_a_file_in_the_original_layout() {
        let s = decode(ORIGINAL_FILE.as_bytes()).unwrap();
        assert_eq!(s.cfg, None);
        assert_eq!(s.record.payload(), b"hello");
        assert_eq!(
            s.record.values()[12],
            "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz"
        );
        s.record.validate().unwrap();
        assert_eq!(encode(&s.record, None), ORIGINAL_FILE.as_bytes());

        let with_cfg = format!("CFG:/etc/telemetrics/other.conf\n{ORIGINAL_FILE}");
        let s = decode(with_cfg.as_bytes()).unwrap();
        assert_eq!(
            s.cfg.as_deref(),
            Some(Path::new("/etc/telemetrics/other.conf"))
        );
        assert_eq!(encode(&s.record, s.cfg.as_deref()), with_cfg.as_bytes());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let no_body = ORIGINAL_FILE.strip_suffix("hello\n").unwrap();
        for bad in [
            "",
            "garbage",
            no_body,
            &ORIGINAL_FILE.replace("severity", "sevxrity"),
            &ORIGINAL_FILE[..100],
            "CFG:relative\n",
            "CFG:/no/newline",
            ORIGINAL_FILE.strip_suffix('\n').unwrap(),
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_sort_in_creation_order_and_temps_are_dotfiles() {
        let names: Vec<String> = (0..100).map(file_name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(is_temporary(&temp_name(&names[0])));
        assert!(!is_temporary(&names[0]));
    }

    prop_compose! {
        fn arb_record()(vals in proptest::array::uniform15("[^\n\r\0]{0,40}"),
                        payload in proptest::collection::vec(any::<u8>(), 0..400)) -> Record {
            Record::from_parts(vals, payload).unwrap()
        }
    }

    proptest! {
        #[test]
        fn spool_round_trips(r in arb_record(), cfg in proptest::option::of("/[a-z./]{1,30}")) {
            let cfg = cfg.map(PathBuf::from);
            let s = decode(&encode(&r, cfg.as_deref())).unwrap();
            prop_assert_eq!(s.record, r);
            prop_assert_eq!(s.cfg, cfg);
        }

        #[test]
        fn random_spool_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode(&bytes);
        }
    }
}
