//! The collector stores a record once however often it is posted, answers each repeat as a
//! success, and counts the repeats.

use telem_collector::{Collector, Options};

use crate::common::{post, request, set, v4_headers};

#[test]
fn a_repeat_is_answered_stored_once_and_counted() {
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
    let first = post(c.addr(), "/v2/collector", &v4_headers(), "hello\n");
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post(c.addr(), "/v2/collector", &v4_headers(), "hello\n");
    assert!(matches!(again.status, 200 | 201), "{}", again.body);
    assert_eq!(again.json()["id"], first.json()["id"], "the stored row");
    assert_eq!(c.records().len(), 1);
    assert_eq!(c.duplicates(), 1);
    assert_eq!(std::fs::read_to_string(&store).unwrap().lines().count(), 1);

    // The same event id with another payload, or another value, is another record.
    assert_eq!(
        post(c.addr(), "/v2/collector", &v4_headers(), "other\n").status,
        201
    );
    let h = set(&v4_headers(), "Severity", Some("2"));
    assert_eq!(post(c.addr(), "/v2/collector", &h, "hello\n").status, 201);
    assert_eq!(c.records().len(), 3);
    assert_eq!(c.duplicates(), 1);

    // The HTTP state route reports both counts.
    let st = request(c.addr(), "GET", "/_/state", &[], b"").unwrap();
    assert_eq!(st.status, 200, "{}", st.body);
    assert_eq!(st.json()["records"], 3);
    assert_eq!(st.json()["duplicates"], 1);
}

#[test]
fn the_json_form_and_the_headers_form_of_one_record_are_one_record() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    assert_eq!(
        post(c.addr(), "/v2/collector", &v4_headers(), "same\n").status,
        201
    );
    let mut body = serde_json::Map::new();
    let mut tid = Vec::new();
    for (k, v) in v4_headers() {
        match k.as_str() {
            "X-Telemetry-TID" => tid.push((k, v)),
            "Content-Type" => {}
            _ => {
                body.insert(k.to_ascii_lowercase().replace('-', "_"), v.into());
            }
        }
    }
    body.insert("payload".into(), "same\n".into());
    let r = request(
        c.addr(),
        "POST",
        "/v3/collector",
        &tid,
        serde_json::Value::Object(body).to_string().as_bytes(),
    )
    .unwrap();
    assert!(matches!(r.status, 200 | 201), "{}", r.body);
    assert_eq!(c.records().len(), 1);
    assert_eq!(c.duplicates(), 1);
}
