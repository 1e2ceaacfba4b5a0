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

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolCopyExt as _;
use support::{agent, pg, Server, Target};

/// Reception time of row 0: 60 days before a fixed "now" near the real one.
const DAYS: i64 = 60;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const CLASSES: &[(&str, u64)] = &[
    ("org.clearlinux/crash/clr", 25),
    ("org.clearlinux/crash/unknown", 8),
    ("org.clearlinux/heartbeat/ping", 35),
    ("org.clearlinux/hello/world", 10),
    ("org.clearlinux/kernel/warning", 7),
    ("org.clearlinux/mce/corrected", 5),
    ("org.clearlinux/swupd-client/update", 10),
];

fn builds() -> Vec<String> {
    (0..30).map(|b| (40000 + 10 * b).to_string()).collect()
}

/// One COPY text line (tab separated, `\N` for NULL) for row `n`.
fn line(out: &mut String, rng: &mut Rng, n: u64, rows: u64, now: i64, builds: &[String]) {
    let mut pick = rng.below(100);
    let mut class = CLASSES[0].0;
    for (c, w) in CLASSES {
        if pick < *w {
            class = c;
            break;
        }
        pick -= w;
    }
    let machine = rng.below(50_000);
    // Newer builds are more common: the square pushes the pick towards the end.
    let b = rng.below(30 * 30);
    let build = &builds[(b as f64).sqrt() as usize % 30];
    let ts = now - DAYS * 86_400 + (n as i64 * DAYS * 86_400) / rows as i64;
    let crash = class.starts_with("org.clearlinux/crash/");
    // 300 groups, skewed: group k has weight ~ 1/(k+1).
    let group = if crash {
        let u = rng.below(1_000_000) as f64 / 1_000_000.0;
        Some((300f64.powf(u) - 1.0) as u64)
    } else {
        None
    };
    let payload = match group {
        Some(g) => format!(
            "Process: /usr/bin/app{m}\\nBacktrace (TID 1):\\n#0 raise() - [/usr/lib64/libc.so.6]\\n#1 fn_{g}() - [/usr/bin/app{m}]\\n#2 main() - [/usr/bin/app{m}]\\n",
            m = g % 40
        ),
        None => format!("payload of record {n} {}", "x".repeat(120)),
    };
    let (cf, cm) = match group {
        Some(g) => (format!("fn_{g}"), format!("/usr/bin/app{}", g % 40)),
        None => ("\\N".to_string(), "\\N".to_string()),
    };
    let _ = writeln!(
        out,
        "{n:064x}\theaders\tf\t{machine:032x}\t{class}\t{sev}\t{build}\t6.1.{k}-amd64\tx86_64\t\
         QEMU|Standard PC\tblank|blank\tIntel(R) Core(TM)\t1.16.0\tclear-linux-os\t{n:032x}\t1\t4\t\
         {ts}\t{ts}\t{payload}\t{cf}\t{cm}",
        sev = 1 + rng.below(4),
        k = rng.below(20),
    );
}

const COPY: &str = "COPY records (identity, form, external, machine_id, classification, severity, \
    build, kernel_version, arch, host_type, board_name, cpu_model, bios_version, system_name, \
    event_id, payload_version, record_version, ts_capture, ts_reception, payload, crash_function, \
    crash_module) FROM STDIN";

fn seed(url: &str, target: &Target, rows: u64, now: i64) -> Duration {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        telem_server::store::Store::open(&target.config())
            .await
            .unwrap()
            .close()
            .await;
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut copy = pool.copy_in_raw(COPY).await.unwrap();
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let builds = builds();
        let mut buf = String::new();
        for n in 0..rows {
            line(&mut buf, &mut rng, n, rows, now, &builds);
            if buf.len() > 1 << 20 {
                copy.send(buf.as_bytes()).await.unwrap();
                buf.clear();
            }
        }
        copy.send(buf.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
        // What autovacuum would have done by the time a real table had grown this large.
        sqlx::raw_sql("VACUUM ANALYZE records")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    started.elapsed()
}

/// The step after loading rows around the server (COPY): the crash summaries from the rows.
fn summarise(url: &str, target: &Target) -> Duration {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = telem_server::store::Store::open(&target.config())
            .await
            .unwrap();
        store.rebuild_crash_summaries().await.unwrap();
        store.close().await;
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::raw_sql("VACUUM ANALYZE crash_days, crash_machines")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut rows = 1_000_000u64;
    let mut requests = 100usize;
    while let Some(a) = args.next() {
        if a == "--requests" {
            requests = args
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(100)
                .max(1);
        } else if let Ok(n) = a.parse() {
            rows = n;
        }
    }
    let Some(pg) = pg::cluster() else {
        println!("query bench skipped: no PostgreSQL here");
        return;
    };
    let url = pg.database();
    let target = Target::Postgres(url.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let took = seed(&url, &target, rows, now);
    println!(
        "seeded {rows} rows with COPY in {:.1} s (then VACUUM ANALYZE)",
        took.as_secs_f64()
    );
    let took = summarise(&url, &target);
    println!(
        "built the crash summaries from the rows in {:.1} s (then VACUUM ANALYZE)",
        took.as_secs_f64()
    );
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
