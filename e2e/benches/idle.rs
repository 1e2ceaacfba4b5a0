//! Idle cost of the daemons: what telemprobd and telempostd cost a machine while nothing
//! happens, against a minimal C daemon blocked in `accept` measured in the same run.
//!
//! ```text
//! cargo build --release -p telemprobd -p telempostd
//! cargo bench -p e2e --bench idle [-- [--secs 60] [--old DIR] [--smaps]]
//! ```
//!
//! Each build gets its own temporary root (the tests' layout: `-f <config>`, `TELEM_ROOT`), an
//! opt-in file, telemprobd and telempostd started on it and the test collector as server. Two
//! windows of `--secs` seconds (60 by default), every process measured at once:
//! 1. **after start**: once telemprobd's socket and telempostd's status file exist, plus one
//!    second;
//! 2. **after work**: 400 records sent by 8 senders through telemprobd, delivered by telempostd
//!    to the collector, then [`SETTLE`] of quiet, so that threads kept for a burst have had their
//!    chance to go.
//!
//! Per process and window: wake-ups (voluntary + involuntary context switches summed over
//! `/proc/<pid>/task/*/status`; a thread that ends within the window takes its own with it, so
//! threads that ended are counted apart), CPU time (`/proc/<pid>/stat` utime + stime), threads
//! and VmRSS at the end. `--old DIR` measures a second build (`DIR/telemprobd`,
//! `DIR/telempostd`) side by side; `--smaps` also prints, per process and window, its RSS by
//! mapping (`/proc/<pid>/smaps`: each file's mappings summed, anonymous ones together). The baseline is a C program compiled here with `cc` that
//! binds a Unix socket and blocks in `accept`: 0 wake-ups, 1 thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telem_collector::{Collector, Options};
use telemetry::{client, Config, Record, SysInfo};

/// Quiet time between the end of the work and the second window.
const SETTLE: Duration = Duration::from_secs(15);
const RECORDS: usize = 400;
const SENDERS: usize = 8;

const BASELINE_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 128)) {
        perror("socket");
        return 1;
    }
    for (;;) {
        int c = accept(s, 0, 0);
        if (c >= 0) close(c);
    }
}
"#;

