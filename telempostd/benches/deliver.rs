//! Delivery benchmark (harness = false): records/s from a full spool to the local test collector
//! over one kept-alive connection vs a new connection per record, the drain rate after an outage,
//! against a server that closes the connection after every answer (uWSGI's http-socket) beside a
//! plain client loop against the same server, and telempostd's peak RSS (VmHWM). Bounded to
//! about a minute.
//!
//! Run: `cargo bench -p telempostd --bench deliver` (optionally `-- <records>`, `--rounds R`:
//! the scenarios run R times interleaved, 3 by default, and each row is the median round by
//! records/s with the range beside it: these machines are shared and one round swings ±10 %;
//! `--closing-only`; `BENCH_OTHER_BIN`, see `main`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telem_collector::{Collector, Fault, Options};
use telemetry::record::HEADER_NAMES;
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

/// A started telempostd: the spawned process (a wrapper tool, with `BENCH_WRAP`) and the
/// daemon's own pid.
struct Daemon {
    child: Child,
    pid: u32,
}

/// The telempostd binary a scenario runs: this build's, or the one `BENCH_OTHER_BIN` names.
type Bin<'a> = &'a str;

fn start(s: &Setup, extra: &[&str], bin: Bin) -> Daemon {
    // `BENCH_WRAP="strace -c -f -o /tmp/x"` (or `perf record -o …`) runs the daemon under a tool.
    let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut cmd = match words.next() {
        Some(tool) => {
            let mut c = Command::new(tool);
            c.args(words).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let child = cmd
        .arg("-f")
        .arg(&s.conf)
        .args(["--retry-base-ms", "200", "--retry-cap-ms", "500"])
        .args(extra)
        .env("TELEM_ROOT", &s.root)
        .env("RUST_LOG", "warn")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = if wrap.is_empty() {
        child.id()
    } else {
        daemon_pid(child.id())
    };
    Daemon { child, pid }
}

/// The telempostd process below a wrapper tool (bounded wait for it to appear).
fn daemon_pid(wrapper: u32) -> u32 {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let found = fs::read_dir(format!("/proc/{wrapper}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
            .find(|p| {
                fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "telempostd")
            });
        if let Some(p) = found {
            return p;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("telempostd did not start under BENCH_WRAP");
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

fn stop(d: Daemon) -> (Option<u64>, Option<f64>) {
    let Daemon { mut child, pid } = d;
    let hwm = vm_hwm_kib(pid);
    let cpu = cpu_secs(pid);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
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

/// CPU seconds of this process's collector thread(s) ("telem-collector"), so the collector's
/// share of a run can be told apart from telempostd's.
fn collector_cpu_secs() -> f64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "telem-collector")
        })
        .filter_map(|t| {
            let s = fs::read_to_string(t.path().join("stat")).ok()?;
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .sum()
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
    collector_cpu: f64,
}

/// A collector that closes every connection after its answer, as uWSGI's http-socket does
/// (201 without `Connection: close`, then the close).
fn closing_collector() -> Collector {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    c.push_fault(
        Fault::CloseAfterAnswer {
            linger: Duration::ZERO,
        },
        usize::MAX,
    );
    c
}

fn steady(name: &'static str, n: usize, extra: &[&str], bin: Bin) -> Run {
    steady_at(
        name,
        n,
        extra,
        Collector::start("127.0.0.1:0", Options::default()).unwrap(),
        bin,
    )
}

fn steady_at(name: &'static str, n: usize, extra: &[&str], c: Collector, bin: Bin) -> Run {
    let s = setup(&c.url("/v2/collector"), n);
    let t0 = Instant::now();
    let c0 = collector_cpu_secs();
    let child = start(&s, extra, bin);
    measure(name, n, &c, child, t0, c0)
}

/// Waits for `n` records at `c`, stops the daemon and collects the figures since `t0` (and the
/// collector's CPU time `c0` then).
fn measure(
    name: &'static str,
    n: usize,
    c: &Collector,
    child: Daemon,
    t0: Instant,
    c0: f64,
) -> Run {
    c.wait_for_records(n, DEADLINE);
    let wall = t0.elapsed();
    let collector_cpu = collector_cpu_secs() - c0;
    let (hwm, cpu) = stop(child);
    Run {
        name,
        records: n,
        received: c.records().len(),
        wall,
        rate: rate(c),
        hwm_kib: hwm,
        cpu,
        collector_cpu,
    }
}

fn after_outage(name: &'static str, n: usize, bin: Bin) -> Run {
    let probe = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let addr = probe.addr().to_string();
    let url = probe.url("/v2/collector");
    probe.stop();
    let s = setup(&url, n);
    let child = start(&s, &[], bin);
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
    let (t0, c0) = (Instant::now(), collector_cpu_secs());
    measure(name, n, &c, child, t0, c0)
}

/// `n` copies of `rec` that differ only in their event id, so each is a record of its own.
fn distinct(rec: &telemetry::Record, n: usize) -> Vec<telemetry::Record> {
    (0..n)
        .map(|i| {
            let mut r = rec.clone();
            r.set_event_id(&format!("{i:032x}")).unwrap();
            r
        })
        .collect()
}

/// A plain client loop against a server that closes after every answer: a ureq agent that
/// keeps no connection (so each record gets a new one, as that server demands), sending the
/// request telempostd would send, pre-encoded. No spool, no journal.
fn plain_client_closing(n: usize) -> Run {
    let c = closing_collector();
    let s = setup(&c.url("/v2/collector"), 1);
    let spool_dir = s.root.join("var/spool/telemetry");
    let file = fs::read_dir(&spool_dir).unwrap().next().unwrap().unwrap();
    let rec = spool::decode(&fs::read(file.path()).unwrap())
        .unwrap()
        .record;
    let config = telemetry::Config::load_from(&s.root, Some(&s.conf)).unwrap();
    let target = telempostd::deliver::Target::from_config(&config);
    // A distinct record per request (the collector stores each identity once), encoded before
    // the clock starts.
    let reqs: Vec<_> = distinct(&rec, n)
        .iter()
        .map(|r| telempostd::deliver::encode(r, &target, true))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .into();
    let t0 = Instant::now();
    let c0 = collector_cpu_secs();
    for req in &reqs {
        if t0.elapsed() > DEADLINE {
            break;
        }
        let mut b = agent.post(&req.url);
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let mut resp = b.send(&req.body[..]).unwrap();
        assert_eq!(resp.status().as_u16(), 201, "collector refused the record");
        let _ = std::io::copy(&mut resp.body_mut().as_reader(), &mut std::io::sink());
    }
    let wall = t0.elapsed();
    let collector_cpu = collector_cpu_secs() - c0;
    Run {
        name: "closing server: plain client loop",
        records: n,
        received: c.records().len(),
        wall,
        rate: rate(&c),
        hwm_kib: None,
        cpu: None,
        collector_cpu,
    }
}

/// The same-run baseline: the collector's capacity for this record, from a minimal client (a
/// loop over one kept-alive `TcpStream` sending the request telempostd would send, pre-encoded,
/// and reading each answer to its `Content-Length`). No spool, no journal: an upper bound.
fn raw_client(n: usize) -> Run {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let s = setup(&c.url("/v2/collector"), 1);
    let spool_dir = s.root.join("var/spool/telemetry");
    let file = fs::read_dir(&spool_dir).unwrap().next().unwrap().unwrap();
    let rec = spool::decode(&fs::read(file.path()).unwrap())
        .unwrap()
        .record;
    // A distinct record per request (the collector stores each identity once), encoded before
    // the clock starts.
    let reqs: Vec<Vec<u8>> = distinct(&rec, n)
        .iter()
        .map(|rec| {
            let mut head = format!(
                "POST /v2/collector HTTP/1.1\r\nHost: {}\r\nX-Telemetry-TID: {}\r\n",
                c.addr(),
                telem_collector::DEFAULT_TID
            );
            for (name, value) in HEADER_NAMES.iter().zip(rec.values()) {
                head.push_str(&telempostd::deliver::hyphenated(name));
                head.push_str(": ");
                head.push_str(value);
                head.push_str("\r\n");
            }
            head.push_str(&format!(
                "Content-Type: application/text\r\nContent-Length: {}\r\n\r\n",
                rec.payload().len()
            ));
            let mut req = head.into_bytes();
            req.extend_from_slice(rec.payload());
            req
        })
        .collect();
    let mut stream = TcpStream::connect(c.addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t0 = Instant::now();
    let c0 = collector_cpu_secs();
    let mut buf = vec![0u8; 16 * 1024];
    for req in &reqs {
        if t0.elapsed() > DEADLINE {
            break;
        }
        stream.write_all(req).unwrap();
        // Read the head, then the body to its Content-Length.
        let mut have = 0;
        let (end, len) = loop {
            let k = stream.read(&mut buf[have..]).unwrap();
            assert!(k > 0, "collector closed the connection");
            have += k;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                break (end + 4, len);
            }
        };
        while have < end + len {
            let k = stream.read(&mut buf[have..]).unwrap();
            assert!(k > 0, "collector closed the connection");
            have += k;
        }
        assert!(
            buf.starts_with(b"HTTP/1.1 201"),
            "collector refused the record"
        );
    }
    let wall = t0.elapsed();
    let collector_cpu = collector_cpu_secs() - c0;
    Run {
        name: "baseline: raw client loop",
        records: n,
        received: c.records().len(),
        wall,
        rate: rate(&c),
        hwm_kib: None,
        cpu: None,
        collector_cpu,
    }
}

/// Peak RSS with a large backlog and the collector down: the start scan builds the queue, the
/// first attempt fails, and the scans after that read every record for expiry.
fn queued(n: usize) -> Run {
    let probe = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let url = probe.url("/v2/collector");
    probe.stop();
    let s = setup(&url, n);
    let t0 = Instant::now();
    let child = start(
        &s,
        &["--scan-interval-ms", "300"],
        env!("CARGO_BIN_EXE_telempostd"),
    );
    // Two scans after the first failure (each reads the whole backlog).
    std::thread::sleep(Duration::from_millis(1500));
    let wall = t0.elapsed();
    let (hwm, cpu) = stop(child);
    Run {
        name: "queued, collector down",
        records: n,
        received: 0,
        wall,
        rate: 0.0,
        hwm_kib: hwm,
        cpu,
        collector_cpu: 0.0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number overrides the record count; `--queued N2`
    // also measures the peak RSS with 5,000 and N2 records queued (collector down);
    // `--closing-only` runs only the two scenarios against the closing server.
    // `BENCH_OTHER_BIN=/path/to/telempostd` runs every telempostd scenario a second time with
    // that binary (rows marked "[other]"), interleaved in the same rounds: an old build beside
    // the new one on a machine whose speed drifts between runs.
    let mut n = 5000;
    let mut rounds = 3;
    let mut queued_n = None;
    let mut closing_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--queued" {
            queued_n = args.next().and_then(|v| v.parse::<usize>().ok());
        } else if a == "--rounds" {
            rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(rounds);
        } else if a == "--closing-only" {
            closing_only = true;
        } else if let Ok(v) = a.parse() {
            n = v;
        }
    }
    let mut bins: Vec<(&'static str, String)> =
        vec![("", env!("CARGO_BIN_EXE_telempostd").to_string())];
    if let Ok(other) = std::env::var("BENCH_OTHER_BIN") {
        bins.push((" [other]", other));
    }
    // Scenario names with the binary's mark (a handful per run).
    let named =
        |name: &str, tag: &str| -> &'static str { Box::leak(format!("{name}{tag}").into()) };
    let mut all: Vec<Vec<Run>> = Vec::new();
    for _ in 0..rounds.max(1) {
        let mut round = Vec::new();
        if !closing_only {
            round.push(raw_client(n));
            for (tag, bin) in &bins {
                round.push(steady(named("one kept-alive connection", tag), n, &[], bin));
                round.push(steady(
                    named("new connection per record", tag),
                    n.min(2000),
                    &["--no-keepalive"],
                    bin,
                ));
                round.push(after_outage(
                    named("drain after outage (keep-alive)", tag),
                    n,
                    bin,
                ));
            }
        }
        round.push(plain_client_closing(n.min(2000)));
        for (tag, bin) in &bins {
            round.push(steady_at(
                named("closing server: telempostd", tag),
                n.min(2000),
                &[],
                closing_collector(),
                bin,
            ));
        }
        for (i, r) in round.into_iter().enumerate() {
            match all.get_mut(i) {
                Some(v) => v.push(r),
                None => all.push(vec![r]),
            }
        }
    }
    // Per scenario: the median round by records/s, and the range over the rounds.
    let mut runs: Vec<(Run, f64, f64)> = all
        .into_iter()
        .map(|mut v| {
            v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let (lo, hi) = (v[0].rate, v[v.len() - 1].rate);
            let mid = v.swap_remove(v.len() / 2);
            (mid, lo, hi)
        })
        .collect();
    if let Some(q) = queued_n {
        runs.push((queued(5000.min(q)), 0.0, 0.0));
        runs.push((queued(q), 0.0, 0.0));
    }
    let ratio = |a: &str, b: &str| {
        let r = |name: &str| {
            runs.iter()
                .find(|(r, ..)| r.name == name)
                .map(|(r, ..)| r.rate)
        };
        match (r(a), r(b)) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}x", x / y),
            _ => "-".into(),
        }
    };
    let closing: Vec<(String, String)> = bins
        .iter()
        .map(|(tag, _)| {
            let name = format!("closing server: telempostd{tag}");
            let r = ratio(&name, "closing server: plain client loop");
            (name, r)
        })
        .collect();
    println!("{rounds} round(s), median round per scenario");
    println!(
        "{:<43} {:>8} {:>9} {:>9} {:>10} {:>15} {:>10} {:>14} {:>16}",
        "scenario",
        "records",
        "received",
        "wall s",
        "records/s",
        "range",
        "VmHWM KiB",
        "CPU µs/record",
        "collector µs/rec"
    );
    for (r, lo, hi) in &runs {
        println!(
            "{:<43} {:>8} {:>9} {:>9.2} {:>10.0} {:>15} {:>10} {:>14} {:>16.0}",
            r.name,
            r.records,
            r.received,
            r.wall.as_secs_f64(),
            r.rate,
            if *hi > 0.0 {
                format!("{lo:.0}–{hi:.0}")
            } else {
                "-".into()
            },
            r.hwm_kib.map_or("-".into(), |k| k.to_string()),
            r.cpu
                .map_or("-".into(), |c| format!("{:.0}", c * 1e6 / r.records as f64)),
            r.collector_cpu * 1e6 / r.records.max(1) as f64
        );
    }
    for (name, r) in closing {
        println!("{name} / plain client loop = {r}");
    }
}
