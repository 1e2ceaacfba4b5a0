//! The collector's record checks, in the order and with the messages of the upstream
//! telemetrics-backend (`collector/report_handler.py` + `lib/validation.py`), see
//! collector-protocol.md §3. Pure: fields in, accepted record or rejection out.

use std::collections::BTreeMap;

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
    })
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

    #[test]
    fn python_repr_quotes() {
        assert_eq!(python_repr("a'b"), "\"a'b\"");
        assert_eq!(python_repr("a\tb"), "'a\\tb'");
    }
}
