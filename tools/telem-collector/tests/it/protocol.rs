//! The upstream collector's behaviour: validation order and messages, routes, storage.

use std::time::Duration;

use telem_collector::{Collector, Options};

use crate::common::{post, request, set, v4_headers, TID};

fn start() -> Collector {
    Collector::start("127.0.0.1:0", Options::default()).unwrap()
}

#[test]
fn valid_v4_record_is_created_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.jsonl");
    let c = Collector::start(
        "127.0.0.1:0",
        Options {
            store: Some(store.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    let r = post(c.addr(), "/v2/collector", &v4_headers(), "hello\n");
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    // Flask sorts keys: check the raw text is in sorted order too.
    assert!(r.body.starts_with("{\"arch\":"), "{}", r.body);
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "id",
        "machine_id",
        "machine_type",
        "arch",
        "build",
        "kernel_version",
        "ts_capture",
        "ts_reception",
        "severity",
        "classification",
        "record_version",
        "payload",
        "board_name",
        "bios_version",
        "cpu_model",
        "event_id",
        "external",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    let at = |k: &str| r.body.find(&format!("\"{k}\":")).unwrap();
    for pair in want.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} before {}: {}",
            pair[0],
            pair[1],
            r.body
        );
    }
    assert_eq!(b["id"], 1);
    assert_eq!(b["machine_type"], "QEMU|Standard PC (Q35 + ICH9, 2009)");
    assert_eq!(b["ts_capture"], "2023-11-14 22:13:20 UTC");
    assert_eq!(b["severity"], 1);
    assert_eq!(b["record_version"], 4);
    assert_eq!(b["payload"], "hello\n");
    assert_eq!(b["cpu_model"], "Intel(R) Core(TM) i7");
    assert_eq!(b["external"], false);
    assert!(b["ts_reception"].as_str().unwrap().ends_with(" UTC"));

    let lines = std::fs::read_to_string(&store).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 1);
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["format"], "headers");
    assert_eq!(line["headers"]["record-format-version"], "4");
    assert_eq!(line["headers"]["x-telemetry-tid"], TID);
    assert_eq!(line["headers"]["content-type"], "application/text");
    assert_eq!(line["payload"], "hello\n");
    assert!(line["received"].as_f64().unwrap() > 1.7e9);

    let recs = c.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        recs[0].headers.get("event-id").unwrap(),
        "3a2d799826edc6266d72824d2aac6763"
    );
    let reqs = c.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].status, Some(201));
    assert_eq!(reqs[0].path, "/v2/collector");
    assert_eq!(
        reqs[0].event_id.as_deref(),
        Some("3a2d799826edc6266d72824d2aac6763")
    );
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Msg(&'static str),
    ServerError,
}

/// One broken header per §3 row, in the server's checking order.
fn rules() -> Vec<(&'static str, Option<String>, Want)> {
    let s = |v: &str| Some(v.to_string());
    vec![
        ("X-Telemetry-TID", s("6907c830-eed9-4ce9-81ae-76daf8d88f0F"), Want::Msg("Telemetry ID mismatch")),
        ("Record-Format-Version", s("5"), Want::Msg("Record-Format-Version is invalid")),
        (
            "Payload-Format-Version",
            None,
            Want::Msg("Record-Format-Version headers are invalid, Payload-Format-Version missing"),
        ),
        ("Severity", s("0"), Want::Msg("severity value is out of range")),
        ("Classification", s("org.clearlinux/hello"), Want::Msg("Classification value is invalid")),
        ("Machine-Id", s(&"f".repeat(33)), Want::Msg("Machine id value is invalid")),
        ("Creation-Timestamp", s("1700000000.5"), Want::Msg("timestamp is invalid")),
        ("Arch", s("riscv64"), Want::Msg("architecture is invalid")),
        ("Host-Type", s(&"h".repeat(250)), Want::Msg("host type is invalid")),
        ("Kernel-Version", s("6.1-rc1"), Want::Msg("kernel version is invalid")),
        ("Board-Name", s(&"b".repeat(200)), Want::Msg("board name is invalid")),
        ("Cpu-Model", s(&"c".repeat(200)), Want::Msg("cpu model is invalid")),
        ("Bios-Version", s(&"v".repeat(200)), Want::Msg("BIOS version is invalid")),
        ("Event-Id", s("3A2D799826EDC6266D72824D2AAC6763"), Want::Msg("Event id is invalid")),
        ("Build", s("40000a"), Want::Msg("Clear Linux OS build version has invalid characters")),
        (
            "Payload-Format-Version",
            s("one"),
            Want::Msg("Error parsing payload_format_version, invalid literal for int() with base 10: 'one'"),
        ),
    ]
}

