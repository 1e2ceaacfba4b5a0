//! Query latency on a large PostgreSQL database:
//! `cargo bench -p telem-server --bench query [rows] [--requests N]`.
//!
//! Seeds `rows` (default 1,000,000) realistic records into a private PostgreSQL cluster with
//! COPY: ~50,000 machines, 30 builds, 60 days of reception times in id order, a mix of
//! classifications of which a third are crashes spread over 300 crash groups (a few large, many
//! small). Rows loaded around the server need their crash summaries built: the bench times that
//! step. Then `telem-server` (a child process) answers each query `N` times (default 100) in a
//! row over one kept-alive connection, and the bench prints p50 and p95 per query.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Instant;

use support::seed::percentile;
use support::{agent, Server};

fn main() {
    let (rows, requests) = support::seed::args(100);
    let Some(support::seed::Seeded { target, now, .. }) = support::seed::seeded(rows, "query")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&target, dir.path(), "");
    let base = format!("http://127.0.0.1:{}", server.port);
    let a = agent();
    // A keyset cursor deep in the table: the id a tenth of the way up.
    let deep = rows / 10;
    let week = now - 7 * 86_400;
    let queries = [
        ("records, first page", "/api/v1/records".to_string()),
        (
            "records, crash + build filter",
            "/api/v1/records?classification=org.clearlinux/crash/*&build=40280".to_string(),
        ),
        (
            "records, machine filter",
            format!("/api/v1/records?machine_id={:032x}", 4242),
        ),
        (
            "records, deep keyset page",
            format!("/api/v1/records?before_id={deep}"),
        ),
        (
            "records, filtered deep page",
            format!("/api/v1/records?classification=org.clearlinux/hello/*&before_id={deep}"),
        ),
        ("crashes, all", "/api/v1/crashes".to_string()),
        (
            "crashes, classification + build",
            "/api/v1/crashes?classification=org.clearlinux/crash/clr&build=40280".to_string(),
        ),
        (
            "crashes, last 7 days",
            format!("/api/v1/crashes?since={week}"),
        ),
        ("crashes, build", "/api/v1/crashes?build=40280".to_string()),
        (
            "crashes, last 30 days",
            format!("/api/v1/crashes?since={}", now - 30 * 86_400),
        ),
        (
            "top crashers, 1 day",
            "/api/v1/crashes?window=1".to_string(),
        ),
        (
            "top crashers, 7 days",
            "/api/v1/crashes?window=7".to_string(),
        ),
        (
            "top crashers, 30 days",
            "/api/v1/crashes?window=30".to_string(),
        ),
        (
            "crash group, the largest",
            "/api/v1/crashes/group?function=fn_0&module=/usr/bin/app0".to_string(),
        ),
    ];
    println!("{requests} requests each, one kept-alive connection:");
    for (name, path) in queries {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let mut r = a.get(&url).call().unwrap();
            bytes = r.body_mut().read_to_string().unwrap().len();
            assert_eq!(r.status(), 200, "{path}");
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {name:<34} p50 {:>7.1} ms  p95 {:>7.1} ms  ({bytes} bytes)  {path}",
            percentile(&times, 0.50).as_secs_f64() * 1000.0,
            percentile(&times, 0.95).as_secs_f64() * 1000.0,
        );
    }
    println!(
        "server peak RSS {:.1} MiB",
        server.peak_rss_kib() as f64 / 1024.0
    );
}
