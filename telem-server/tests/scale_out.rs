//! Several servers against one database behave as one: the same record posted to two
//! instances at once is one row. PostgreSQL is the scale-out engine; SQLite (two processes on
//! one file) must hold the same promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{v4_headers, TestServer};
use telem_server::Config;

fn same_record_to_two_instances(cfg: Config) {
    let a = TestServer::start(cfg.clone());
    let b = TestServer::start(cfg);
    // Ten records, each posted four times to each instance, all at once.
    let urls = [a.url("/v2/collector"), b.url("/v2/collector")];
    let statuses: Vec<(u32, u16)> = std::thread::scope(|sc| {
        let mut hs = Vec::new();
        for copy in 0..8 {
            let url = &urls[copy % 2];
            hs.push(sc.spawn(move || {
                (0..10u32)
                    .map(|n| {
                        let h = v4_headers(&format!("{n:032x}"));
                        (n, common::post(url, &h, b"scale-out").status)
                    })
                    .collect::<Vec<_>>()
            }));
        }
        hs.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    for n in 0..10u32 {
        let codes: Vec<u16> = statuses
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(
            codes.iter().filter(|&&c| c == 201).count(),
            1,
            "record {n}: {codes:?}"
        );
        assert!(
            codes.iter().all(|&c| c == 200 || c == 201),
            "record {n}: {codes:?}"
        );
    }
    for s in [&a, &b] {
        let r = s.get("/api/v1/records?limit=1000");
        assert_eq!(r.json()["records"].as_array().unwrap().len(), 10);
    }
}

#[test]
fn postgres_two_instances_one_row_per_record() {
    let Some(pg) = common::pg::cluster() else {
        return;
    };
    same_record_to_two_instances(common::pg_config(&pg.database()));
}

#[test]
fn sqlite_two_instances_one_row_per_record() {
    let dir = tempfile::tempdir().unwrap();
    same_record_to_two_instances(common::sqlite_config(dir.path()));
}

#[test]
fn a_record_postgres_cannot_hold_is_refused_not_retried() {
    let Some(pg) = common::pg::cluster() else {
        return;
    };
    let s = TestServer::start(common::pg_config(&pg.database()));
    let r = s.post("/v2/collector", &v4_headers(common::EVENT), b"nul \0 byte");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Record cannot be stored"));
    let ok = s.post("/v2/collector", &v4_headers(common::EVENT), b"no nul");
    assert_eq!(ok.status, 201);
    let m = s.get("/metrics").body;
    assert!(m.contains("reason=\"unstorable\"} 1\n"), "{m}");
}
