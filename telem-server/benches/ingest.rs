//! Ingest throughput:
//! `cargo bench -p telem-server --bench ingest -- [records] [senders] [--rounds N] [--batch-max N]`.
//!
//! Per engine (SQLite, then PostgreSQL on a private cluster with `fsync` on, started like the
//! tests'; skipped with a note when PostgreSQL is not installed), in one run:
//!
//! - **server**: `telem-server` as a child process, `senders` threads (default 8) each posting
//!   distinct records over one kept-alive connection, as telempostd does; records/s, and the
//!   server's peak resident size (VmHWM) read from /proc when it has taken them all;
//! - **bulk**: the same rows inserted into a fresh database of the same engine with multi-row
//!   INSERTs of 1000 rows per statement (each statement its own transaction, SQLite with the
//!   server's WAL and `synchronous = FULL`), the fastest way in without the protocol;
//! - **collector**: the same senders against the in-memory test collector in a process of its
//!   own (this binary re-run with `--collector-child`): the HTTP and protocol ceiling;
//! - **batches**: the server's own `insert_batch` called in-process with `senders` rows at a
//!   time on a fresh database: one durable commit without HTTP; on SQLite also the WAL bytes of
//!   one such commit and the time of one `fdatasync` of that many bytes in the same directory;
//!
//! and the ratio of server to bulk, with where the time goes (records per commit and the mean
//! time in the handler, from the server's `/metrics`) and the bound `senders / (commit + round
//! trip at the ceiling)`. `--batch-max N` sets the server's `ingest.batch_max` (1: a commit per
//! record, to see what group commit gives); on PostgreSQL each round also runs the server with
//! two writers instead of one. `--rounds N` repeats them all N times and prints
//! each round and the medians, so a busy machine shows its noise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Instant;

use support::{agent, pg, Server, Target};
use telem_server::config::DEFAULT_TID;
use telem_server::store::NewRecord;
use telemetry::collector_protocol::{check_request, header_fields, Form, HeaderText};

const BULK: usize = 1000;

fn headers(n: u64) -> Vec<(String, String)> {
    [
        ("X-Telemetry-TID", DEFAULT_TID.to_string()),
        ("Record-Format-Version", "4".into()),
        ("Classification", "org.clearlinux/hello/world".into()),
        ("Severity", "1".into()),
        ("Machine-Id", format!("{:032x}", n % 5000)),
        ("Creation-Timestamp", "1700000000".into()),
        ("Arch", "x86_64".into()),
        ("Host-Type", "QEMU|Standard PC".into()),
        ("Build", "40000".into()),
        ("Kernel-Version", "6.1.0-13-amd64".into()),
        ("Payload-Format-Version", "1".into()),
        ("System-Name", "clear-linux-os".into()),
        ("Board-Name", "blank|blank".into()),
        ("Cpu-Model", "Intel(R) Core(TM)".into()),
        ("Bios-Version", "1.16.0".into()),
        ("Event-Id", format!("{n:032x}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn payload(n: u64) -> String {
    format!("hello from record {n}: {}\n", "x".repeat(200))
}

/// Row `n` as the server stores it (its checks, its identity).
fn row(n: u64) -> NewRecord {
    let h = headers(n);
    let fields = header_fields(
        h.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        HeaderText::Utf8OrLatin1,
    );
    let body = payload(n);
    let sub = check_request(Form::Headers, &fields, body.as_bytes(), DEFAULT_TID).unwrap();
    let ts_capture = sub.accepted.ts_capture as i64;
    NewRecord::from_submission(sub, Form::Headers, ts_capture, 1_700_000_100, None)
}

/// What one run through the server measured.
struct Run {
    rate: f64,
    rss_kib: u64,
    /// Records per committed transaction (group commit at work).
    per_commit: f64,
    /// Mean time a request spent in the server's handler (checks, queue, commit), ms.
    handler_ms: f64,
}

/// The value of the unlabelled metric `name` in a `/metrics` text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Posts rows `0..records` to `url` from `senders` threads, each on one kept-alive connection
/// waiting for every answer (201) before its next record, as telempostd does; records/s.
fn send_all(url: &str, records: u64, senders: u64) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..senders {
            s.spawn(move || {
                let agent = agent();
                let mut n = t;
                while n < records {
                    let mut req = agent.post(url);
                    for (k, v) in headers(n) {
                        req = req.header(k, v);
                    }
                    let r = req.send(payload(n)).unwrap();
                    assert_eq!(r.status(), 201);
                    n += senders;
                }
            });
        }
    });
    records as f64 / started.elapsed().as_secs_f64()
}

