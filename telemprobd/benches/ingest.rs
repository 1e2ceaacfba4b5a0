//! Ingest benchmark: durable records per second through the real telemprobd binary, against a
//! raw baseline of the same durable write done sequentially in the same place.
//!
//! `cargo bench -p telemprobd --bench ingest` — bounded to well under a minute. Reports:
//! - baseline: write + fdatasync + rename + directory fsync per record, one after the other;
//! - for reference, the same done by 8 threads at once, each on its own records (what the disk
//!   gives that protocol with 8 writers and no daemon, no socket, no sharing);
//! - telemprobd with 1 and with 8 concurrent senders (`client::send`, real Unix socket), each
//!   send returning only once the record is on disk;
//! - p50/p99 send latency, ratios to the baseline, and telemprobd's peak RSS (VmHWM);
//! - write requests and cache flushes of the disk per record, and how busy the disk and the
//!   CPUs were, for each of the three;
//! - CPU time per record with 8 senders (telemprobd's and the senders' own) and for the
//!   reference's writers: on a machine with few CPUs, the one that tells whether the daemon's
//!   rate is bound by the CPUs rather than the disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use telemetry::{client, spool, Config, Record, SysInfo};

/// The machine is shared and noisy: the three measurements are interleaved in short slices,
/// [`ROUNDS`] times, and each figure is the median over rounds (ratios are taken per round, so
/// a slow spell hits the baseline and the daemon alike).
const ROUNDS: usize = 5;
/// Concurrent senders in the many-senders measurement (and writers in its reference).
const SENDERS: usize = 8;
const BASELINE_TIME: Duration = Duration::from_millis(1500);
const RUN_TIME: Duration = Duration::from_millis(2500);
const WARMUP: Duration = Duration::from_millis(300);

fn record(i: usize) -> Record {
    let mut r = Record::new(2, "org.test/bench/ingest", 1, SysInfo::cached()).unwrap();
    r.set_payload(format!("benchmark record {i:08} {}", "p".repeat(200)).as_bytes())
        .unwrap();
    r
}

/// The protocol's durable write, done plainly: a new temporary dot-file, write, fdatasync,
/// rename to `name`, fsync of the directory (`d`, open on `dir`).
fn durable_write(dir: &Path, d: &std::fs::File, name: &str, bytes: &[u8]) {
    let tmp = dir.join(spool::temp_name(name));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_data().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    d.sync_all().unwrap();
}

