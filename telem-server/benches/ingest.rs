//! Ingest throughput over HTTP: `cargo bench -p telem-server --bench ingest`.
//!
//! Starts a server on a temporary SQLite file and posts distinct records from several client
//! threads, once with group commit (batch_max 256) and once committing every record alone
//! (batch_max 1), and prints records per second for each. Arguments: [records] [threads].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use telem_server::config::{Config, Engine};
use tokio::sync::oneshot;

fn headers(n: u64) -> Vec<(String, String)> {
    [
        (
            "X-Telemetry-TID",
            telem_server::config::DEFAULT_TID.to_string(),
        ),
        ("Record-Format-Version", "4".into()),
        ("Classification", "org.clearlinux/hello/world".into()),
        ("Severity", "1".into()),
        ("Machine-Id", "0123456789abcdef0123456789abcdef".into()),
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

fn run(batch_max: usize, records: u64, threads: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.storage.engine = Engine::Sqlite;
    cfg.storage.path = dir.path().join("db");
    cfg.ingest.batch_max = batch_max;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            telem_server::run(&cfg, l, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let url = format!("http://{addr}/v2/collector");
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let url = &url;
            s.spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                let mut n = t;
                while n < records {
                    let mut req = agent.post(url);
                    for (k, v) in headers(n) {
                        req = req.header(k, v);
                    }
                    let r = req.send(format!("payload {n}")).unwrap();
                    assert_eq!(r.status(), 201);
                    n += threads;
                }
            });
        }
    });
    let rate = records as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    server.join().unwrap();
    rate
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let records = args.first().copied().unwrap_or(4000);
    let threads = args.get(1).copied().unwrap_or(32);
    for batch_max in [256, 1] {
        let rate = run(batch_max, records, threads);
        println!("sqlite, {threads} clients, batch_max {batch_max}: {rate:.0} records/s");
    }
}