/// Records/s through the server with `senders` kept-alive clients, and what its metrics say.
fn through_server(target: &Target, dir: &Path, extra: &str, records: u64, senders: u64) -> Run {
    let server = Server::start(target, dir, extra);
    let url = format!("http://127.0.0.1:{}/v2/collector", server.port);
    let rate = send_all(&url, records, senders);
    let m = agent()
        .get(format!("http://127.0.0.1:{}/metrics", server.port))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    Run {
        rate,
        rss_kib: server.peak_rss_kib(),
        per_commit: metric(&m, "telem_server_records_ingested_total")
            / metric(&m, "telem_server_commits_total"),
        handler_ms: 1000.0 * metric(&m, "telem_server_ingest_seconds_sum")
            / metric(&m, "telem_server_ingest_seconds_count"),
    }
}

/// The argument that makes this binary the in-memory collector of [`through_collector`].
const COLLECTOR_CHILD: &str = "--collector-child";

/// The test collector (`tools/telem-collector`: the same protocol checks from the shared core,
/// a hyper HTTP/1 server, records kept in memory, the 201 sent right after the check) in a
/// process of its own, as the server is: prints its port, serves until its stdin closes.
fn collector_child() {
    use std::io::{BufRead as _, Write as _};
    let c = telem_collector::Collector::start("127.0.0.1:0", telem_collector::Options::default())
        .unwrap();
    println!("{}", c.addr().port());
    std::io::stdout().flush().unwrap();
    for _ in std::io::stdin().lock().lines() {}
    c.stop();
}

/// Records/s through the in-memory collector with the same senders: the HTTP and protocol
/// ceiling, what no durable store behind the same requests can beat.
fn through_collector(records: u64, senders: u64) -> f64 {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(COLLECTOR_CHILD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let rate = send_all(
        &format!("http://127.0.0.1:{port}/v2/collector"),
        records,
        senders,
    );
    drop(child.stdin.take());
    child.wait().unwrap();
    rate
}

/// Milliseconds of one `fdatasync` after rewriting `bytes` in place in a file of `dir` (as
/// SQLite rewrites its WAL once a checkpoint has reset it): the disk's floor under one commit.
/// The median and the mean of 200.
fn fdatasync_ms(dir: &Path, bytes: u64) -> (f64, f64) {
    use std::os::unix::fs::FileExt as _;
    const RING: u64 = 4 << 20;
    let path = dir.join("fdatasync-probe");
    let f = std::fs::File::create(&path).unwrap();
    f.write_all_at(&vec![0u8; RING as usize], 0).unwrap();
    f.sync_all().unwrap();
    let block = vec![0x5au8; bytes.max(1) as usize];
    let mut times = Vec::new();
    let mut at = 0;
    for _ in 0..200 {
        if at + bytes > RING {
            at = 0;
        }
        let started = Instant::now();
        f.write_all_at(&block, at).unwrap();
        f.sync_data().unwrap();
        times.push(1000.0 * started.elapsed().as_secs_f64());
        at += bytes;
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    (median(times), mean)
}

/// Records/s of the server's own `insert_batch` called in-process with `per` rows at a time
/// (what 8 senders that each wait for their answer hand the writer), on a fresh database: the
/// most the server could ingest if HTTP cost nothing. On SQLite also the bytes one such commit
/// appends to the WAL, from `more` rows committed after a checkpoint has emptied it (fewer
/// than the autocheckpoint's 1000 pages, so none runs in between).
fn batches(target: &Target, rows: &[NewRecord], more: &[NewRecord], per: usize) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection as _;
        let store = telem_server::store::Store::open(&target.config())
            .await
            .unwrap();
        let started = Instant::now();
        for chunk in rows.chunks(per) {
            store.insert_batch(chunk).await.unwrap();
        }
        let rate = rows.len() as f64 / started.elapsed().as_secs_f64();
        let mut wal = 0;
        if let Target::Sqlite(path) = target {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
            let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
                .unwrap();
            let mut commits = 0;
            for chunk in more.chunks(per) {
                store.insert_batch(chunk).await.unwrap();
                commits += 1;
            }
            let len = std::fs::metadata(format!("{}-wal", path.display()))
                .unwrap()
                .len();
            wal = len / commits.max(1);
            conn.close().await.unwrap();
        }
        store.close().await;
        (rate, wal)
    })
}

