//! The views of the second increment over HTTP, on both engines: crash groups from records
//! posted through the collector, the heartbeat population, and the CSV and JSON-lines export.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{v4_headers, with, TestServer};
use serde_json::Value;
use telem_server::store::{NewRecord, Store};

const CRASH: &str = "Process: /usr/bin/app\nPID: 100\nSignal: 6\n\nBacktrace (TID 100):\n\
    #0 __pthread_kill_implementation() - [/usr/lib64/libc.so.6] - pthread_kill.c:44\n\
    #1 raise() - [/usr/lib64/libc.so.6] - raise.c:26\n\
    #2 abort() - [/usr/lib64/libc.so.6] - abort.c:79\n\
    #3 parse_config() - [/usr/bin/app] - /src/app.c:42\n\
    #4 main() - [/usr/bin/app] - /src/app.c:60\n";

fn post(s: &TestServer, event: u32, class: &str, machine: &str, payload: &str) -> i64 {
    let h = with(
        &v4_headers(&format!("{event:032x}")),
        "Classification",
        Some(class),
    );
    let h = with(&h, "Machine-Id", Some(machine));
    let r = s.post("/v2/collector", &h, payload.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_i64().unwrap()
}

fn crashes_population_and_export(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    let crash = post(&s, 1, "org.clearlinux/crash/clr", "aaaa", CRASH);
    post(&s, 2, "org.clearlinux/crash/clr", "bbbb", CRASH);
    let odd = post(&s, 3, "org.clearlinux/hello/world", "aaaa", "a,\"b\"\nc");
    post(&s, 4, "org.clearlinux/heartbeat/ping", "aaaa", "alive\n");
    post(&s, 5, "org.clearlinux/heartbeat/ping", "bbbb", "alive\n");
    post(
        &s,
        6,
        "org.clearlinux/heartbeat/ping",
        "aaaa",
        "alive again\n",
    );

    // The signature was computed at ingest and is part of the record.
    let r = s.get(&format!("/api/v1/records/{crash}")).json();
    assert_eq!(r["crash_function"], "parse_config");
    assert_eq!(r["crash_module"], "/usr/bin/app");
    assert!(s.get(&format!("/api/v1/records/{odd}")).json()["crash_function"].is_null());

    let g = s.get("/api/v1/crashes").json();
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{g}");
    assert_eq!(groups[0]["function"], "parse_config");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["machines"], 2);
    assert_eq!(groups[0]["builds"], serde_json::json!(["40000"]));
    assert!(groups[0]["first_seen"].as_i64().unwrap() <= groups[0]["last_seen"].as_i64().unwrap());
    assert_eq!(
        s.get("/api/v1/crashes?build=1").json()["groups"],
        serde_json::json!([])
    );
    assert_eq!(s.get("/api/v1/crashes?limit=0").status, 400);
    let members = s.get("/api/v1/records?crash_function=parse_config&crash_module=/usr/bin/app");
    assert_eq!(members.json()["records"].as_array().unwrap().len(), 2);

    let p = s.get("/api/v1/population").json();
    assert_eq!(
        p["builds"],
        serde_json::json!([{"build": "40000", "all": 2, "last_1_days": 2, "last_3_days": 2,
            "last_7_days": 2, "last_14_days": 2}])
    );

    // CSV: header, newest first, fields quoted where they must be.
    let csv = s.get("/api/v1/export.csv?classification=org.clearlinux/hello/*");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type.as_deref(), Some("text/csv; charset=utf-8"));
    let stored = s.get(&format!("/api/v1/records/{odd}")).json();
    assert_eq!(
        csv.body,
        format!(
            "id,external,ts_reception,severity,classification,build,machine_id,payload,\
             crash_function,crash_module\r\n\
             {odd},false,{},1,org.clearlinux/hello/world,40000,aaaa,\"a,\"\"b\"\"\nc\",,\r\n",
            stored["ts_reception"].as_str().unwrap()
        )
    );
    let crash_csv = s.get("/api/v1/export.csv?classification=org.clearlinux/crash/clr");
    assert!(
        crash_csv.body.ends_with(",parse_config,/usr/bin/app\r\n"),
        "{}",
        crash_csv.body
    );
    // An empty result is the header alone.
    let none = s.get("/api/v1/export.csv?build=1");
    assert_eq!(none.body.lines().count(), 1);

    // JSON lines: one record object per line, the objects of the records API.
    let jl = s.get("/api/v1/export.jsonl");
    assert_eq!(jl.status, 200);
    assert_eq!(jl.content_type.as_deref(), Some("application/jsonl"));
    let lines: Vec<Value> = jl
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let listed = s.get("/api/v1/records").json();
    assert_eq!(Value::Array(lines), listed["records"]);
    assert_eq!(
        s.get("/api/v1/export.jsonl?limit=2").body.lines().count(),
        2
    );
    assert_eq!(s.get("/api/v1/export.csv?payload_regex=(").status, 400);
    assert_eq!(s.get("/api/v1/export.csv?nope=1").status, 400);
}
server_on_both_engines!(crashes_population_and_export);

/// A hello record received at `ts_reception`.
fn hello(n: u32, ts_reception: i64) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: format!("m{n}"),
        classification: "org.clearlinux/hello/world".into(),
        severity: 1,
        build: "40000".into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "QEMU".into(),
        board_name: "b".into(),
        cpu_model: "c".into(),
        bios_version: "1".into(),
        system_name: "clear-linux-os".into(),
        event_id: format!("{n:032x}"),
        payload_version: 1,
        record_version: 4,
        ts_capture: 1_700_000_000,
        ts_reception,
        payload: format!("payload {n}"),
        crash: None,
    }
}

fn export_spans_many_pages(cfg: telem_server::Config) {
    // Stored before the server starts (faster than 2500 posts).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&cfg).await.unwrap();
        let recs: Vec<NewRecord> = (0..2500u32).map(|n| hello(n, 1_700_000_000)).collect();
        store.insert_batch(&recs).await.unwrap();
        store.close().await;
    });
    let s = TestServer::start(cfg);
    let ids = |query: &str| -> Vec<i64> {
        let r = s.get(&format!("/api/v1/export.jsonl{query}"));
        assert_eq!(r.status, 200);
        r.body
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    let all = ids("");
    assert_eq!(all.len(), 2500);
    assert!(
        all.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert_eq!(ids("?limit=1500"), all[..1500].to_vec());
    assert_eq!(
        ids(&format!("?before_id={}", all[1999])),
        all[2000..].to_vec()
    );
    let csv = s.get("/api/v1/export.csv");
    assert_eq!(csv.body.lines().count(), 2501);
}
server_on_both_engines!(export_spans_many_pages);

fn the_server_purges_at_start(mut cfg: telem_server::Config) {
    let now = telem_server::store::schema::unix_now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open(&cfg).await.unwrap();
        store
            .insert_batch(&[hello(1, now - 3 * 86_400), hello(2, now)])
            .await
            .unwrap();
        store.close().await;
    });
    cfg.retention
        .classification
        .insert("org.clearlinux/hello/*".into(), 2);
    let s = TestServer::start(cfg);
    // The first purge runs as the server starts; generous bound for busy machines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = s.get("/api/v1/records").json()["records"]
            .as_array()
            .unwrap()
            .len();
        if left == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} records left");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = s.get("/api/v1/records").json();
    assert_eq!(r["records"][0]["payload"], "payload 2");
}
server_on_both_engines!(the_server_purges_at_start);
