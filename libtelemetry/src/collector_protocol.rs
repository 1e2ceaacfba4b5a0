//! The collector protocol's record checks, in the order and with the exact messages of the public
//! telemetrics-backend (docs/collector-protocol.md, "Checks, in order"). One implementation for
//! every program that receives records over HTTP (the test collector, telem-server).
//!
//! Pure: header fields and a body in, an accepted record or a rejection out. Callers decide how
//! header bytes become text (the test collector reads them as Latin-1 like the backend did;
//! telem-server keeps valid UTF-8 as it is).

use std::collections::BTreeMap;

use crate::record::{identity, Identity, HEADER_COUNT, HEADER_NAMES};
use crate::timefmt::utc_string;

/// Record metadata keyed by lower-case hyphenated name (`record-format-version`).
pub type Fields = BTreeMap<String, String>;

/// Required names per record format version, spelled as the server reports them missing.
const REQUIRED_V1: &[&str] = &[
    "Arch",
    "Build",
    "Creation-Timestamp",
    "Classification",
    "Host-Type",
    "Kernel-Version",
    "Machine-Id",
    "Severity",
    "Record-Format-Version",
];
const REQUIRED_V2: &[&str] = &["Payload-Format-Version", "System-Name", "X-Telemetry-Tid"];
const REQUIRED_V3: &[&str] = &["Board-Name", "Bios-Version", "Cpu-Model"];
const REQUIRED_V4: &[&str] = &["Event-Id"];

const ARCHES: &[&str] = &[
    "armv7l", "armv6l", "aarch64", "amd64", "sparc64", "ppc64", "i686", "i386", "x86_64", "ppc",
];

const POSTGRES_INT_MAX: i128 = 2_147_483_647;

/// Why a record was refused: 400 with a JSON message, or 500 where upstream crashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(String),
    ServerError(String),
}

/// A record that passed every check, with the values the 201 body reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub machine_id: String,
    pub host_type: String,
    pub severity: i64,
    pub classification: String,
    pub build: String,
    pub arch: String,
    pub kernel_version: String,
    pub record_version: i64,
    pub ts_capture: u64,
    pub payload_version: i64,
    pub system_name: String,
    pub board_name: String,
    pub bios_version: String,
    pub cpu_model: String,
    pub event_id: String,
    pub external: bool,
    /// The 15 header values as received, in wire order (`""` for one the request lacks): the
    /// input of the record identity.
    pub wire_values: [String; HEADER_COUNT],
}

impl Accepted {
    /// The record identity of this record with `payload` (see [`crate::record::identity`]).
    pub fn identity(&self, payload: &[u8]) -> Identity {
        identity(&self.wire_values, payload)
    }
}

fn bad(msg: &str) -> Rejection {
    Rejection::BadRequest(msg.to_string())
}

fn get<'a>(f: &'a Fields, name: &str) -> Option<&'a str> {
    f.get(&name.to_ascii_lowercase()).map(String::as_str)
}

/// Python `str(v).isdigit()` restricted to ASCII (None is the text "None": not digits).
fn is_digits(v: Option<&str>) -> bool {
    v.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// Value of an all-digit string when it is small (leading zeros allowed), else None.
fn small_value(s: &str) -> Option<u64> {
    let t = s.trim_start_matches('0');
    if t.len() > 18 {
        return None;
    }
    Some(t.parse::<u64>().unwrap_or(0))
}

fn in_1_to_4(v: Option<&str>) -> bool {
    is_digits(v)
        && v.and_then(small_value)
            .is_some_and(|n| (1..=4).contains(&n))
}

/// Upstream `validate_x_header`: under 200 characters, all in Python's `string.printable`.
fn printable_short(v: &str) -> bool {
    v.chars().count() < 200
        && v.chars()
            .all(|c| c.is_ascii_graphic() || " \t\n\r\x0b\x0c".contains(c))
}

/// Python's `int()` on a str: surrounding whitespace, optional sign, digits with single
/// underscores between them. Errors carry Python's message text.
fn python_int(v: Option<&str>) -> Result<i128, String> {
    let Some(raw) = v else {
        return Err(
            "int() argument must be a string, a bytes-like object or a real number, \
                    not 'NoneType'"
                .to_string(),
        );
    };
    let invalid = || {
        format!(
            "invalid literal for int() with base 10: {}",
            python_repr(raw)
        )
    };
    let s = raw.trim_matches(|c: char| {
        c.is_whitespace() || ('\x1c'..='\x1f').contains(&c) || c == '\u{85}'
    });
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return Err(invalid());
    }
    let mut n: i128 = 0;
    for b in digits.bytes() {
        match b {
            b'_' => {}
            b'0'..=b'9' => n = n.saturating_mul(10).saturating_add(i128::from(b - b'0')),
            _ => return Err(invalid()),
        }
    }
    Ok(if neg { -n } else { n })
}