const COLUMNS: &str = "identity, form, external, machine_id, classification, severity, build, \
    kernel_version, arch, host_type, board_name, cpu_model, bios_version, system_name, event_id, \
    payload_version, record_version, ts_capture, ts_reception, payload, crash_function, \
    crash_module";

/// Pushes the values of `rows` into a multi-row INSERT.
macro_rules! bulk_insert {
    ($db:ty, $pool:expr, $rows:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO records ({COLUMNS}) "));
        q.push_values($rows, |mut b, r: &NewRecord| {
            b.push_bind(r.identity.clone())
                .push_bind(r.form.clone())
                .push_bind(r.external)
                .push_bind(r.machine_id.clone())
                .push_bind(r.classification.clone())
                .push_bind(r.severity)
                .push_bind(r.build.clone())
                .push_bind(r.kernel_version.clone())
                .push_bind(r.arch.clone())
                .push_bind(r.host_type.clone())
                .push_bind(r.board_name.clone())
                .push_bind(r.cpu_model.clone())
                .push_bind(r.bios_version.clone())
                .push_bind(r.system_name.clone())
                .push_bind(r.event_id.clone())
                .push_bind(r.payload_version)
                .push_bind(r.record_version)
                .push_bind(r.ts_capture)
                .push_bind(r.ts_reception)
                .push_bind(r.payload.clone())
                .push_bind(None::<String>)
                .push_bind(None::<String>);
        });
        q.push(" ON CONFLICT (identity) DO NOTHING");
        q.build().execute($pool).await.unwrap();
    }};
}

