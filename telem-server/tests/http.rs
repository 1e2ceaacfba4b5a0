//! The server over HTTP (SQLite engine): the collector protocol's answers, idempotent ingest,
//! access control, the query API, health and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{get, v4_headers, with, TestServer, EVENT, TID};
use serde_json::Value;

fn server() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(dir.path()));
    (s, dir)
}

fn records(s: &TestServer, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/api/v1/records{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["records"].as_array().unwrap().clone()
}

#[test]
fn every_400_message_over_http() {
    let (s, _d) = server();
    let good = v4_headers(EVENT);
    let long = "x".repeat(250);
    let cases: Vec<(Vec<(String, String)>, &str)> =
        vec![
        (with(&good, "X-Telemetry-TID", Some("nope")), "Telemetry ID mismatch"),
        (with(&good, "X-Telemetry-TID", None), "Telemetry ID mismatch"),
        (
            with(&good, "Record-Format-Version", Some("9")),
            "Record-Format-Version is invalid",
        ),
        (
            with(&good, "Kernel-Version", None),
            "Record-Format-Version headers are invalid, Kernel-Version missing",
        ),
        (with(&good, "Severity", Some("7")), "severity value is out of range"),
        (
            with(&good, "Classification", Some("a/b/c/d")),
            "Classification value is invalid",
        ),
        (
            with(&good, "Machine-Id", Some(&long)),
            "Machine id value is invalid",
        ),
        (
            with(&good, "Creation-Timestamp", Some("yesterday")),
            "timestamp is invalid",
        ),
        (with(&good, "Arch", Some("riscv64")), "architecture is invalid"),
        (with(&good, "Host-Type", Some(&long)), "host type is invalid"),
        (
            with(&good, "Kernel-Version", Some("6.1")),
            "kernel version is invalid",
        ),
        (with(&good, "Board-Name", Some(&long)), "board name is invalid"),
        (with(&good, "Cpu-Model", Some("Caf\u{e9} CPU")), "cpu model is invalid"),
        (
            with(&good, "Bios-Version", Some(&long)),
            "BIOS version is invalid",
        ),
        (with(&good, "Event-Id", Some("not-hex")), "Event id is invalid"),
        (
            with(&good, "Build", Some("40000b")),
            "Clear Linux OS build version has invalid characters",
        ),
        (
            with(
                &with(&good, "System-Name", Some("debian")),
                "Build",
                Some("12 4"),
            ),
            "Build version has invalid characters",
        ),
        (
            with(&good, "Payload-Format-Version", Some("one")),
            "Error parsing payload_format_version, invalid literal for int() with base 10: 'one'",
        ),
        (
            with(&good, "Payload-Format-Version", Some("2147483648")),
            "Payload format version outside of range supported",
        ),
    ];
    for (headers, want) in &cases {
        let r = s.post("/v2/collector", headers, b"p");
        assert_eq!(r.status, 400, "{want}: {}", r.body);
        assert_eq!(r.json()["message"], *want);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
    // The JSON form's own messages.
    let tid = vec![("X-Telemetry-TID".to_string(), TID.to_string())];
    for (body, want) in [
        (
            &b"{\"severity\": 1, \"payload\": \"\"}"[..],
            "Request body is not a JSON object of strings",
        ),
        (b"{\"severity\": \"1\"}", "Record payload is missing"),
    ] {
        let r = s.post("/v3/collector", &tid, body);
        assert_eq!(
            (r.status, r.json()["message"].clone()),
            (400, Value::from(want))
        );
    }
    // Upstream answered a missing System-Name with a 500; so does the server, so clients retry.
    let r = s.post(
        "/v2/collector",
        &with(
            &with(&good, "Record-Format-Version", Some("1")),
            "System-Name",
            None,
        ),
        b"p",
    );
    assert_eq!(r.status, 500);
    assert!(records(&s, "").is_empty(), "nothing refused was stored");
    // Underscore names count as hyphens, case does not matter.
    let under: Vec<(String, String)> = good
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase().replace('-', "_"), v.clone()))
        .filter(|(k, _)| k != "x_telemetry_tid")
        .chain([("X-TELEMETRY-TID".to_string(), TID.to_string())])
        .collect();
    assert_eq!(s.post("/", &under, b"p").status, 201);
}