/// Python `repr()` of a str, enough for the error messages above.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..0xa1).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn kernel_ok(v: Option<&str>) -> bool {
    let s = v.unwrap_or("None");
    let parts: Vec<&str> = s.splitn(3, '.').collect();
    parts.len() == 3 && is_digits(Some(parts[0])) && is_digits(Some(parts[1]))
}

/// Runs the upstream checks on `f` in upstream order; `tid` is the configured telemetry id.
pub fn validate(f: &Fields, tid: &str) -> Result<Accepted, Rejection> {
    // 1. TID, for every version.
    if get(f, "X-Telemetry-TID") != Some(tid) {
        return Err(bad("Telemetry ID mismatch"));
    }
    // 2. Record format version.
    let rfv = get(f, "Record-Format-Version");
    if !in_1_to_4(rfv) {
        return Err(bad("Record-Format-Version is invalid"));
    }
    let rfv = rfv.unwrap_or_default();
    // 3. Presence: upstream looks the list up by the exact text, so "04" skips this check.
    let required: Vec<&str> = match rfv {
        "1" => REQUIRED_V1.to_vec(),
        "2" => [REQUIRED_V1, REQUIRED_V2].concat(),
        "3" => [REQUIRED_V1, REQUIRED_V2, REQUIRED_V3].concat(),
        "4" => [REQUIRED_V1, REQUIRED_V2, REQUIRED_V3, REQUIRED_V4].concat(),
        _ => Vec::new(),
    };
    if let Some(missing) = required.iter().find(|n| get(f, n).is_none()) {
        return Err(Rejection::BadRequest(format!(
            "Record-Format-Version headers are invalid, {missing} missing"
        )));
    }
    // 4.-10.
    let severity = get(f, "Severity");
    if !in_1_to_4(severity) {
        return Err(bad("severity value is out of range"));
    }
    let classification = get(f, "Classification");
    if classification.is_none_or(|c| c.split('/').count() != 3) {
        return Err(bad("Classification value is invalid"));
    }
    let machine_id = get(f, "Machine-Id");
    if machine_id.is_none_or(|m| m.chars().count() > 32) {
        return Err(bad("Machine id value is invalid"));
    }
    let timestamp = get(f, "Creation-Timestamp");
    if !is_digits(timestamp) {
        return Err(bad("timestamp is invalid"));
    }
    let ts_capture = timestamp
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| Rejection::ServerError("timestamp out of range".into()))?;
    let arch = get(f, "Arch");
    if !arch.is_some_and(|a| ARCHES.contains(&a)) {
        return Err(bad("architecture is invalid"));
    }
    let host_type = get(f, "Host-Type");
    if host_type.is_none_or(|h| h.chars().count() >= 250) {
        return Err(bad("host type is invalid"));
    }
    let kernel_version = get(f, "Kernel-Version");
    if !kernel_ok(kernel_version) {
        return Err(bad("kernel version is invalid"));
    }
    // 11.-12. Upstream compares the version *text* against '3' and '4'.
    let (mut board, mut bios, mut cpu, mut event) = ("N/A", "N/A", "N/A", "N/A");
    if rfv >= "3" {
        for (name, msg, slot) in [
            ("Board-Name", "board name is invalid", &mut board),
            ("Cpu-Model", "cpu model is invalid", &mut cpu),
            ("Bios-Version", "BIOS version is invalid", &mut bios),
        ] {
            let v = get(f, name).unwrap_or_default();
            if !printable_short(v) {
                return Err(bad(msg));
            }
            *slot = v;
        }
    }
    if rfv >= "4" {
        let v = get(f, "Event-Id").unwrap_or_default();
        if !(v.len() == 32 && v.bytes().all(|b| b"0123456789abcdef".contains(&b))) {
            return Err(bad("Event id is invalid"));
        }
        event = v;
    }
    // 13.-14. Upstream calls .replace() on None here: a 500.
    let strip = |s: &str| s.replace(['"', '\''], "");
    let system_name = get(f, "System-Name")
        .map(strip)
        .ok_or_else(|| Rejection::ServerError("System-Name missing".into()))?;
    let build = get(f, "Build")
        .map(strip)
        .ok_or_else(|| Rejection::ServerError("Build missing".into()))?;
    if system_name == "clear-linux-os" {
        if !is_digits(Some(&build)) {
            return Err(bad("Clear Linux OS build version has invalid characters"));
        }
    } else if build.is_empty()
        || !build
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(bad("Build version has invalid characters"));
    }
    // 15.
    let pfv = python_int(get(f, "Payload-Format-Version"))
        .map_err(|e| Rejection::BadRequest(format!("Error parsing payload_format_version, {e}")))?;
    if pfv >= POSTGRES_INT_MAX {
        return Err(bad("Payload format version outside of range supported"));
    }
    Ok(Accepted {
        machine_id: machine_id.unwrap_or_default().to_string(),
        host_type: host_type.unwrap_or_default().to_string(),
        severity: severity.and_then(small_value).unwrap_or(0) as i64,
        classification: classification.unwrap_or_default().to_string(),
        build,
        arch: arch.unwrap_or_default().to_string(),
        kernel_version: kernel_version.unwrap_or_default().to_string(),
        record_version: small_value(rfv).unwrap_or(0) as i64,
        ts_capture,
        payload_version: pfv.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        system_name,
        board_name: board.to_string(),
        bios_version: bios.to_string(),
        cpu_model: cpu.to_string(),
        event_id: event.to_string(),
        external: get(f, "X-CLR-External") == Some("true"),
        wire_values: HEADER_NAMES.map(|n| f.get(&normalize_name(n)).cloned().unwrap_or_default()),
    })
}