/// Records/s of the same rows inserted `BULK` per statement into a fresh database.
fn bulk(target: &Target, rows: &[NewRecord]) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The server's schema, made by the server's own migrations.
        telem_server::store::Store::open(&target.config())
            .await
            .unwrap()
            .close()
            .await;
        match target {
            Target::Sqlite(path) => {
                use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full);
                let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
                let started = Instant::now();
                for chunk in rows.chunks(BULK) {
                    bulk_insert!(sqlx::Sqlite, &pool, chunk);
                }
                let rate = rows.len() as f64 / started.elapsed().as_secs_f64();
                pool.close().await;
                rate
            }
            Target::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let started = Instant::now();
                for chunk in rows.chunks(BULK) {
                    bulk_insert!(sqlx::Postgres, &pool, chunk);
                }
                let rate = rows.len() as f64 / started.elapsed().as_secs_f64();
                pool.close().await;
                rate
            }
        }
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut numbers = Vec::new();
    let mut rounds = 1usize;
    let mut extra = String::new();
    while let Some(a) = args.next() {
        if a == COLLECTOR_CHILD {
            return collector_child();
        } else if a == "--batch-max" {
            let n: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(256);
            extra = format!("batch_max = {n}\n");
        } else if a == "--rounds" {
            rounds = args.next().and_then(|r| r.parse().ok()).unwrap_or(1).max(1);
        } else if let Ok(n) = a.parse::<u64>() {
            numbers.push(n);
        }
    }
    let records = numbers.first().copied().unwrap_or(4000);
    let senders = numbers.get(1).copied().unwrap_or(8);
    let rows: Vec<NewRecord> = (0..records).map(row).collect();
    // Rows beyond the others, for the WAL measure after the timed batches.
    let more: Vec<NewRecord> = (records..records + 20 * senders).map(row).collect();
    let dir = tempfile::tempdir().unwrap();
    // Durable commits on PostgreSQL too, as the server promises them (the tests' cluster runs
    // without fsync).
    let pg = pg::durable_cluster();
    let mut fresh = 0;
    let mut target = |engine: &str| {
        fresh += 1;
        match engine {
            "sqlite" => Some(Target::Sqlite(dir.path().join(format!("db{fresh}.sqlite")))),
            _ => pg.map(|pg| Target::Postgres(pg.database())),
        }
    };
    for engine in ["sqlite", "postgres"] {
        let (mut ratios, mut ceilings, mut bounds) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=rounds {
            let (Some(server_db), Some(bulk_db), Some(batch_db)) =
                (target(engine), target(engine), target(engine))
            else {
                println!("{engine}: skipped (no PostgreSQL here)");
                break;
            };
            let run = through_server(
                &server_db,
                dir.path(),
                &format!("[ingest]\n{extra}"),
                records,
                senders,
            );
            // PostgreSQL can run two writers (`ingest.writers`): the same with two, for the
            // difference.
            let two_writers = (engine == "postgres").then(|| {
                let db = target(engine).unwrap();
                let cfg = format!("[ingest]\n{extra}writers = 2\n");
                through_server(&db, dir.path(), &cfg, records, senders)
            });
            let ceiling = through_collector(records, senders);
            let base = bulk(&bulk_db, &rows);
            let (direct, wal) = batches(&batch_db, &rows, &more, senders as usize);
            let ratio = run.rate / base;
            let commit_ms = 1000.0 * senders as f64 / direct;
            let trip_ms = 1000.0 * senders as f64 / ceiling;
            // Each sender waits for its durable answer: at best all of them share every
            // commit and their requests cost what they cost the collector.
            let bound = 1000.0 * senders as f64 / (commit_ms + trip_ms);
            ratios.push(ratio);
            ceilings.push(ceiling / base);
            bounds.push(bound / base);
            println!(
                "{engine} round {round}: server {:.0} records/s ({senders} senders, kept-alive), \
                 bulk {base:.0} records/s ({BULK} rows per INSERT), ratio {ratio:.2}, \
                 server peak RSS {:.1} MiB\n  where the time goes: {:.1} records per commit, \
                 {:.2} ms per request in the handler, {:.2} ms per request round trip per sender\n  \
                 ceilings: in-memory collector {ceiling:.0} records/s (ratio {:.2}, {trip_ms:.2} ms \
                 round trip per sender); insert_batch of {senders} rows in-process {direct:.0} \
                 records/s ({commit_ms:.2} ms per batch, ratio {:.2})",
                run.rate,
                run.rss_kib as f64 / 1024.0,
                run.per_commit,
                run.handler_ms,
                1000.0 * senders as f64 / run.rate,
                ceiling / base,
                direct / base,
            );
            if let Some(two) = &two_writers {
                println!(
                    "  two writers instead of one: server {:.0} records/s, ratio {:.2}, \
                     {:.1} records per commit, {:.2} ms per request in the handler",
                    two.rate,
                    two.rate / base,
                    two.per_commit,
                    two.handler_ms
                );
            }
            if wal > 0 {
                let (p50, mean) = fdatasync_ms(dir.path(), wal);
                println!(
                    "  commit floor: a batch of {senders} appends {:.0} KiB to the WAL; \
                     fdatasync of that much here: {p50:.2} ms median, {mean:.2} ms mean",
                    wal as f64 / 1024.0
                );
            }
            println!(
                "  bound: {senders} / ({commit_ms:.2} ms commit + {trip_ms:.2} ms round trip) = \
                 {bound:.0} records/s, ratio {:.2} to bulk; the server reaches {:.2} of it",
                bound / base,
                run.rate / bound
            );
        }
        if !ratios.is_empty() {
            println!(
                "{engine}: median ratio {:.2}, bound {:.2}, collector ceiling {:.2} over {} rounds \
                 ({records} records)",
                median(ratios.clone()),
                median(bounds),
                median(ceilings),
                ratios.len()
            );
        }
    }
}