#[test]
fn a_record_posted_twice_is_one_row() {
    let (s, _d) = server();
    let h = v4_headers(EVENT);
    let first = s.post("/v2/collector", &h, b"hello");
    assert_eq!(first.status, 201, "{}", first.body);
    let echo = first.json();
    assert_eq!(echo["payload"], "hello");
    assert_eq!(echo["machine_type"], "QEMU|Standard PC");
    assert_eq!(echo["ts_capture"], "2023-11-14 22:13:20 UTC");
    let again = s.post("/v2/collector", &h, b"hello");
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], echo["id"]);
    assert_eq!(again.json()["ts_reception"], echo["ts_reception"]);
    // Same event, other payload: a record of its own.
    assert_eq!(s.post("/v2/collector", &h, b"hello 2").status, 201);
    let rows = records(&s, "");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["event_id"] == EVENT));
}

#[test]
fn concurrent_posts_of_one_record_make_one_row() {
    let (s, _d) = server();
    let h = v4_headers(EVENT);
    let url = s.url("/v2/collector");
    let statuses: Vec<u16> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|_| sc.spawn(|| common::post(&url, &h, b"same").status))
            .collect();
        hs.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&c| c == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&c| c == 201 || c == 200),
        "{statuses:?}"
    );
    assert_eq!(records(&s, "").len(), 1);
}