/// A header name as the backend's WSGI layer saw it: lower case, `_` equal to `-`.
pub fn normalize_name(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Text of a body or header value: UTF-8 when valid, else Latin-1 (every byte one character),
/// as the backend stores payloads.
pub fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// How header bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderText {
    /// Every byte one character, as the backend's WSGI layer read them (the test collector).
    Latin1,
    /// UTF-8 when valid, else Latin-1 (telem-server keeps non-ASCII text as it was sent).
    Utf8OrLatin1,
}

/// The request's header fields by normalized name (see [`normalize_name`]); the first of
/// repeated headers wins, as it did for the backend.
pub fn header_fields<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    text: HeaderText,
) -> Fields {
    let mut out = Fields::new();
    for (name, value) in headers {
        out.entry(normalize_name(name))
            .or_insert_with(|| match text {
                HeaderText::Latin1 => value.iter().map(|&b| char::from(b)).collect(),
                HeaderText::Utf8OrLatin1 => decode_text(value),
            });
    }
    out
}

/// The body of a 201 (and of telem-server's 200 for a copy): the stored record as the backend's
/// `Record.to_dict()`, keys in sorted order as Flask's `jsonify` wrote them (the fields are
/// declared sorted; serde keeps the declaration order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Echo<'a> {
    pub arch: &'a str,
    pub bios_version: &'a str,
    pub board_name: &'a str,
    pub build: &'a str,
    pub classification: &'a str,
    pub cpu_model: &'a str,
    pub event_id: &'a str,
    pub external: bool,
    pub id: i64,
    pub kernel_version: &'a str,
    pub machine_id: &'a str,
    pub machine_type: &'a str,
    pub payload: &'a str,
    pub record_version: i64,
    pub severity: i64,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub ts_capture: String,
    pub ts_reception: String,
}

