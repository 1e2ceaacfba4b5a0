//! The record model: the 15 headers of record format 4, in their fixed order, and a payload.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::sysinfo::SysInfo;
use crate::validate;

/// Record format written into every record.
pub const RECORD_FORMAT_VERSION: u32 = 4;
/// What the library puts in `machine_id`; telemprobd substitutes the real id.
pub const MACHINE_ID_PLACEHOLDER: &str = "FFFFFFFF";
/// Largest payload, in bytes, accepted by the library, the CLI and the daemon alike.
pub const MAX_PAYLOAD: usize = 8192;
/// Number of headers in record format 4.
pub const HEADER_COUNT: usize = 15;

/// Header names in wire order. Both daemons check them positionally.
pub const HEADER_NAMES: [&str; HEADER_COUNT] = [
    "record_format_version",
    "classification",
    "severity",
    "machine_id",
    "creation_timestamp",
    "arch",
    "host_type",
    "build",
    "kernel_version",
    "payload_format_version",
    "system_name",
    "board_name",
    "cpu_model",
    "bios_version",
    "event_id",
];

/// A header, by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Header {
    RecordFormatVersion = 0,
    Classification,
    Severity,
    MachineId,
    CreationTimestamp,
    Arch,
    HostType,
    Build,
    KernelVersion,
    PayloadFormatVersion,
    SystemName,
    BoardName,
    CpuModel,
    BiosVersion,
    EventId,
}

impl Header {
    /// The header's name as written on the wire and in spool files.
    pub fn name(self) -> &'static str {
        HEADER_NAMES[self as usize]
    }
}

/// One telemetry record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    values: [String; HEADER_COUNT],
    payload: Vec<u8>,
}

impl Record {
    /// Creates a record with fresh headers: clamped severity, validated classification, the
    /// placeholder machine id, the current time, system facts from `sys`, and a random event id.
    pub fn new(
        severity: u32,
        classification: &str,
        payload_version: u32,
        sys: &SysInfo,
    ) -> Result<Record> {
        validate::classification(classification)?;
        let values = [
            RECORD_FORMAT_VERSION.to_string(),
            classification.to_string(),
            validate::clamp_severity(severity).to_string(),
            MACHINE_ID_PLACEHOLDER.to_string(),
            now_secs().to_string(),
            sys.arch.clone(),
            sys.host_type.clone(),
            sys.build.clone(),
            sys.kernel_version.clone(),
            payload_version.to_string(),
            sys.system_name.clone(),
            sys.board_name.clone(),
            sys.cpu_model.clone(),
            sys.bios_version.clone(),
            new_event_id()?,
        ];
        Ok(Record {
            values,
            payload: Vec::new(),
        })
    }

    /// Builds a record from already-split header values and a payload, checking only what the
    /// line-based formats need (no line breaks in values). Use [`Record::validate`] for the rest.
    pub fn from_parts(values: [String; HEADER_COUNT], payload: Vec<u8>) -> Result<Record> {
        for (i, v) in values.iter().enumerate() {
            if v.contains(['\n', '\0']) {
                return Err(Error::invalid(
                    HEADER_NAMES[i],
                    "line break or NUL in header value",
                ));
            }
        }
        Ok(Record { values, payload })
    }

    /// The value of one header.
    pub fn get(&self, h: Header) -> &str {
        &self.values[h as usize]
    }

    /// All 15 values in wire order.
    pub fn values(&self) -> &[String; HEADER_COUNT] {
        &self.values
    }

    /// The payload bytes (text once validated).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Replaces the payload after validating it (size, UTF-8, no control characters).
    pub fn set_payload(&mut self, payload: &[u8]) -> Result<()> {
        validate::payload(payload)?;
        self.payload = payload.to_vec();
        Ok(())
    }

    /// Replaces the event id after validating it.
    pub fn set_event_id(&mut self, id: &str) -> Result<()> {
        validate::event_id(id)?;
        self.values[Header::EventId as usize] = id.to_string();
        Ok(())
    }

    /// Replaces the machine id (telemprobd does this for every record).
    pub fn set_machine_id(&mut self, id: &str) -> Result<()> {
        validate::header_value("machine_id", id)?;
        self.values[Header::MachineId as usize] = id.to_string();
        Ok(())
    }