#[test]
fn json_form_and_utf8_values_are_kept() {
    let (s, _d) = server();
    // A non-ASCII header value arrives as UTF-8 bytes and is stored as that text.
    let h = with(&v4_headers(EVENT), "Host-Type", Some("Bäckerei-PC|Ω"));
    let r = s.post("/v2/collector", &h, "caf\u{e9} \u{2603}".as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    let got = &records(&s, "")[0];
    assert_eq!(got["machine_type"], "Bäckerei-PC|Ω");
    assert_eq!(got["payload"], "caf\u{e9} \u{2603}");
    assert_eq!(got["form"], "headers");

    let mut obj = serde_json::Map::new();
    for (k, v) in v4_headers("00000000000000000000000000000001") {
        if k != "X-Telemetry-TID" && k != "Content-Type" {
            obj.insert(k.to_ascii_lowercase().replace('-', "_"), v.into());
        }
    }
    obj.insert("payload".into(), "json \u{e9}".into());
    let tid = vec![
        ("X-Telemetry-TID".to_string(), TID.to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let r = s.post("/v3/collector", &tid, &serde_json::to_vec(&obj).unwrap());
    assert_eq!(r.status, 201, "{}", r.body);
    let got = &records(&s, "?payload=json")[0];
    assert_eq!(
        (got["payload"].clone(), got["form"].clone()),
        ("json \u{e9}".into(), "json".into())
    );

    // A form-encoded body is stored as an empty payload, as the backend did.
    let h = with(
        &v4_headers("00000000000000000000000000000002"),
        "Content-Type",
        Some("application/x-www-form-urlencoded"),
    );
    let r = s.post("/v2/collector", &h, b"a=b");
    assert_eq!((r.status, r.json()["payload"].clone()), (201, "".into()));
}

#[test]
fn fleet_token_and_query_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::sqlite_config(dir.path());
    cfg.fleet_token = Some("fleet-token-0123456789".into());
    cfg.query_token = Some("query-token-0123456789".into());
    let s = TestServer::start(cfg);
    let h = v4_headers(EVENT);
    let r = s.post("/v2/collector", &h, b"p");
    assert_eq!(r.status, 401);
    let wrong = with(&h, "Authorization", Some("Bearer fleet-token-012345678X"));
    assert_eq!(s.post("/v2/collector", &wrong, b"p").status, 401);
    let right = with(&h, "Authorization", Some("Bearer fleet-token-0123456789"));
    assert_eq!(s.post("/v2/collector", &right, b"p").status, 201);

    assert_eq!(s.get("/api/v1/records").status, 401);
    assert_eq!(s.get("/api/v1/counts/build").status, 401);
    let bad = get(
        &s.url("/api/v1/records"),
        &[("Authorization", "Bearer fleet-token-0123456789")],
    );
    assert_eq!(bad.status, 401);
    let ok = get(
        &s.url("/api/v1/records"),
        &[("Authorization", "Bearer query-token-0123456789")],
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["records"].as_array().unwrap().len(), 1);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn query_api() {
    let (s, _d) = server();
    for n in 0..7u32 {
        let class = if n % 2 == 0 {
            "org.clearlinux/crash/clr"
        } else {
            "org.clearlinux/hello/world"
        };
        let h = with(
            &v4_headers(&format!("{n:032x}")),
            "Classification",
            Some(class),
        );
        let h = with(&h, "Build", Some(if n < 3 { "100" } else { "200" }));
        let r = s.post(
            "/v2/collector",
            &h,
            format!("payload number {n}").as_bytes(),
        );
        assert_eq!(r.status, 201);
    }
    // Keyset pages: newest first, `next` until the last page.
    let p1 = s.get("/api/v1/records?limit=3").json();
    assert_eq!(p1["records"].as_array().unwrap().len(), 3);
    let next = p1["next"].as_i64().unwrap();
    let p2 = s
        .get(&format!("/api/v1/records?limit=3&before_id={next}"))
        .json();
    let next = p2["next"].as_i64().unwrap();
    let p3 = s
        .get(&format!("/api/v1/records?limit=3&before_id={next}"))
        .json();
    assert_eq!(p3["records"].as_array().unwrap().len(), 1);
    assert!(p3["next"].is_null());
    let payloads: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p["records"].as_array().unwrap().clone())
        .map(|r| r["payload"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..7)
        .rev()
        .map(|n| format!("payload number {n}"))
        .collect();
    assert_eq!(payloads, want);

    let crash = records(&s, "?classification=org.clearlinux/crash/*&build=200");
    assert_eq!(crash.len(), 2);
    assert_eq!(records(&s, "?payload_regex=number%20%5B0-2%5D$").len(), 3);
    assert_eq!(
        records(&s, "?not_payload_regex=number%20%5B0-2%5D$").len(),
        4
    );

    let id = crash[0]["id"].as_i64().unwrap();
    let one = s.get(&format!("/api/v1/records/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["identity"].as_str().unwrap().len(), 64);
    assert_eq!(s.get("/api/v1/records/999999").status, 404);
    assert_eq!(s.get("/api/v1/records/abc").status, 400);

    let c = s.get("/api/v1/counts/build").json();
    assert_eq!(
        c["counts"],
        serde_json::json!([{"key": "200", "count": 4}, {"key": "100", "count": 3}])
    );
    let c = s.get("/api/v1/counts/classification?build=100").json();
    assert_eq!(
        c["counts"],
        serde_json::json!([
            {"key": "org.clearlinux/crash/clr", "count": 2},
            {"key": "org.clearlinux/hello/world", "count": 1}
        ])
    );
    assert_eq!(
        s.get("/api/v1/counts/platform").json()["counts"][0]["count"],
        7
    );
    assert_eq!(s.get("/api/v1/counts/day").json()["counts"][0]["count"], 7);
    assert_eq!(s.get("/api/v1/counts/colour").status, 404);

    // Bad parameters are 400 with a message, never a 500.
    for q in [
        "?bogus=1",
        "?severity=high",
        "?payload_regex=(",
        "?limit=0",
        "?limit=5000",
    ] {
        let r = s.get(&format!("/api/v1/records{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.json()["message"].is_string(), "{q}");
    }
}

#[test]
fn health_and_metrics() {
    let (s, _d) = server();
    let r = s.get("/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let h = v4_headers(EVENT);
    s.post("/v2/collector", &h, b"p");
    s.post("/v2/collector", &h, b"p");
    s.post("/v2/collector", &with(&h, "Arch", Some("vax")), b"p");
    s.post(
        "/v2/collector",
        &with(&h, "Payload-Format-Version", Some("x")),
        b"p",
    );
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.content_type.unwrap().starts_with("text/plain"));
    let t = m.body;
    for line in [
        "telem_server_records_ingested_total 1\n",
        "telem_server_records_duplicate_total 1\n",
        "telem_server_records_rejected_total{reason=\"architecture is invalid\"} 1\n",
        "telem_server_records_rejected_total{reason=\"Error parsing payload_format_version\"} 1\n",
        "telem_server_ingest_seconds_count 4\n",
    ] {
        assert!(t.contains(line), "missing {line:?} in\n{t}");
    }
}

#[test]
fn records_answered_before_shutdown_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(dir.path()));
    for n in 0..20u32 {
        let r = s.post("/v2/collector", &v4_headers(&format!("{n:032x}")), b"p");
        assert_eq!(r.status, 201);
    }
    s.stop();
    let s = TestServer::start(common::sqlite_config(dir.path()));
    assert_eq!(records(&s, "?limit=1000").len(), 20);
}

#[test]
fn an_oversized_body_is_413_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::sqlite_config(dir.path());
    cfg.max_body_bytes = 1024;
    let s = TestServer::start(cfg);
    let r = s.post("/v2/collector", &v4_headers(EVENT), &[b'x'; 2048]);
    assert_eq!(r.status, 413);
    assert_eq!(
        s.post("/v2/collector", &v4_headers(EVENT), &[b'x'; 1000])
            .status,
        201
    );
    assert_eq!(records(&s, "").len(), 1);
}