impl<'a> Echo<'a> {
    /// The echo of an accepted record stored as row `id` at `ts_reception` (unix seconds).
    pub fn new(a: &'a Accepted, payload: &'a str, id: i64, ts_reception: u64) -> Self {
        Echo {
            arch: &a.arch,
            bios_version: &a.bios_version,
            board_name: &a.board_name,
            build: &a.build,
            classification: &a.classification,
            cpu_model: &a.cpu_model,
            event_id: &a.event_id,
            external: a.external,
            id,
            kernel_version: &a.kernel_version,
            machine_id: &a.machine_id,
            machine_type: &a.host_type,
            payload,
            record_version: a.record_version,
            severity: a.severity,
            ts_capture: utc_string(a.ts_capture),
            ts_reception: utc_string(ts_reception),
        }
    }
}

/// Which of the two request forms a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `POST /v2/collector` (or `/`): metadata in headers, the payload as the body.
    Headers,
    /// `POST /v3/collector`: a JSON object of strings with the metadata and `payload`.
    Json,
}

impl Form {
    /// The short name stored with a record (`headers`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Headers => "headers",
            Form::Json => "json",
        }
    }
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub accepted: Accepted,
    /// The payload as stored (empty for a form-encoded headers-form body, as the backend did).
    pub payload: String,
    /// The request's fields by normalized name; for the JSON form the body's fields too.
    pub fields: Fields,
}

/// Checks one collector request: `headers` by normalized name (see [`normalize_name`]; the first
/// of repeated headers wins), `body` as received, `tid` the configured telemetry id.
pub fn check_request(
    form: Form,
    headers: &Fields,
    body: &[u8],
    tid: &str,
) -> Result<Submission, Rejection> {
    match form {
        Form::Json => {
            let (body_fields, payload) = parse_json(body).map_err(Rejection::BadRequest)?;
            // The TID and the external flag count only as HTTP headers, never from the body.
            let mut merged = headers.clone();
            merged.extend(body_fields.clone());
            let mut checked = body_fields;
            checked.remove("x-telemetry-tid");
            checked.remove("x-clr-external");
            for name in ["x-telemetry-tid", "x-clr-external"] {
                if let Some(v) = headers.get(name) {
                    checked.insert(name.to_string(), v.clone());
                }
            }
            let accepted = validate(&checked, tid)?;
            Ok(Submission {
                accepted,
                payload,
                fields: merged,
            })
        }
        Form::Headers => {
            let accepted = validate(headers, tid)?;
            // Flask consumed form bodies: the backend stored an empty payload for these.
            let ct = headers
                .get("content-type")
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or_default();
            let payload = if ct.starts_with("application/x-www-form-urlencoded")
                || ct.starts_with("multipart/form-data")
            {
                String::new()
            } else {
                decode_text(body)
            };
            Ok(Submission {
                accepted,
                payload,
                fields: headers.clone(),
            })
        }
    }
}