    /// Creation time in seconds since the epoch, if the header holds a number.
    pub fn creation_timestamp(&self) -> Option<u64> {
        self.get(Header::CreationTimestamp).parse().ok()
    }

    /// Full validation of a record that came from outside (a frame or a spool file).
    pub fn validate(&self) -> Result<()> {
        if self.get(Header::RecordFormatVersion) != "4" {
            return Err(Error::invalid(
                "record_format_version",
                format!("{:?} is not 4", self.get(Header::RecordFormatVersion)),
            ));
        }
        validate::classification(self.get(Header::Classification))?;
        if !matches!(self.get(Header::Severity), "1" | "2" | "3" | "4") {
            return Err(Error::invalid(
                "severity",
                format!("{:?} is not 1 to 4", self.get(Header::Severity)),
            ));
        }
        for h in [Header::CreationTimestamp, Header::PayloadFormatVersion] {
            let v = self.get(h);
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 20 {
                return Err(Error::invalid(
                    h.name(),
                    format!("{v:?} is not a decimal number"),
                ));
            }
        }
        validate::event_id(self.get(Header::EventId))?;
        for (i, v) in self.values.iter().enumerate() {
            validate::header_value(HEADER_NAMES[i], v)?;
        }
        validate::payload(&self.payload)?;
        Ok(())
    }

    /// Appends the header block (`name: value\n` × 15) to `out`.
    pub fn write_header_block(&self, out: &mut Vec<u8>) {
        for (name, value) in HEADER_NAMES.iter().zip(&self.values) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    }

    /// One header line, `name: value\n`, as the C struct exposes it.
    pub fn header_line(&self, i: usize) -> String {
        let mut s = String::with_capacity(HEADER_NAMES[i].len() + 3 + self.values[i].len());
        let _ = writeln!(s, "{}: {}", HEADER_NAMES[i], self.values[i]);
        s
    }

    /// The record's identity: a digest of its 15 header values and its payload.
    ///
    /// A record re-sent from the same handle or re-read from its spool file is byte-identical,
    /// so a repeat has the same identity; the event id is one of the values, not the identity
    /// (records of one event share it). telemprobd, the test collector and telem-server all
    /// de-duplicate by this value. SHA-256 over the header block (`name: value\n` × 15, values
    /// never hold a line break) followed by the payload, so no two records share the input.
    pub fn identity(&self) -> Identity {
        identity(&self.values, &self.payload)
    }

    /// Length of the header block in bytes.
    pub fn header_block_len(&self) -> usize {
        HEADER_NAMES
            .iter()
            .zip(&self.values)
            .map(|(n, v)| n.len() + v.len() + 3)
            .sum()
    }
}

/// A record identity (see [`Record::identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub [u8; 32]);

impl std::fmt::Display for Identity {
    /// 64 lowercase hex digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The identity of a record given as its 15 header values (wire order) and payload, for callers
/// that hold the values without a [`Record`] (a collector reading HTTP headers).
pub fn identity<S: AsRef<str>>(values: &[S; HEADER_COUNT], payload: &[u8]) -> Identity {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, value) in HEADER_NAMES.iter().zip(values) {
        h.update(name.as_bytes());
        h.update(b": ");
        h.update(value.as_ref().as_bytes());
        h.update(b"\n");
    }
    h.update(payload);
    Identity(h.finalize().into())
}

/// Parses one header line (without its `\n`): it must start with `expected:`; one space after the
/// colon is part of the separator. (The original daemon also accepted `name:value`.)
pub fn parse_header_line<'a>(line: &'a str, expected: &'static str) -> Result<&'a str> {
    let rest = line
        .strip_prefix(expected)
        .and_then(|r| r.strip_prefix(':'))
        .ok_or_else(|| {
            Error::invalid(
                "header",
                format!(
                    "expected header {expected:?}, found {:?}",
                    truncate_for_message(line)
                ),
            )
        })?;
    Ok(rest.strip_prefix(' ').unwrap_or(rest))
}

