//! The benchmarks' database: `rows` realistic records COPYed into PostgreSQL.
//!
//! ~50,000 machines, 30 builds (newer ones more common), 60 days of reception times in id
//! order, a mix of classifications of which a third are crashes spread over 300 crash groups (a
//! few large, many small), and the machine-check, memory and thermal records of rasprobe in the
//! few-percent share a fleet sends.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolCopyExt as _;

use super::Target;

/// Reception time of row 0: 60 days before a fixed "now" near the real one.
pub const DAYS: i64 = 60;

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
    ("org.clearlinux/hello/world", 7),
    ("org.clearlinux/kernel/warning", 7),
    ("org.clearlinux/mce/corrected", 4),
    ("org.clearlinux/mce/thermal", 2),
    ("org.clearlinux/memory/corrected", 1),
    ("org.clearlinux/pcie/aer", 1),
    ("org.clearlinux/swupd-client/update", 10),
];

pub fn builds() -> Vec<String> {
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

pub fn seed(url: &str, target: &Target, rows: u64, now: i64) -> Duration {
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

/// Folds the summary tables' pending changes (what the COPY's triggers left behind); how long
/// it took.
pub fn fold_summaries(target: &Target) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = telem_server::store::Store::open(&target.config())
            .await
            .unwrap();
        let started = Instant::now();
        store.fold_summaries().await.unwrap();
        let took = started.elapsed();
        store.close().await;
        took
    })
}

/// The step after loading rows around the server (COPY): the crash summaries from the rows.
pub fn rebuild_crash_summaries(url: &str, target: &Target) -> Duration {
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
        sqlx::raw_sql("VACUUM ANALYZE crash_days, crash_machines, crash_group_days")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    started.elapsed()
}

/// What the overview and population cost counted from the records themselves (the plain
/// queries the summaries replace), fastest of `runs`: (overview, population).
pub fn plain_page_queries(url: &str, now: i64, runs: usize) -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let since = (now.div_euclid(86_400) - 29) * 86_400;
        let day = "to_char(to_timestamp(ts_reception) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
        let mut overview = Duration::MAX;
        let mut population = Duration::MAX;
        for _ in 0..runs {
            let t = Instant::now();
            sqlx::query(&format!(
                "SELECT {day} AS d, classification, COUNT(*) FROM records \
                 WHERE ts_reception >= $1 GROUP BY 1, 2"
            ))
            .bind(since)
            .fetch_all(&pool)
            .await
            .unwrap();
            for key in [
                "CAST(severity AS TEXT)",
                "classification",
                "build",
                "host_type",
            ] {
                sqlx::query(&format!(
                    "SELECT {key} AS k, COUNT(*) AS n FROM records WHERE ts_reception >= $1 \
                     GROUP BY k ORDER BY n DESC, k"
                ))
                .bind(since)
                .fetch_all(&pool)
                .await
                .unwrap();
            }
            overview = overview.min(t.elapsed());
            let t = Instant::now();
            let mut q = sqlx::query(
                "SELECT build, COUNT(DISTINCT machine_id) AS all_n, \
                 COUNT(DISTINCT CASE WHEN ts_reception >= $2 THEN machine_id END) AS d1, \
                 COUNT(DISTINCT CASE WHEN ts_reception >= $3 THEN machine_id END) AS d3, \
                 COUNT(DISTINCT CASE WHEN ts_reception >= $4 THEN machine_id END) AS d7, \
                 COUNT(DISTINCT CASE WHEN ts_reception >= $5 THEN machine_id END) AS d14 \
                 FROM records WHERE classification = $1 GROUP BY build",
            )
            .bind("org.clearlinux/heartbeat/ping");
            for days in [1i64, 3, 7, 14] {
                q = q.bind(now - days * 86_400);
            }
            q.fetch_all(&pool).await.unwrap();
            population = population.min(t.elapsed());
        }
        pool.close().await;
        (overview, population)
    })
}

/// `[rows] [--requests N]`, the arguments of the large-database benches.
pub fn args(default_requests: usize) -> (u64, usize) {
    let mut args = std::env::args().skip(1);
    let mut rows = 1_000_000u64;
    let mut requests = default_requests;
    while let Some(a) = args.next() {
        if a == "--requests" {
            requests = args
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(default_requests)
                .max(1);
        } else if let Ok(n) = a.parse() {
            rows = n;
        }
    }
    (rows, requests)
}

/// A private cluster's database with `rows` records COPYed in, the summaries folded and the
/// crash summaries built, each step timed on stdout; `None` without PostgreSQL.
pub struct Seeded {
    pub url: String,
    pub target: Target,
    pub now: i64,
}

pub fn seeded(rows: u64, bench: &str) -> Option<Seeded> {
    let Some(pg) = super::pg::cluster() else {
        println!("{bench} bench skipped: no PostgreSQL here");
        return None;
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
    let took = fold_summaries(&target);
    println!("folded the summaries in {:.1} s", took.as_secs_f64());
    let took = rebuild_crash_summaries(&url, &target);
    println!(
        "built the crash summaries from the rows in {:.1} s (then VACUUM ANALYZE)",
        took.as_secs_f64()
    );
    Some(Seeded { url, target, now })
}

/// The `p` quantile of sorted durations (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