/// The v2.4 client's JSON body: an object of string values. Returns (fields by normalized name,
/// payload) or the 400 message.
pub fn parse_json(body: &[u8]) -> Result<(Fields, String), String> {
    let invalid = || "Request body is not a JSON object of strings".to_string();
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|_| invalid())?;
    let mut fields = Fields::new();
    let mut payload = None;
    for (k, v) in map {
        let serde_json::Value::String(s) = v else {
            return Err(invalid());
        };
        if k == "payload" {
            payload = Some(s);
        } else {
            fields.insert(normalize_name(&k), s);
        }
    }
    let payload = payload.ok_or_else(|| "Record payload is missing".to_string())?;
    Ok((fields, payload))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const TID: &str = "6907c830-eed9-4ce9-81ae-76daf8d88f0f";

    fn v4() -> Fields {
        [
            ("x-telemetry-tid", TID),
            ("record-format-version", "4"),
            ("severity", "1"),
            ("classification", "org.clearlinux/hello/world"),
            ("machine-id", "0123456789abcdef0123456789abcdef"),
            ("creation-timestamp", "1700000000"),
            ("arch", "x86_64"),
            ("host-type", "QEMU|Standard PC"),
            ("build", "40000"),
            ("kernel-version", "6.1.0-13-amd64"),
            ("payload-format-version", "1"),
            ("system-name", "clear-linux-os"),
            ("board-name", "no_bn_file|no_bv_file"),
            ("cpu-model", "Intel(R) Core(TM)"),
            ("bios-version", "1.16.0"),
            ("event-id", "3a2d799826edc6266d72824d2aac6763"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(pairs: &[(&str, Option<&str>)]) -> Result<Accepted, Rejection> {
        let mut f = v4();
        for (k, v) in pairs {
            match v {
                Some(v) => f.insert(k.to_string(), v.to_string()),
                None => f.remove(*k),
            };
        }
        validate(&f, TID)
    }

    fn msg(pairs: &[(&str, Option<&str>)]) -> String {
        match with(pairs) {
            Err(Rejection::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn accepts_full_v4() {
        let a = with(&[]).unwrap();
        assert_eq!(a.record_version, 4);
        assert_eq!(a.event_id, "3a2d799826edc6266d72824d2aac6763");
        assert!(!a.external);
    }

    #[test]
    fn older_versions_store_na() {
        let a = with(&[("record-format-version", Some("2"))]).unwrap();
        assert_eq!((a.board_name.as_str(), a.event_id.as_str()), ("N/A", "N/A"));
    }

    #[test]
    fn leading_zero_version_skips_presence_and_v3_checks() {
        let a = with(&[("record-format-version", Some("04")), ("event-id", None)]).unwrap();
        assert_eq!((a.record_version, a.event_id.as_str()), (4, "N/A"));
    }

    #[test]
    fn build_rules_depend_on_system_name() {
        let m = msg(&[("build", Some("40a"))]);
        assert_eq!(m, "Clear Linux OS build version has invalid characters");
        let m = msg(&[("system-name", Some("debian")), ("build", Some("1 2"))]);
        assert_eq!(m, "Build version has invalid characters");
        let a = with(&[
            ("system-name", Some("\"debian\"")),
            ("build", Some("'12.4-x_y'")),
        ])
        .unwrap();
        assert_eq!(
            (a.system_name.as_str(), a.build.as_str()),
            ("debian", "12.4-x_y")
        );
    }

    #[test]
    fn payload_version_follows_python_int() {
        assert_eq!(
            with(&[("payload-format-version", Some(" -7 "))])
                .unwrap()
                .payload_version,
            -7
        );
        assert_eq!(
            with(&[("payload-format-version", Some("1_0"))])
                .unwrap()
                .payload_version,
            10
        );
        assert_eq!(
            msg(&[("payload-format-version", Some("abc"))]),
            "Error parsing payload_format_version, invalid literal for int() with base 10: 'abc'"
        );
        assert_eq!(
            msg(&[("payload-format-version", Some("2147483647"))]),
            "Payload format version outside of range supported"
        );
        let m = msg(&[
            ("record-format-version", Some("1")),
            ("payload-format-version", None),
        ]);
        assert!(
            m.starts_with("Error parsing payload_format_version, int() argument"),
            "{m}"
        );
    }

    #[test]
    fn missing_system_name_is_server_error() {
        let r = with(&[("record-format-version", Some("1")), ("system-name", None)]);
        assert!(matches!(r, Err(Rejection::ServerError(_))));
    }

    #[test]
    fn field_rules() {
        assert!(with(&[("machine-id", Some(""))]).is_ok());
        assert!(with(&[("classification", Some("//"))]).is_ok());
        assert!(with(&[("kernel-version", Some("6.1.0-18-amd64"))]).is_ok());
        assert_eq!(
            msg(&[("kernel-version", Some("6.1"))]),
            "kernel version is invalid"
        );
        assert_eq!(
            msg(&[("kernel-version", Some("6.1-rc1"))]),
            "kernel version is invalid"
        );
        assert_eq!(msg(&[("arch", Some("riscv64"))]), "architecture is invalid");
        assert_eq!(
            msg(&[("severity", Some("5"))]),
            "severity value is out of range"
        );
        assert!(with(&[("severity", Some("04"))]).is_ok());
        assert_eq!(
            msg(&[("creation-timestamp", Some("-1"))]),
            "timestamp is invalid"
        );
        assert_eq!(
            msg(&[("machine-id", Some(&"a".repeat(33)))]),
            "Machine id value is invalid"
        );
        assert_eq!(
            msg(&[("host-type", Some(&"h".repeat(250)))]),
            "host type is invalid"
        );
        assert_eq!(
            msg(&[("cpu-model", Some("Intel\u{e9}"))]),
            "cpu model is invalid"
        );
        assert_eq!(
            msg(&[("event-id", Some(&"A".repeat(32)))]),
            "Event id is invalid"
        );
        assert!(with(&[("x-clr-external", Some("true"))]).unwrap().external);
    }

    /// Every 400 message of the checks, each from the smallest change to a good record.
    #[test]
    fn every_rejection_message() {
        let long = "x".repeat(200);
        type Change<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(Change, &str)] = &[
            (&[("x-telemetry-tid", Some("other"))], "Telemetry ID mismatch"),
            (&[("x-telemetry-tid", None)], "Telemetry ID mismatch"),
            (&[("record-format-version", Some("5"))], "Record-Format-Version is invalid"),
            (&[("record-format-version", None)], "Record-Format-Version is invalid"),
            (
                &[("arch", None)],
                "Record-Format-Version headers are invalid, Arch missing",
            ),
            (
                &[("event-id", None)],
                "Record-Format-Version headers are invalid, Event-Id missing",
            ),
            (
                &[("record-format-version", Some("3")), ("cpu-model", None)],
                "Record-Format-Version headers are invalid, Cpu-Model missing",
            ),
            (&[("severity", Some("0"))], "severity value is out of range"),
            (&[("classification", Some("a/b"))], "Classification value is invalid"),
            (&[("machine-id", Some(&long))], "Machine id value is invalid"),
            (&[("creation-timestamp", Some("1.5"))], "timestamp is invalid"),
            (&[("arch", Some("riscv64"))], "architecture is invalid"),
            (&[("host-type", Some(&long.repeat(2)))], "host type is invalid"),
            (&[("kernel-version", Some("a.b.c"))], "kernel version is invalid"),
            (&[("board-name", Some(&long))], "board name is invalid"),
            (&[("cpu-model", Some("caf\u{e9}"))], "cpu model is invalid"),
            (&[("bios-version", Some("\u{7f}"))], "BIOS version is invalid"),
            (&[("event-id", Some("xyz"))], "Event id is invalid"),
            (
                &[("build", Some("40.1"))],
                "Clear Linux OS build version has invalid characters",
            ),
            (
                &[("system-name", Some("debian")), ("build", Some(""))],
                "Build version has invalid characters",
            ),
            (
                &[("payload-format-version", Some("1.0"))],
                "Error parsing payload_format_version, invalid literal for int() with base 10: '1.0'",
            ),
            (
                &[("payload-format-version", Some("99999999999"))],
                "Payload format version outside of range supported",
            ),
        ];
        for (change, want) in cases {
            assert_eq!(msg(change), *want, "{change:?}");
        }
    }

    #[test]
    fn json_form_messages_and_header_only_fields() {
        let headers: Fields = [("x-telemetry-tid".to_string(), TID.to_string())].into();
        for (body, want) in [
            (&b"[1]"[..], "Request body is not a JSON object of strings"),
            (
                b"{\"severity\":1,\"payload\":\"\"}",
                "Request body is not a JSON object of strings",
            ),
            (b"not json", "Request body is not a JSON object of strings"),
            (b"{\"severity\":\"1\"}", "Record payload is missing"),
        ] {
            assert_eq!(
                check_request(Form::Json, &headers, body, TID),
                Err(Rejection::BadRequest(want.to_string()))
            );
        }
        let mut obj: serde_json::Map<String, serde_json::Value> = v4()
            .into_iter()
            .filter(|(k, _)| k != "x-telemetry-tid")
            .map(|(k, v)| (k.replace('-', "_"), v.into()))
            .collect();
        obj.insert("payload".into(), "h\u{e9}llo".into());
        // The body cannot supply the TID or the external flag.
        obj.insert("x_clr_external".into(), "true".into());
        obj.insert("x_telemetry_tid".into(), TID.into());
        let body = serde_json::to_vec(&obj).unwrap();
        let ok = check_request(Form::Json, &headers, &body, TID).unwrap();
        assert_eq!(ok.payload, "h\u{e9}llo");
        assert!(!ok.accepted.external);
        assert_eq!(
            check_request(Form::Json, &Fields::new(), &body, TID),
            Err(Rejection::BadRequest("Telemetry ID mismatch".into()))
        );
    }

    #[test]
    fn identity_is_the_record_identity_of_the_wire_values() {
        let f = v4();
        let a = validate(&f, TID).unwrap();
        let values =
            crate::record::HEADER_NAMES.map(|n| f.get(&n.replace('_', "-")).cloned().unwrap());
        let rec = crate::Record::from_parts(values, b"payload".to_vec()).unwrap();
        assert_eq!(a.identity(b"payload"), rec.identity());
        assert_ne!(a.identity(b"payload"), a.identity(b"other"));
        // A quoted build is stored without quotes but identified as sent.
        let quoted = with(&[("build", Some("'40000'"))]).unwrap();
        assert_eq!(quoted.build, "40000");
        assert_ne!(quoted.identity(b"payload"), a.identity(b"payload"));
    }

    #[test]
    fn form_bodies_store_an_empty_payload() {
        let mut h = v4();
        h.insert(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        );
        let s = check_request(Form::Headers, &h, b"a=b", TID).unwrap();
        assert_eq!(s.payload, "");
        h.insert("content-type".into(), "application/text".into());
        let s = check_request(Form::Headers, &h, b"caf\xe9", TID).unwrap();
        assert_eq!(s.payload, "caf\u{e9}");
        assert_eq!(
            normalize_name("Record_Format-VERSION"),
            "record-format-version"
        );
    }

    #[test]
    fn header_fields_normalize_names_keep_the_first_and_decode_as_asked() {
        let h: [(&str, &[u8]); 4] = [
            ("Record_Format-Version", b"4"),
            ("record-format-version", b"3"),
            ("System-Name", "Bäckerei".as_bytes()),
            ("Build", b"caf\xe9"),
        ];
        let f = header_fields(h, HeaderText::Utf8OrLatin1);
        assert_eq!(f["record-format-version"], "4");
        assert_eq!(f["system-name"], "Bäckerei");
        assert_eq!(f["build"], "caf\u{e9}");
        let f = header_fields(h, HeaderText::Latin1);
        assert_eq!(f["system-name"], "B\u{c3}\u{a4}ckerei");
        assert_eq!(f["build"], "caf\u{e9}");
    }

    #[test]
    fn the_echo_has_the_backends_keys_in_sorted_order() {
        let a = validate(&v4(), TID).unwrap();
        let e = Echo::new(&a, "hi\n", 7, 1_700_000_100);
        let text = serde_json::to_string(&e).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        // The order in the text (a parsed map would sort the keys itself).
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 17);
        let at: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.starts_with("{\"arch\":\"x86_64\",\"bios_version\""),
            "{text}"
        );
        assert_eq!(v["id"], 7);
        assert_eq!(v["machine_type"], "QEMU|Standard PC");
        assert_eq!(v["ts_capture"], "2023-11-14 22:13:20 UTC");
        assert_eq!(v["ts_reception"], "2023-11-14 22:15:00 UTC");
        assert_eq!(v["payload"], "hi\n");
    }

    #[test]
    fn python_repr_quotes() {
        assert_eq!(python_repr("a'b"), "\"a'b\"");
        assert_eq!(python_repr("a\tb"), "'a\\tb'");
    }
}