fn truncate_for_message(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A new random id: 32 lowercase hex digits from the OS random number generator.
pub fn new_event_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        Error::io(
            "reading the OS random number generator",
            std::io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(5)),
        )
    })?;
    let mut s = String::with_capacity(32);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    Ok(s)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sys() -> SysInfo {
        SysInfo {
            arch: "x86_64".into(),
            host_type: "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2".into(),
            build: "40000".into(),
            kernel_version: "6.1.0".into(),
            system_name: "clear-linux-os".into(),
            board_name: "blank|blank".into(),
            cpu_model: "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz".into(),
            bios_version: "1.16.0-1".into(),
        }
    }

    #[test]
    fn new_record_has_fifteen_headers_in_order() {
        let r = Record::new(0, "t/t/t", 2000, &sys()).unwrap();
        assert_eq!(r.header_line(2), "severity: 1\n");
        assert_eq!(r.header_line(1), "classification: t/t/t\n");
        assert_eq!(r.header_line(9), "payload_format_version: 2000\n");
        assert_eq!(r.get(Header::MachineId), "FFFFFFFF");
        assert_eq!(r.get(Header::HostType), sys().host_type);
        let mut block = Vec::new();
        r.write_header_block(&mut block);
        assert_eq!(block.len(), r.header_block_len());
        assert_eq!(block.iter().filter(|b| **b == b'\n').count(), 15);
        r.validate().unwrap();
        assert_eq!(
            Record::new(5, "t/t/t", 1, &sys())
                .unwrap()
                .get(Header::Severity),
            "4"
        );
    }

    #[test]
    fn event_ids_are_random_hex() {
        let a = new_event_id().unwrap();
        let b = new_event_id().unwrap();
        assert_ne!(a, b);
        validate::event_id(&a).unwrap();
    }

    #[test]
    fn set_event_id_keeps_old_on_error() {
        let mut r = Record::new(1, "t/t/t", 1, &sys()).unwrap();
        let old = r.get(Header::EventId).to_string();
        assert!(r.set_event_id("ZZ").is_err());
        assert_eq!(r.get(Header::EventId), old);
        r.set_event_id("aaaaaa00000033333344444466666622").unwrap();
        assert_eq!(
            r.header_line(14),
            "event_id: aaaaaa00000033333344444466666622\n"
        );
    }

    #[test]
    fn header_line_parsing() {
        assert_eq!(parse_header_line("arch: x86_64", "arch").unwrap(), "x86_64");
        assert_eq!(parse_header_line("arch:x86_64", "arch").unwrap(), "x86_64");
        assert_eq!(
            parse_header_line("system_name: ", "system_name").unwrap(),
            ""
        );
        assert_eq!(
            parse_header_line("cpu_model:  two", "cpu_model").unwrap(),
            " two"
        );
        assert!(parse_header_line("classificatioooon: a/b/c", "classification").is_err());
        assert!(parse_header_line("arch x86_64", "arch").is_err());
    }

    #[test]
    fn identity_is_the_digest_of_values_and_payload() {
        let mut r = Record::new(1, "t/t/t", 1, &sys()).unwrap();
        r.set_payload(b"hello").unwrap();
        let id = r.identity();
        assert_eq!(id, r.clone().identity());
        assert_eq!(id, identity(r.values(), b"hello"));
        assert_eq!(id.to_string().len(), 64);
        // The same block hashed by hand: the definition other implementations follow.
        let mut input = Vec::new();
        r.write_header_block(&mut input);
        input.extend_from_slice(b"hello");
        use sha2::Digest;
        assert_eq!(id.0, <[u8; 32]>::from(sha2::Sha256::digest(&input)));
        // Any value or the payload changes it; the event id alone does too.
        let mut other = r.clone();
        other.set_payload(b"hello!").unwrap();
        assert_ne!(other.identity(), id);
        let mut other = r.clone();
        other
            .set_event_id("aaaaaa00000033333344444466666622")
            .unwrap();
        assert_ne!(other.identity(), id);
        let mut other = r.clone();
        other.set_machine_id("0123").unwrap();
        assert_ne!(other.identity(), id);
    }

    #[test]
    fn from_parts_rejects_line_breaks() {
        let r = Record::new(1, "t/t/t", 1, &sys()).unwrap();
        let mut v = r.values().clone();
        v[6] = "a\nb".into();
        assert!(Record::from_parts(v, vec![]).is_err());
    }
}