fn outcome(c: &Collector, headers: &[(String, String)]) -> Want {
    let r = post(c.addr(), "/v2/collector", headers, "x");
    match r.status {
        400 => Want::Msg(Box::leak(r.message().into_boxed_str())),
        500 => Want::ServerError,
        other => panic!("unexpected {other}: {}", r.body),
    }
}

#[test]
fn every_rule_rejects_with_its_message() {
    let c = start();
    for (name, value, want) in rules() {
        let h = set(&v4_headers(), name, value.as_deref());
        assert_eq!(outcome(&c, &h), want, "breaking {name}");
    }
    assert!(c.records().is_empty());
}

#[test]
fn earlier_rule_wins_over_the_next_one() {
    let c = start();
    let rules = rules();
    for pair in rules.windows(2) {
        let (n1, v1, want) = &pair[0];
        let (n2, v2, _) = &pair[1];
        if n1 == n2 {
            continue;
        }
        let h = set(&set(&v4_headers(), n2, v2.as_deref()), n1, v1.as_deref());
        assert_eq!(outcome(&c, &h), *want, "breaking {n1} and {n2}");
    }
    // Explicitly: a bad TID wins over a bad version.
    let h = set(
        &set(&v4_headers(), "X-Telemetry-TID", Some("nope")),
        "Record-Format-Version",
        Some("9"),
    );
    assert_eq!(outcome(&c, &h), Want::Msg("Telemetry ID mismatch"));
}

#[test]
fn other_rules_of_section_3() {
    let c = start();
    let v4 = v4_headers();
    let non_clear = set(&v4, "System-Name", Some("\"debian\""));
    assert_eq!(
        outcome(&c, &set(&non_clear, "Build", Some("12 4"))),
        Want::Msg("Build version has invalid characters")
    );
    assert_eq!(
        outcome(&c, &set(&v4, "Payload-Format-Version", Some("2147483647"))),
        Want::Msg("Payload format version outside of range supported")
    );
    // Accepted edge values: empty machine id, empty classification parts, negative payload
    // version, quoted build on another OS.
    for (name, value) in [
        ("Machine-Id", ""),
        ("Classification", "//"),
        ("Payload-Format-Version", "-3"),
        ("Kernel-Version", "6.1.0-18-amd64"),
    ] {
        let r = post(c.addr(), "/", &set(&v4, name, Some(value)), "p");
        assert_eq!(r.status, 201, "{name}={value:?}: {}", r.body);
    }
    let r = post(
        c.addr(),
        "/",
        &set(&non_clear, "Build", Some("'12.4-rc_1'")),
        "p",
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["build"], "12.4-rc_1");
    let r = post(
        c.addr(),
        "/",
        &set(&v4, "X-CLR-External", Some("true")),
        "p",
    );
    assert_eq!(r.json()["external"], true);
}

#[test]
fn v3_record_without_bios_version_names_it() {
    let c = start();
    let h = set(
        &set(&v4_headers(), "Record-Format-Version", Some("3")),
        "Bios-Version",
        None,
    );
    assert_eq!(
        outcome(&c, &h),
        Want::Msg("Record-Format-Version headers are invalid, Bios-Version missing")
    );
}

#[test]
fn missing_system_name_on_v1_is_a_500() {
    let c = start();
    let v1 = set(&v4_headers(), "Record-Format-Version", Some("1"));
    assert_eq!(
        outcome(&c, &set(&v1, "System-Name", None)),
        Want::ServerError
    );
    // With it, v1 is fine and the v3/v4 fields read N/A.
    let r = post(c.addr(), "/v2/collector", &v1, "p");
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["board_name"], "N/A");
    assert_eq!(r.json()["event_id"], "N/A");
    // Missing Payload-Format-Version on v1: the int() error text.
    let r = post(
        c.addr(),
        "/v2/collector",
        &set(&v1, "Payload-Format-Version", None),
        "p",
    );
    assert_eq!(r.status, 400);
    assert!(r
        .message()
        .starts_with("Error parsing payload_format_version, int() argument"));
}

#[test]
fn header_names_are_case_insensitive_and_underscores_work() {
    let c = start();
    let underscore: Vec<_> = v4_headers()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase().replace('-', "_"), v))
        .collect();
    let r = post(c.addr(), "/v2/collector", &underscore, "old client");
    assert_eq!(r.status, 201, "{}", r.body);
    let upper: Vec<_> = v4_headers()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    let r = post(c.addr(), "/v2/collector", &upper, "shouting");
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        c.records()[0].headers.get("record-format-version").unwrap(),
        "4"
    );
}