/// What a careful single writer pays per record, without any daemon: (records/s, file size,
/// device I/O per record).
fn baseline(dir: &Path) -> (f64, usize, Option<DeviceIo>) {
    // Written into the daemon's own spool directory, so both see the same directory (and its
    // growing number of files: nothing drains the spool during the benchmark). Files are kept:
    // deleting thousands of inodes between rounds would slow down the next file creations
    // (ext4 skips recently deleted inodes).
    std::fs::create_dir_all(dir).unwrap();
    let bytes = spool::encode(&record(0), None);
    let d = std::fs::File::open(dir).unwrap();
    let io_before = Sample::take(dir);
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < BASELINE_TIME {
        let name = format!("baseline-{}", spool::file_name(n as u64));
        durable_write(dir, &d, &name, &bytes);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (
        rate,
        bytes.len(),
        DeviceIo::between(io_before, Sample::take(dir), n),
    )
}

/// The baseline's durable write, done by [`SENDERS`] threads at once for [`BASELINE_TIME`],
/// each one sequentially on its own files in `dir` (no shared directory sync): records/s.
/// Records/s of the 8 writers, and the CPU time they took per record.
fn parallel_writers(dir: &Path, round: usize) -> (f64, Option<Duration>) {
    let bytes = spool::encode(&record(0), None);
    let cpu_before = cpu_of(std::process::id());
    let start = Instant::now();
    let counts: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..SENDERS)
            .map(|t| {
                let bytes = &bytes;
                s.spawn(move || {
                    let d = std::fs::File::open(dir).unwrap();
                    let mut n = 0usize;
                    while start.elapsed() < BASELINE_TIME {
                        let name = format!("writers-{round}-{t}-{}", spool::file_name(n as u64));
                        durable_write(dir, &d, &name, bytes);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n: usize = counts.iter().sum();
    let cpu = per_record(cpu_before, cpu_of(std::process::id()), n);
    (n as f64 / start.elapsed().as_secs_f64(), cpu)
}

/// Time to create one empty file in a new directory below `root`, the median of 300.
///
/// On ext4 without a journal (this host's disk) the inode allocator skips every inode freed in
/// the last 60 to 360 seconds, testing each in turn: right after a run has removed its
/// ~100,000-file spool, a creation takes 0.5–0.8 ms of CPU instead of ~20 µs (measured in
/// session 10), which slows the stock thread, the baseline and the reference alike and makes
/// the run's figures incomparable. `docs/telemprobd.md` said so, but a reused `TMPDIR` still
/// slipped through; now the run says it. The files stay; they go with the temporary directory.
fn creation_cost(root: &Path) -> Duration {
    let dir = root.join("creation-probe");
    std::fs::create_dir(&dir).unwrap();
    let times = (0..300)
        .map(|i| {
            let t = Instant::now();
            std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
            t.elapsed()
        })
        .collect();
    median_dur(times)
}

/// User + system CPU time of process `pid` so far (`/proc/<pid>/stat`, clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time per record between two readings of [`cpu_of`].
fn per_record(before: Option<Duration>, after: Option<Duration>, n: usize) -> Option<Duration> {
    Some(after?.saturating_sub(before?) / u32::try_from(n.max(1)).ok()?)
}

/// What the machine did during a measurement: write requests and cache flushes the block
/// device completed per record, and the share of the time the disk had a request in flight
/// and the CPUs were busy. Together they tell a disk-bound run from a CPU-bound one, and both
/// from one bound by the latency of a chain of waits (neither near 100 %).
#[derive(Clone, Copy)]
struct DeviceIo {
    writes: f64,
    flushes: f64,
    disk_busy: f64,
    cpus_busy: Option<f64>,
}

impl DeviceIo {
    fn between(before: Option<Sample>, after: Option<Sample>, n: usize) -> Option<DeviceIo> {
        let (b, a) = (before?, after?);
        let n = n.max(1) as f64;
        let wall_ms = a.at.duration_since(b.at).as_secs_f64() * 1e3;
        let cpus_busy = match (b.cpu, a.cpu) {
            (Some([bt, bi]), Some([at, ai])) if at > bt => {
                let (total, idle) = ((at - bt) as f64, ai.saturating_sub(bi) as f64);
                Some(1.0 - idle / total)
            }
            _ => None,
        };
        Some(DeviceIo {
            writes: a.disk[0].saturating_sub(b.disk[0]) as f64 / n,
            flushes: a.disk[1].saturating_sub(b.disk[1]) as f64 / n,
            disk_busy: a.disk[2].saturating_sub(b.disk[2]) as f64 / wall_ms.max(1.0),
            cpus_busy,
        })
    }
}

/// Counters read at one instant.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    /// Completed writes, completed flushes, milliseconds with I/O in flight.
    disk: [u64; 3],
    /// All CPUs' time (ticks), and the idle part of it (idle + iowait), from `/proc/stat`.
    cpu: Option<[u64; 2]>,
}

impl Sample {
    /// The block device holding `dir`, from `/sys/dev/block/MAJ:MIN/stat` (fields 5, 10 and
    /// 16; a partition's own file lacks the flush count, so the whole disk's is read). Counts
    /// everything on that disk and those CPUs, not only ours: the machine is shared, so these
    /// are indications, not exact figures.
    fn take(dir: &Path) -> Option<Sample> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir).ok()?.dev();
        let sys = PathBuf::from(format!(
            "/sys/dev/block/{}:{}",
            rustix::fs::major(dev),
            rustix::fs::minor(dev)
        ));
        let stat = if sys.join("partition").exists() {
            sys.join("../stat")
        } else {
            sys.join("stat")
        };
        let text = std::fs::read_to_string(stat).ok()?;
        let f: Vec<u64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Some(Sample {
            at: Instant::now(),
            disk: [*f.get(4)?, *f.get(15)?, *f.get(9)?],
            cpu: cpu_ticks(),
        })
    }
}

/// `[total, idle]` over all CPUs from the first line of `/proc/stat` (user, nice, system,
/// idle, iowait, irq, softirq, steal; guest time is already counted in user).
fn cpu_ticks() -> Option<[u64; 2]> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (v.len() == 8).then(|| [v.iter().sum(), v[3] + v[4]])
}

struct Daemon {
    child: Child,
    config: Config,
}

impl Daemon {
    fn start(root: &Path) -> Daemon {
        let conf = root.join("telemetrics.conf");
        std::fs::write(
            &conf,
            "[settings]\nrate_limit_enabled=false\ndaemon_recycling_enabled=false\nspool_max_size=-1\n",
        )
        .unwrap();
        let mut config = Config::load_from(root, Some(&conf)).unwrap();
        std::fs::create_dir_all(config.opt_in_file.parent().unwrap()).unwrap();
        std::fs::write(&config.opt_in_file, "").unwrap();
        // Generous: on a slow disk a group commit can take a while.
        config.send_timeout_ms = 10_000;
        let child = Command::new(env!("CARGO_BIN_EXE_telemprobd"))
            .arg("-f")
            .arg(&conf)
            .env("TELEM_ROOT", root)
            .env("RUST_LOG", "warn")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !config.socket_path.exists() {
            assert!(Instant::now() < deadline, "telemprobd did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Daemon { child, config }
    }

    /// User + system CPU time of the daemon so far.
    fn cpu_time(&self) -> Option<Duration> {
        cpu_of(self.child.id())
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    io: Option<DeviceIo>,
    /// CPU time per record of telemprobd, and of the senders (this process).
    cpu_daemon: Option<Duration>,
    cpu_senders: Option<Duration>,
    rate: f64,
    p50: Duration,
    p99: Duration,
    records: usize,
}

/// `senders` threads send for [`RUN_TIME`] (after a warm-up); every send must succeed.
fn ingest(d: &Daemon, senders: usize) -> Run {
    let config = &d.config;
    let go = |time: Duration| {
        let start = Instant::now();
        let lat: Vec<Vec<Duration>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..senders)
                .map(|t| {
                    s.spawn(move || {
                        let mut lat = Vec::new();
                        let mut i = t * 10_000_000;
                        while start.elapsed() < time {
                            let r = record(i);
                            i += 1;
                            let t0 = Instant::now();
                            client::send(&r, config).unwrap();
                            lat.push(t0.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let elapsed = start.elapsed();
        let mut all: Vec<Duration> = lat.into_iter().flatten().collect();
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Run {
            io: None,
            cpu_daemon: None,
            cpu_senders: None,
            rate: all.len() as f64 / elapsed.as_secs_f64(),
            p50: pct(0.50),
            p99: pct(0.99),
            records: all.len(),
        }
    };
    go(WARMUP);
    let before = Sample::take(&config.spool_dir);
    let (daemon_before, senders_before) = (d.cpu_time(), cpu_of(std::process::id()));
    let mut run = go(RUN_TIME);
    run.cpu_daemon = per_record(daemon_before, d.cpu_time(), run.records);
    run.cpu_senders = per_record(senders_before, cpu_of(std::process::id()), run.records);
    run.io = DeviceIo::between(before, Sample::take(&config.spool_dir), run.records);
    run
}

/// Records telemprobd stored: final files, not the baselines' own (`baseline-…`, `writers-…`).
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !spool::is_temporary(&name)
                        && !name.starts_with("baseline-")
                        && !name.starts_with("writers-")
                })
                .count()
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median_dur(v: Vec<Duration>) -> Duration {
    Duration::from_secs_f64(median(v.into_iter().map(|d| d.as_secs_f64()).collect()))
}

struct Summary {
    io: Option<DeviceIo>,
    rate: f64,
    ratio: f64,
    p50: Duration,
    p99: Duration,
    records: usize,
}

/// Median over rounds of each device figure (rounds where the counters were readable).
fn median_io(ios: impl Iterator<Item = Option<DeviceIo>>) -> Option<DeviceIo> {
    let ios: Vec<DeviceIo> = ios.flatten().collect();
    (!ios.is_empty()).then(|| DeviceIo {
        writes: median(ios.iter().map(|i| i.writes).collect()),
        flushes: median(ios.iter().map(|i| i.flushes).collect()),
        disk_busy: median(ios.iter().map(|i| i.disk_busy).collect()),
        cpus_busy: {
            let c: Vec<f64> = ios.iter().filter_map(|i| i.cpus_busy).collect();
            (!c.is_empty()).then(|| median(c))
        },
    })
}

fn summarize(runs: &[Run], bases: &[f64]) -> Summary {
    Summary {
        io: median_io(runs.iter().map(|r| r.io)),
        rate: median(runs.iter().map(|r| r.rate).collect()),
        ratio: median(runs.iter().zip(bases).map(|(r, b)| r.rate / b).collect()),
        p50: median_dur(runs.iter().map(|r| r.p50).collect()),
        p99: median_dur(runs.iter().map(|r| r.p99).collect()),
        records: runs.iter().map(|r| r.records).sum(),
    }
}

fn main() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = tmp.path().to_path_buf();
    let creation = creation_cost(&root);
    let d = Daemon::start(&root);
    let (mut bases, mut ones, mut eights) = (Vec::new(), Vec::new(), Vec::new());
    let mut writers = Vec::new();
    let mut base_ios = Vec::new();
    let mut size = 0;
    for round in 0..ROUNDS {
        let (b, s, io) = baseline(&d.config.spool_dir);
        size = s;
        bases.push(b);
        base_ios.push(io);
        ones.push(ingest(&d, 1));
        eights.push(ingest(&d, SENDERS));
        writers.push(parallel_writers(&d.config.spool_dir, round));
    }
    let rss = d.peak_rss_kib();
    let cpu = d.cpu_time();
    let stored = count_files(&d.config.spool_dir);
    let base = median(bases.clone());
    let one = summarize(&ones, &bases);
    let eight = summarize(&eights, &bases);

    println!(
        "telemprobd ingest benchmark: spool file of {size} bytes in {}, {ROUNDS} interleaved rounds, medians",
        root.display()
    );
    println!(
        "creating an empty file before the runs: {:.0} µs (median of 300)",
        creation.as_secs_f64() * 1e6
    );
    if creation > Duration::from_micros(100) {
        println!(
            "WARNING: creating a file is slow here; on ext4 without a journal that follows a large \
             deletion nearby (an earlier run's spool) for up to 6 minutes. These figures do not \
             compare with other runs: run again with TMPDIR on a new top-level directory, or \
             after 6 minutes."
        );
    }
    println!("baseline (write+fdatasync+rename+dir fsync, sequential): {base:7.0} records/s  (rounds: {:?})",
        bases.iter().map(|b| b.round() as u64).collect::<Vec<_>>());
    let line = |name: &str, r: &Summary, all: &[Run]| {
        println!(
            "{name:<22} {:7.0} records/s  ({:5.2}x baseline)  p50 {:7.3} ms  p99 {:7.3} ms  [{} records; rounds: {:?}]",
            r.rate,
            r.ratio,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.records,
            all.iter().map(|x| x.rate.round() as u64).collect::<Vec<_>>()
        )
    };
    line("telemprobd, 1 sender", &one, &ones);
    line("telemprobd, 8 senders", &eight, &eights);
    let (writers, writers_cpu): (Vec<f64>, Vec<Option<Duration>>) = writers.into_iter().unzip();
    let par = median(writers.clone());
    let of_writers = median(
        eights
            .iter()
            .zip(&writers)
            .map(|(e, w)| e.rate / w)
            .collect(),
    );
    println!(
        "reference: {SENDERS} writers at once, same durable write, no daemon: {par:7.0} records/s ({:.2}x baseline; telemprobd with {SENDERS} senders = {of_writers:.2}x of it)  (rounds: {:?})",
        median(writers.iter().zip(&bases).map(|(w, b)| w / b).collect()),
        writers.iter().map(|w| w.round() as u64).collect::<Vec<_>>()
    );
    // What the disk did per record, and how busy disk and CPUs were (see `DeviceIo`).
    let base_io = median_io(base_ios.into_iter());
    for (name, io) in [
        ("baseline", base_io),
        ("1 sender", one.io),
        ("8 senders", eight.io),
    ] {
        match io {
            Some(io) => println!(
                "device I/O per record, {name:<10} {:5.2} writes, {:5.2} cache flushes;  disk busy {:3.0} %, CPUs busy {}",
                io.writes,
                io.flushes,
                io.disk_busy * 100.0,
                io.cpus_busy
                    .map_or("?".to_string(), |c| format!("{:3.0} %", c * 100.0))
            ),
            None => println!("device I/O per record, {name}: counters not readable"),
        }
    }
    // CPU time per record: where the machine's CPUs went, per record, in each way of writing.
    let per_rec = |v: Vec<Option<Duration>>| {
        let v: Vec<Duration> = v.into_iter().flatten().collect();
        if v.is_empty() {
            "?".to_string()
        } else {
            format!("{:.0} µs", median_dur(v).as_secs_f64() * 1e6)
        }
    };
    for (name, runs) in [("1 sender", &ones), ("8 senders", &eights)] {
        println!(
            "CPU per record, {name:<10} telemprobd {}, senders {}",
            per_rec(runs.iter().map(|r| r.cpu_daemon).collect()),
            per_rec(runs.iter().map(|r| r.cpu_senders).collect()),
        );
    }
    println!(
        "CPU per record, reference  {} (the {SENDERS} writers; no daemon, no socket)",
        per_rec(writers_cpu)
    );
    match rss {
        Some(k) => println!(
            "telemprobd peak RSS (VmHWM): {k} KiB ({:.2} MiB)",
            k as f64 / 1024.0
        ),
        None => println!("telemprobd peak RSS: not readable"),
    }
    if let Some(cpu) = cpu {
        println!(
            "telemprobd CPU (user+sys): {:.2} s in total, {:.0} µs per stored record",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / stored.max(1) as f64
        );
    }
    println!(
        "files in spool after the runs: {stored}; total time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| baseline, sequential durable write (median of {ROUNDS}) | {base:.0} records/s |");
    println!(
        "| reference: {SENDERS} writers at once, no daemon (median of {ROUNDS}) | {par:.0} records/s; telemprobd, 8 senders = {of_writers:.2}x of it |"
    );
    for (name, r) in [("1 sender", &one), ("8 senders", &eight)] {
        println!(
            "| telemprobd, {name} | {:.0} records/s ({:.2}x baseline), p50 {:.2} ms, p99 {:.2} ms |",
            r.rate,
            r.ratio,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    if let Some(k) = rss {
        println!(
            "| telemprobd peak RSS (VmHWM) | {:.2} MiB |",
            k as f64 / 1024.0
        );
    }
}
