//! Test harness: a server on its own thread and runtime, HTTP helpers, good records, and a
//! private PostgreSQL cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pg;

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use telem_server::config::{Config, Engine, DEFAULT_TID};
use tokio::sync::oneshot;

pub const TID: &str = DEFAULT_TID;

/// A config for a loopback server on an SQLite file under `dir`.
pub fn sqlite_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.storage.engine = Engine::Sqlite;
    c.storage.path = dir.join("records.db");
    c
}

/// A config for a loopback server on the PostgreSQL database at `url`.
pub fn pg_config(url: &str) -> Config {
    let mut c = Config::default();
    c.storage.engine = Engine::Postgres;
    c.storage.url = Some(url.to_string());
    c
}

/// A running server. Stops (gracefully) on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(cfg: Config) -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                telem_server::run(&cfg, l, async {
                    let _ = rx.await;
                })
                .await
                .expect("server failed");
            });
        });
        TestServer {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn post(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
        post(&self.url(path), headers, body)
    }

    pub fn get(&self, path: &str) -> Reply {
        get(&self.url(path), &[])
    }

    /// Stops and waits for the server to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        }
    }
}

/// Status, headers of interest and body of an answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: Option<String>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(mut r: ureq::http::Response<ureq::Body>) -> Reply {
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Reply {
        status: r.status().as_u16(),
        body: r.body_mut().read_to_string().unwrap(),
        content_type,
    }
}

pub fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    reply(req.send(body).unwrap())
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call().unwrap())
}

/// The headers of a good record-format-4 record with this event id.
pub fn v4_headers(event_id: &str) -> Vec<(String, String)> {
    [
        ("X-Telemetry-TID", TID),
        ("Record-Format-Version", "4"),
        ("Classification", "org.clearlinux/hello/world"),
        ("Severity", "1"),
        ("Machine-Id", "0123456789abcdef0123456789abcdef"),
        ("Creation-Timestamp", "1700000000"),
        ("Arch", "x86_64"),
        ("Host-Type", "QEMU|Standard PC"),
        ("Build", "40000"),
        ("Kernel-Version", "6.1.0-13-amd64"),
        ("Payload-Format-Version", "1"),
        ("System-Name", "clear-linux-os"),
        ("Board-Name", "blank|blank"),
        ("Cpu-Model", "Intel(R) Core(TM)"),
        ("Bios-Version", "1.16.0"),
        ("Event-Id", event_id),
        ("Content-Type", "application/text"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `headers` with `name` set to `value` (added if absent), or removed when `value` is None.
pub fn with(
    headers: &[(String, String)],
    name: &str,
    value: Option<&str>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect();
    if let Some(v) = value {
        out.push((name.to_string(), v.to_string()));
    }
    out
}

pub const EVENT: &str = "3a2d799826edc6266d72824d2aac6763";

/// A database for one storage test: an SQLite file in its own directory, or a PostgreSQL
/// database of the private cluster.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub fn config(&self) -> Config {
        match self {
            Db::Sqlite(d) => sqlite_config(d.path()),
            Db::Postgres(url) => pg_config(url),
        }
    }

    pub async fn open(&self) -> telem_server::store::Store {
        telem_server::store::Store::open(&self.config())
            .await
            .unwrap()
    }
}

/// `store_on_both_engines!(name)`: runs `async fn name(db: Db)` once on SQLite and once on
/// PostgreSQL (which skips with a note when PostgreSQL is missing, and fails under CI).
#[allow(unused_macros)]
macro_rules! store_on_both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite(tempfile::tempdir().unwrap())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(pg) = $crate::common::pg::cluster() else {
                    return;
                };
                super::$name($crate::common::Db::Postgres(pg.database())).await;
            }
        }
    };
}

/// `server_on_both_engines!(name)`: runs `fn name(config: Config)` once with a configuration
/// on SQLite and once on PostgreSQL (skipped or failed as above).
#[allow(unused_macros)]
macro_rules! server_on_both_engines {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                let d = tempfile::tempdir().unwrap();
                super::$name($crate::common::sqlite_config(d.path()));
            }

            #[test]
            fn postgres() {
                let Some(pg) = $crate::common::pg::cluster() else {
                    return;
                };
                super::$name($crate::common::pg_config(&pg.database()));
            }
        }
    };
}

/// Stores `records` through `s` in batches of `chunk`, retrying a batch while another instance
/// holds SQLite's single writer.
pub async fn ingest_retrying(
    s: &telem_server::store::Store,
    records: &[telem_server::store::NewRecord],
    chunk: usize,
) {
    for batch in records.chunks(chunk) {
        let mut tries = 0;
        while let Err(e) = s.insert_batch(batch).await {
            tries += 1;
            assert!(tries < 50, "{e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Two instances store overlapping parts of `all` at once, as a client retrying on the other
/// instance would: `a` the records before `a_end`, `b` those from `b_start` on.
pub async fn ingest_on_two_instances(
    a: &telem_server::store::Store,
    b: &telem_server::store::Store,
    all: &[telem_server::store::NewRecord],
    a_end: usize,
    b_start: usize,
) {
    let run = |s: telem_server::store::Store, recs: Vec<telem_server::store::NewRecord>| {
        tokio::spawn(async move { ingest_retrying(&s, &recs, 25).await })
    };
    let ta = run(a.clone(), all[..a_end].to_vec());
    let tb = run(b.clone(), all[b_start..].to_vec());
    ta.await.unwrap();
    tb.await.unwrap();
}

/// Stores `batch` in batches of `chunk`, then its first `again` records once more (duplicates,
/// which must change nothing).
pub async fn ingest_with_duplicates(
    s: &telem_server::store::Store,
    batch: &[telem_server::store::NewRecord],
    chunk: usize,
    again: usize,
) {
    for c in batch.chunks(chunk) {
        s.insert_batch(c).await.unwrap();
    }
    s.insert_batch(&batch[..again]).await.unwrap();
}

/// A small deterministic generator (xorshift) for the oracle suites' records: they need
/// repeatable choices, not quality.
pub struct Rng(pub u64);

impl Rng {
    /// The next value below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Purges at `now` with `days` of retention, `class_days` for the classifications matching
/// `class`; the number of records deleted.
pub async fn purge_with(
    s: &telem_server::store::Store,
    days: u32,
    class: &str,
    class_days: u32,
    now: i64,
) -> u64 {
    let mut retention = telem_server::config::Retention {
        days,
        ..telem_server::config::Retention::default()
    };
    retention.classification.insert(class.into(), class_days);
    let purged = s.purge(&retention, now).await.unwrap();
    purged.iter().map(|p| p.deleted).sum()
}