#[test]
fn payload_bytes_and_form_bodies() {
    let c = start();
    let r = request(c.addr(), "POST", "/v2/collector", &v4_headers(), b"caf\xe9").unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(c.records()[0].payload, "caf\u{e9}");
    let form = set(
        &v4_headers(),
        "Content-Type",
        Some("application/x-www-form-urlencoded"),
    );
    assert_eq!(post(c.addr(), "/v2/collector", &form, "a=b").status, 201);
    assert_eq!(c.records()[1].payload, "");
}

#[test]
fn routes_and_methods() {
    let c = start();
    for path in ["/", "/v2/collector"] {
        for method in ["GET", "HEAD"] {
            let r = request(c.addr(), method, path, &[], b"").unwrap();
            assert_eq!(r.status, 302, "{method} {path}");
            assert_eq!(r.header("location"), Some("/telemetryui"));
        }
        for method in ["PUT", "DELETE", "PATCH"] {
            assert_eq!(
                request(c.addr(), method, path, &[], b"").unwrap().status,
                405,
                "{method} {path}"
            );
        }
    }
    assert_eq!(
        post(c.addr(), "/v2/collectorx", &v4_headers(), "x").status,
        404
    );
    assert_eq!(
        request(c.addr(), "GET", "/api/records", &[], b"")
            .unwrap()
            .status,
        404
    );
    assert!(c.records().is_empty());
    // Only collector paths are logged.
    assert_eq!(c.requests().len(), 10);
}

fn json_body() -> String {
    r#"{"record_format_version":"4","classification":"org.clearlinux/hello/world","severity":"1","machine_id":"0123456789abcdef0123456789abcdef","creation_timestamp":"1700000000","arch":"x86_64","host_type":"QEMU|Standard","build":"40000","kernel_version":"6.1.0-13-amd64","payload_format_version":"1","system_name":"clear-linux-os","board_name":"no_bn_file|no_bv_file","cpu_model":"Intel(R)","bios_version":"1.16.0-debian-1.16.0-5","event_id":"3a2d799826edc6266d72824d2aac6763","payload":"hello\n"}"#.to_string()
}

#[test]
fn v3_json_body_is_accepted() {
    let c = start();
    let tid = vec![
        ("X-Telemetry-TID".to_string(), TID.to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let r = post(c.addr(), "/v3/collector", &tid, &json_body());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["payload"], "hello\n");
    assert_eq!(r.json()["event_id"], "3a2d799826edc6266d72824d2aac6763");
    let rec = &c.records()[0];
    assert_eq!(rec.format, "json");
    assert_eq!(
        rec.headers.get("machine-id").unwrap(),
        "0123456789abcdef0123456789abcdef"
    );
    assert_eq!(rec.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(
        c.requests()[0].event_id.as_deref(),
        Some("3a2d799826edc6266d72824d2aac6763")
    );

    // Same rules and messages; the TID only counts as an HTTP header.
    let with_tid_in_body =
        json_body().replacen('{', &format!("{{\"x_telemetry_tid\":\"{TID}\","), 1);
    assert_eq!(
        post(c.addr(), "/v3/collector", &[], &with_tid_in_body).message(),
        "Telemetry ID mismatch"
    );
    let bad_sev = json_body().replace(r#""severity":"1""#, r#""severity":"7""#);
    assert_eq!(
        post(c.addr(), "/v3/collector", &tid, &bad_sev).message(),
        "severity value is out of range"
    );
    let no_event = json_body().replace(r#""event_id":"3a2d799826edc6266d72824d2aac6763","#, "");
    assert_eq!(
        post(c.addr(), "/v3/collector", &tid, &no_event).message(),
        "Record-Format-Version headers are invalid, Event-Id missing"
    );
    let r = post(c.addr(), "/v3/collector", &tid, "not json");
    assert_eq!(r.status, 400);
    // The header form is not accepted on /v3: no metadata in the JSON.
    assert_eq!(
        post(c.addr(), "/v3/collector", &v4_headers(), "raw").status,
        400
    );
    assert_eq!(c.records().len(), 1);
}

#[test]
fn wait_for_records_is_bounded() {
    let c = start();
    assert!(!c.wait_for_records(1, Duration::from_millis(50)));
    let addr = c.addr();
    let t = std::thread::spawn(move || post(addr, "/v2/collector", &v4_headers(), "later").status);
    assert!(c.wait_for_records(1, Duration::from_secs(10)));
    assert_eq!(t.join().unwrap(), 201);
}
