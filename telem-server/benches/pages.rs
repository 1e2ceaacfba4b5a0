//! Page render time on a large PostgreSQL database:
//! `cargo bench -p telem-server --bench pages [rows] [--requests N]`.
//!
//! Seeds `rows` (default 1,000,000) records as the query bench does (see `support/seed.rs`),
//! folds the summary tables' pending changes (timed: the step an operator runs after loading
//! rows behind the server's back), then starts `telem-server` with a query token, logs in once
//! through the login form and GETs every page `N` times (default 30) with the session cookie
//! over one kept-alive connection. Prints p50 and p95 per page and the server's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::seed::percentile;
use support::Server;

const TOKEN: &str = "page-bench-query-token-0123456789";

/// The value of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden input") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

/// Logs in through the form; the session cookie (`name=value`).
fn login(a: &ureq::Agent, base: &str) -> String {
    let mut r = a.get(format!("{base}/login")).call().unwrap();
    let csrf = hidden(&r.body_mut().read_to_string().unwrap(), "csrf");
    let body = format!("token={TOKEN}&csrf={csrf}&next=%2F");
    let r = a
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(r.status(), 303, "login");
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

fn main() {
    let (rows, requests) = support::seed::args(30);
    let Some(support::seed::Seeded { url, target, now }) = support::seed::seeded(rows, "pages")
    else {
        return;
    };
    let (overview, population) = support::seed::plain_page_queries(&url, now, 3);
    println!(
        "counted from the records instead (fastest of 3): overview {:.0} ms, population {:.0} ms",
        overview.as_secs_f64() * 1000.0,
        population.as_secs_f64() * 1000.0
    );

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&target, dir.path(), &format!("query_token = \"{TOKEN}\""));
    let base = format!("http://127.0.0.1:{}", server.port);
    let a: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .max_redirects(0)
        .build()
        .into();
    let cookie = login(&a, &base);
    let deep = rows / 10;
    let newest = rows;
    // Group 0 of the seeder is the largest.
    let pages = [
        ("overview", "/".to_string()),
        ("records", "/records".to_string()),
        (
            "records, crash/* + build",
            "/records?classification=org.clearlinux%2Fcrash%2F*&build=40280".to_string(),
        ),
        ("records, deep page", format!("/records?before_id={deep}")),
        ("record", format!("/records/{}", rows / 2)),
        (
            "records poll",
            format!("/records/poll?after_id={}", newest - 20),
        ),
        ("population", "/population".to_string()),
        ("hardware", "/hardware".to_string()),
        ("crashes, 1 day", "/crashes?window=1".to_string()),
        ("crashes, 7 days", "/crashes?window=7".to_string()),
        ("crashes, 30 days", "/crashes?window=30".to_string()),
        (
            "crash group, largest",
            "/crashes/group?function=fn_0&module=%2Fusr%2Fbin%2Fapp0".to_string(),
        ),
        ("skip list", "/crashes/skip".to_string()),
    ];
    println!("{requests} requests each, one kept-alive connection, logged in:");
    for (name, path) in pages {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let mut r = a
                .get(&url)
                .header("Cookie", cookie.as_str())
                .call()
                .unwrap();
            bytes = r.body_mut().read_to_string().unwrap().len();
            assert_eq!(r.status(), 200, "{path}");
            times.push(t.elapsed());
        }
        times.sort();
        let p95 = percentile(&times, 0.95);
        println!(
            "  {name:<26} p50 {:>7.1} ms  p95 {:>7.1} ms {} ({bytes} bytes)  {path}",
            percentile(&times, 0.50).as_secs_f64() * 1000.0,
            p95.as_secs_f64() * 1000.0,
            if p95 < Duration::from_millis(200) {
                "  "
            } else {
                "!!"
            },
        );
    }
    println!(
        "server peak RSS {:.1} MiB",
        server.peak_rss_kib() as f64 / 1024.0
    );
}
