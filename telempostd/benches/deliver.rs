//! Delivery benchmark (harness = false): records/s from a full spool to the local test collector
//! over one kept-alive connection vs a new connection per record, the drain rate after an outage,
//! and telempostd's peak RSS (VmHWM). Bounded to about a minute.
//!
//! Run: `cargo bench -p telempostd --bench deliver` (optionally `-- <records>`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telem_collector::{Collector, Options};
use telemetry::{spool, Record, SysInfo};

const DEADLINE: Duration = Duration::from_secs(20);

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    conf: PathBuf,
}

fn setup(server: &str, n: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    fs::create_dir_all(root.join("etc/telemetrics")).unwrap();
    fs::write(root.join("etc/telemetrics/opt-in"), "").unwrap();
    let spool_dir = root.join("var/spool/telemetry");
    fs::create_dir_all(&spool_dir).unwrap();
    let conf = root.join("etc/telemetrics/bench.conf");
    fs::write(
        &conf,
        format!(
            "[settings]\nserver={server}\nrate_limit_enabled=false\nspool_max_size=-1\n\
             daemon_recycling_enabled=false\n"
        ),
    )
    .unwrap();
    let payload = "x".repeat(200);
    for i in 0..n {
        let mut r = Record::new(1, "org.clearlinux/bench/deliver", 1, SysInfo::cached()).unwrap();
        r.set_machine_id("0123456789abcdef0123456789abcdef")
            .unwrap();
        r.set_payload(payload.as_bytes()).unwrap();
        let name = spool::file_name(i as u64);
        let tmp = spool_dir.join(spool::temp_name(&name));
        fs::write(&tmp, spool::encode(&r, None)).unwrap();
        fs::rename(&tmp, spool_dir.join(&name)).unwrap();
    }
    Setup {
        _dir: dir,
        root,
        conf,
    }
}

fn start(s: &Setup, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_telempostd"))
        .arg("-f")
        .arg(&s.conf)
        .args(["--retry-base-ms", "200", "--retry-cap-ms", "500"])
        .args(extra)
        .env("TELEM_ROOT", &s.root)
        .env("RUST_LOG", "warn")
        .env_remove("JOURNAL_STREAM")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU seconds of a process (/proc reports USER_HZ = 100 ticks per second).
fn cpu_secs(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn stop(mut child: Child) -> (Option<u64>, Option<f64>) {
    let hwm = vm_hwm_kib(child.id());
    let cpu = cpu_secs(child.id());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return (hwm, cpu);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    (hwm, cpu)
}

/// Records/s between the first and the last record the collector received.
fn rate(c: &Collector) -> f64 {
    let recs = c.records();
    let first = recs.first().map_or(0.0, |r| r.received);
    let last = recs.last().map_or(0.0, |r| r.received);
    if recs.len() < 2 || last <= first {
        return 0.0;
    }
    (recs.len() - 1) as f64 / (last - first)
}

struct Run {
    name: &'static str,
    records: usize,
    received: usize,
    wall: Duration,
    rate: f64,
    hwm_kib: Option<u64>,
    cpu: Option<f64>,
}

fn steady(name: &'static str, n: usize, extra: &[&str]) -> Run {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let s = setup(&c.url("/v2/collector"), n);
    let t0 = Instant::now();
    let child = start(&s, extra);
    c.wait_for_records(n, DEADLINE);
    let wall = t0.elapsed();
    let (hwm, cpu) = stop(child);
    Run {
        name,
        records: n,
        received: c.records().len(),
        wall,
        rate: rate(&c),
        hwm_kib: hwm,
        cpu,
    }
}

fn after_outage(n: usize) -> Run {
    let probe = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let addr = probe.addr().to_string();
    let url = probe.url("/v2/collector");
    probe.stop();
    let s = setup(&url, n);
    let child = start(&s, &[]);
    let status = s.root.join("var/lib/telemetry/telempostd.status");
    // Wait until the daemon has failed at least once (it is backing off).
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let failed = fs::read_to_string(&status).ok().is_some_and(|t| {
            t.lines()
                .any(|l| l.starts_with("counter.failed_attempts=") && !l.ends_with("=0"))
        });
        if failed {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = Collector::start(&addr, Options::default()).unwrap();
    let t0 = Instant::now();
    c.wait_for_records(n, DEADLINE);
    let wall = t0.elapsed();
    let (hwm, cpu) = stop(child);
    Run {
        name: "drain after outage (keep-alive)",
        records: n,
        received: c.records().len(),
        wall,
        rate: rate(&c),
        hwm_kib: hwm,
        cpu,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number overrides the record count.
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let runs = [
        steady("one kept-alive connection", n, &[]),
        steady(
            "new connection per record",
            n.min(2000),
            &["--no-keepalive"],
        ),
        after_outage(n),
    ];
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>12} {:>10} {:>14}",
        "scenario", "records", "received", "wall s", "records/s", "VmHWM KiB", "CPU µs/record"
    );
    for r in &runs {
        println!(
            "{:<34} {:>8} {:>9} {:>9.2} {:>12.0} {:>10} {:>14}",
            r.name,
            r.records,
            r.received,
            r.wall.as_secs_f64(),
            r.rate,
            r.hwm_kib.map_or("?".into(), |k| k.to_string()),
            r.cpu
                .map_or("?".into(), |c| format!("{:.0}", c * 1e6 / r.records as f64))
        );
    }
}