/// A measured process.
struct Proc {
    name: String,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc` says about a process at one moment.
struct Sample {
    at: Instant,
    /// Context switches per thread id.
    switches: HashMap<u32, u64>,
    cpu_ticks: u64,
    rss_kib: u64,
}

fn status_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sample(pid: u32) -> Sample {
    let mut switches = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                let n = status_field(&s, "voluntary_ctxt_switches:")
                    + status_field(&s, "nonvoluntary_ctxt_switches:");
                switches.insert(tid, n);
            }
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state (field 3).
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let cpu_ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Sample {
        at: Instant::now(),
        switches,
        cpu_ticks,
        rss_kib: status_field(&status, "VmRSS:"),
    }
}

/// The figures of one window.
struct Window {
    wakeups: u64,
    ended: usize,
    cpu_ms: f64,
    threads: usize,
    rss_kib: u64,
}

fn window(a: &Sample, b: &Sample) -> Window {
    let wakeups = b
        .switches
        .iter()
        .map(|(tid, n)| n - a.switches.get(tid).copied().unwrap_or(0).min(*n))
        .sum();
    let ended = a
        .switches
        .keys()
        .filter(|t| !b.switches.contains_key(t))
        .count();
    // /proc counts in USER_HZ, 100 on every Linux architecture we build for.
    let hz = 100.0;
    Window {
        wakeups,
        ended,
        cpu_ms: (b.cpu_ticks - a.cpu_ticks) as f64 * 1000.0 / hz,
        threads: b.switches.len(),
        rss_kib: b.rss_kib,
    }
}

/// One build's daemons on their own root.
struct Build {
    label: String,
    root: tempfile::TempDir,
    config: Config,
    probd: Proc,
    postd: Proc,
}

fn start_build(label: &str, dir: &Path, collector: &Collector) -> Build {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("telemetrics.conf");
    std::fs::write(
        &conf,
        format!(
            "[settings]\nserver={}\nrate_limit_enabled=false\ndaemon_recycling_enabled=false\nspool_max_size=-1\n",
            collector.url("/v2/collector")
        ),
    )
    .unwrap();
    let mut config = Config::load_from(root.path(), Some(&conf)).unwrap();
    std::fs::create_dir_all(config.opt_in_file.parent().unwrap()).unwrap();
    std::fs::write(&config.opt_in_file, "").unwrap();
    config.send_timeout_ms = 10_000;
    let daemon = |name: &str| {
        let child = Command::new(dir.join(name))
            .arg("-f")
            .arg(&conf)
            .env("TELEM_ROOT", root.path())
            .env("RUST_LOG", "warn")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
        Proc {
            name: format!("{name} ({label})"),
            child,
        }
    };
    let probd = daemon("telemprobd");
    let postd = daemon("telempostd");
    let postd_status = config.state_dir.join("telempostd.status");
    wait_until("daemons ready", || {
        config.socket_path.exists() && postd_status.exists()
    });
    Build {
        label: label.to_string(),
        root,
        config,
        probd,
        postd,
    }
}

fn start_baseline(dir: &Path) -> Proc {
    let src = dir.join("accept.c");
    let bin = dir.join("accept");
    std::fs::write(&src, BASELINE_C).unwrap();
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc (the baseline is a C program)");
    assert!(ok.success(), "compiling the baseline failed");
    let sock = dir.join("accept.sock");
    let child = Command::new(&bin).arg(&sock).spawn().unwrap();
    wait_until("baseline ready", || sock.exists());
    Proc {
        name: "C accept loop (baseline)".into(),
        child,
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends [`RECORDS`] through telemprobd and waits until the collector has them all.
fn work(b: &Build, collector: &Collector, before: usize) {
    let per = RECORDS / SENDERS;
    std::thread::scope(|s| {
        for t in 0..SENDERS {
            let config = &b.config;
            s.spawn(move || {
                for i in 0..per {
                    let mut r =
                        Record::new(2, "org.test/bench/idle", 1, SysInfo::cached()).unwrap();
                    r.set_payload(format!("idle bench {} {t} {i}", b.label).as_bytes())
                        .unwrap();
                    client::send(&r, config).unwrap();
                }
            });
        }
    });
    assert!(
        collector.wait_for_records(before + per * SENDERS, Duration::from_secs(120)),
        "{}: records not delivered",
        b.label
    );
}

fn measure(procs: &[&Proc], secs: u64) -> Vec<Window> {
    let start: Vec<Sample> = procs.iter().map(|p| sample(p.child.id())).collect();
    std::thread::sleep(Duration::from_secs(secs));
    procs
        .iter()
        .zip(&start)
        .map(|(p, a)| {
            let b = sample(p.child.id());
            assert!(
                b.at.duration_since(a.at) >= Duration::from_secs(secs),
                "window too short"
            );
            window(a, &b)
        })
        .collect()
}

fn report(title: &str, secs: u64, procs: &[&Proc], w: &[Window]) {
    println!("\n{title} ({secs} s)");
    println!(
        "{:<32} {:>9} {:>8} {:>8} {:>7} {:>9}",
        "process", "wake-ups", "CPU ms", "threads", "ended", "RSS MiB"
    );
    for (p, w) in procs.iter().zip(w) {
        println!(
            "{:<32} {:>9} {:>8.1} {:>8} {:>7} {:>9.2}",
            p.name,
            w.wakeups,
            w.cpu_ms,
            w.threads,
            w.ended,
            w.rss_kib as f64 / 1024.0
        );
    }
}

/// RSS per mapped file (anonymous mappings, heap and stack together as `[anon]`), largest first.
fn smaps(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: HashMap<String, u64> = HashMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let path = words.nth(4).unwrap_or("");
            current = if path.starts_with('/') {
                path.rsplit('/').next().unwrap_or(path).to_string()
            } else {
                "[anon]".to_string()
            };
        } else if first == "Rss:" {
            *by.entry(current.clone()).or_default() += status_field(line, "Rss:");
        }
    }
    let mut v: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn print_smaps(procs: &[&Proc]) {
    for p in procs {
        let parts: Vec<String> = smaps(p.child.id())
            .iter()
            .map(|(name, kib)| format!("{name} {kib}"))
            .collect();
        println!("  {} KiB: {}", p.name, parts.join(", "));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let secs: u64 = arg("--secs").map_or(60, |s| s.parse().expect("--secs N"));
    let by_mapping = args.iter().any(|a| a == "--smaps");
    let new_dir = e2e::profile_dir();
    for b in ["telemprobd", "telempostd"] {
        assert!(
            new_dir.join(b).exists(),
            "{}/{b} missing: cargo build --release -p telemprobd -p telempostd",
            new_dir.display()
        );
    }
    let mut dirs = vec![("new".to_string(), new_dir)];
    if let Some(old) = arg("--old") {
        dirs.push(("old".to_string(), PathBuf::from(old)));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());

    let scratch = tempfile::tempdir().unwrap();
    let collector = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let baseline = start_baseline(scratch.path());
    let builds: Vec<Build> = dirs
        .iter()
        .map(|(l, d)| start_build(l, d, &collector))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut procs: Vec<&Proc> = vec![&baseline];
    for b in &builds {
        procs.push(&b.probd);
        procs.push(&b.postd);
    }
    let w = measure(&procs, secs);
    report("idle after start", secs, &procs, &w);
    if by_mapping {
        print_smaps(&procs);
    }

    let mut delivered = 0;
    for b in &builds {
        work(b, &collector, delivered);
        delivered += RECORDS / SENDERS * SENDERS;
        // Nothing is left in the spool (the collector has them; the files go right after).
        let _ = &b.root;
    }
    std::thread::sleep(SETTLE);
    let w = measure(&procs, secs);
    report(
        &format!(
            "idle after {RECORDS} records, {} s after the last",
            SETTLE.as_secs()
        ),
        secs,
        &procs,
        &w,
    );
    if by_mapping {
        print_smaps(&procs);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at end: {}", load.trim());
}
