//! Fault injection against the whole pipeline: the real telemprobd and telempostd processes
//! below a temporary TELEM_ROOT, many senders in threads (the library's own `client::send`, so
//! each send's verdict is known), and the test collector misbehaving on purpose. Each scenario
//! checks, from the collector's store and the senders' verdicts, that every record acknowledged
//! with 0 arrived, that duplicates stayed within the documented bound, that the spool ends
//! empty and that `telemctl status` and `telemctl journal` agree with the collector.
//!
//! Random choices come from a seeded generator (`FAULTS_SEED` to replay; the seed is printed),
//! and every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{bin, free_port, wait_until, Rng};
use telem_collector::{Collector, Fault, Options};
use telemetry::journal::Outcome;
use telemetry::record::Record;
use telemetry::sysinfo::SysInfo;
use telemetry::Config;

struct System {
    dir: tempfile::TempDir,
    port: u16,
    collector: Option<Collector>,
    probd: Option<Child>,
    postd: Option<Child>,
    starts: usize,
}

impl System {
    /// A temporary root, opted in, whose config points at 127.0.0.1:`port` (no collector yet).
    fn new(extra_config: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        let s = System {
            dir,
            port: free_port(),
            collector: None,
            probd: None,
            postd: None,
            starts: 0,
        };
        for d in [
            "run",
            "etc/telemetrics",
            "var/spool/telemetry",
            "var/lib/telemetry",
        ] {
            fs::create_dir_all(s.root().join(d)).unwrap();
        }
        fs::write(s.root().join("etc/telemetrics/opt-in"), "").unwrap();
        s.write_config(extra_config);
        // Fixed machine facts, so records do not depend on the host.
        for (rel, content) in [
            ("sys/class/dmi/id/sys_vendor", "ACME\n"),
            ("sys/class/dmi/id/product_name", "Fault Box\n"),
            ("proc/cpuinfo", "model name\t: Fake CPU\n"),
            ("etc/os-release", "ID=testos\nVERSION_ID=7\n"),
        ] {
            let p = s.sysroot().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        s
    }

    fn write_config(&self, extra: &str) {
        fs::write(
            self.root().join("etc/telemetrics/telemetrics.conf"),
            format!(
                "[settings]\nserver=http://127.0.0.1:{}/v2/collector\nrate_limit_enabled=false\n\
                 daemon_recycling_enabled=false\nsend_timeout_ms=10000\nrecord_expiry=100000\n{extra}\n",
                self.port
            ),
        )
        .unwrap();
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn sysroot(&self) -> PathBuf {
        self.dir.path().join("sys")
    }

    fn spool_dir(&self) -> PathBuf {
        self.root().join("var/spool/telemetry")
    }

    fn config(&self) -> Config {
        Config::load_from(&self.root(), None).unwrap()
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env("TELEM_ROOT", self.root())
            .env("TELEM_SYSINFO_ROOT", self.sysroot())
            .env_remove("TELEM_CONFIG")
            .env_remove("LISTEN_FDS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, name: &str, args: &[&str]) -> Child {
        self.starts += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        self.cmd(name).args(args).stderr(log).spawn().unwrap()
    }

    fn start_probd(&mut self) {
        let sock = self.root().join("run/telem-0");
        // A socket left by a killed daemon must not count as "up".
        let _ = fs::remove_file(&sock);
        let c = self.spawn("telemprobd", &[]);
        self.probd = Some(c);
        assert!(
            wait_until(Duration::from_secs(20), || sock.exists()),
            "telemprobd did not start:\n{}",
            self.logs()
        );
    }

    fn start_postd(&mut self) {
        let c = self.spawn(
            "telempostd",
            &[
                "--scan-interval-ms",
                "300",
                "--retry-base-ms",
                "50",
                "--retry-cap-ms",
                "400",
                "--http-timeout-ms",
                "3000",
            ],
        );
        self.postd = Some(c);
    }

    fn kill9(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_collector(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let c = Collector::start(&addr, Options::default()).unwrap();
        self.collector = Some(c);
    }

    fn collector(&self) -> &Collector {
        self.collector.as_ref().unwrap()
    }

    fn spool_files(&self) -> Vec<String> {
        telemetry::spool::scan(&self.spool_dir())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    fn journal(&self) -> Vec<telemetry::journal::Entry> {
        let path = self.config().journal_file;
        if !path.exists() {
            return Vec::new();
        }
        telemetry::journal::read(&path).unwrap()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["telemprobd", "telempostd"] {
            let text =
                fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
            // The tail is what matters when a scenario fails.
            let tail: String = text
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            s.push_str(&format!("--- {name} (last lines)\n{tail}\n"));
        }
        s
    }

    fn telemctl(&self, args: &[&str]) -> String {
        let o = self.cmd("telemctl").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "telemctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        System::kill9(&mut self.probd);
        System::kill9(&mut self.postd);
    }
}

/// What the senders learnt: the event ids acknowledged with 0, and how many sends failed.
#[derive(Default)]
struct Sent {
    acked: BTreeSet<String>,
    failed: usize,
}

/// One record with a unique payload (and its own event id).
fn record(sys: &SysInfo, tag: &str, size: usize) -> Record {
    let mut r = Record::new(2, "org.example/faults/e2e", 1, sys).unwrap();
    let mut payload = format!("{tag} ");
    while payload.len() < size {
        payload.push('x');
    }
    r.set_payload(payload.as_bytes()).unwrap();
    r
}

/// `senders` threads each send `per_sender` records, retrying a failed send of the same record
/// (as a careful program would) up to `retries` times; returns what was acknowledged.
fn send_many(s: &System, tag: &str, senders: usize, per_sender: usize, retries: usize) -> Sent {
    let sent = Arc::new(Mutex::new(Sent::default()));
    let sys = SysInfo::gather(&s.sysroot());
    let config = s.config();
    std::thread::scope(|scope| {
        for t in 0..senders {
            let (sent, sys, config) = (sent.clone(), sys.clone(), config.clone());
            scope.spawn(move || {
                for i in 0..per_sender {
                    let r = record(&sys, &format!("{tag}-{t}-{i}"), 300);
                    let mut ok = false;
                    for attempt in 0..=retries {
                        if telemetry::client::send(&r, &config).is_ok() {
                            ok = true;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20 * (attempt as u64 + 1)));
                    }
                    let mut g = sent.lock().unwrap();
                    if ok {
                        g.acked
                            .insert(r.get(telemetry::record::Header::EventId).to_string());
                    } else {
                        g.failed += 1;
                    }
                }
            });
        }
    });
    Arc::try_unwrap(sent).ok().unwrap().into_inner().unwrap()
}

#[test]
fn a_full_spool_never_loses_an_acknowledged_record_to_the_quota() {
    // A small quota and the collector down: telemprobd accepts records until the quota says
    // full, and telempostd, which enforces the same quota by dropping the oldest, must not drop
    // any of them (it used to count allocated blocks where telemprobd counted bytes).
    let mut s = System::new("spool_max_size=64");
    s.start_probd();
    let sys = SysInfo::gather(&s.sysroot());
    let config = s.config();
    let mut acked = BTreeSet::new();
    let mut refused = 0;
    for i in 0..400 {
        let r = record(&sys, &format!("quota-{i}"), 600);
        match telemetry::client::send(&r, &config) {
            Ok(()) => {
                acked.insert(r.get(telemetry::record::Header::EventId).to_string());
            }
            Err(e) => {
                assert_eq!(e.errno(), 28, "only 'spool full' is expected: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the quota was never reached");
    assert_eq!(s.spool_files().len(), acked.len());
    s.start_postd();
    // Several full scans (each enforces the quota) with the collector still down.
    std::thread::sleep(Duration::from_secs(3));
    let dropped: Vec<_> = s
        .journal()
        .into_iter()
        .filter(|e| e.outcome == Some(Outcome::Dropped))
        .collect();
    assert!(
        dropped.is_empty(),
        "{} acknowledged records dropped, e.g. {:?}",
        dropped.len(),
        dropped.first().map(|e| &e.detail)
    );
    // The collector comes up: everything acknowledged arrives.
    s.start_collector();
    let n = acked.len();
    assert!(
        s.collector().wait_for_records(n, Duration::from_secs(60)),
        "{} of {n} arrived\n{}",
        s.collector().records().len(),
        s.logs()
    );
    let arrived: BTreeSet<String> = s
        .collector()
        .records()
        .iter()
        .filter_map(|r| r.headers.get("event-id").cloned())
        .collect();
    assert_eq!(arrived, acked);
}

/// The collector's records by event id (each stored once: it de-duplicates).
fn arrived(s: &System) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in s.collector().records() {
        if let Some(id) = r.headers.get("event-id") {
            *m.entry(id.clone()).or_insert(0) += 1;
        }
    }
    m
}

/// The end state every scenario must reach: every acknowledged record at the collector (0
/// lost), stored once, duplicates within `max_duplicates`, the spool empty, and telemctl's
/// status and journal agreeing with the collector.
fn check_end_state(s: &System, sent: &Sent, max_duplicates: u64) {
    let n = sent.acked.len();
    let all_there = wait_until(Duration::from_secs(90), || {
        let a = arrived(s);
        sent.acked.iter().all(|id| a.contains_key(id))
    });
    let a = arrived(s);
    let lost: Vec<_> = sent
        .acked
        .iter()
        .filter(|id| !a.contains_key(*id))
        .collect();
    assert!(
        all_there,
        "{} of {n} acknowledged records lost, e.g. {:?}\n{}",
        lost.len(),
        lost.first(),
        s.logs()
    );
    assert!(
        a.values().all(|&c| c == 1),
        "the collector stored a record twice"
    );
    let dups = s.collector().duplicates();
    assert!(
        dups <= max_duplicates,
        "{dups} duplicates, more than the bound {max_duplicates}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || s.spool_files().is_empty()),
        "records left in the spool: {:?}\n{}",
        s.spool_files(),
        s.logs()
    );
    // Nothing acknowledged left the spool any other way than by delivery.
    let journal = s.journal();
    for e in &journal {
        assert_eq!(
            e.outcome,
            Some(Outcome::Delivered),
            "{} {}",
            e.event_id,
            e.detail
        );
        assert!(
            a.contains_key(&e.event_id),
            "journaled, not at the collector"
        );
    }
    // telemctl shows the same: an empty spool, and the journal's newest entries, all delivered.
    let status = s.telemctl(&["status"]);
    assert!(status.contains("spool:       0 records"), "{status}");
    let shown = s.telemctl(&["journal"]);
    let want = journal.len().min(telemetry::journal::RECORD_LIMIT);
    assert_eq!(shown.lines().count(), want, "{shown}");
    for line in shown.lines() {
        assert!(line.contains(" delivered"), "{line}");
        assert!(
            line.split_whitespace().any(|w| a.contains_key(w)),
            "{line}: event id not at the collector"
        );
    }
    eprintln!(
        "{} acknowledged, {} sends failed, {} at the collector, {} duplicates removed there",
        n,
        sent.failed,
        a.len(),
        dups
    );
}

/// telempostd's `delivered` counter as telemctl status shows it.
fn delivered_counter(s: &System) -> Option<u64> {
    let status = s.telemctl(&["status"]);
    let at = status.find("delivered ")?;
    status[at + "delivered ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn collector_down_then_up_with_many_senders() {
    let mut s = System::new("");
    s.start_probd();
    s.start_postd();
    let sent = send_many(&s, "down", 8, 25, 3);
    assert_eq!(sent.failed, 0);
    // Down: the records wait in the spool.
    std::thread::sleep(Duration::from_millis(800));
    assert!(!s.spool_files().is_empty());
    s.start_collector();
    check_end_state(&s, &sent, 0);
    // Nothing was delivered twice: the counter equals what the collector holds.
    let stored = s.collector().records().len() as u64;
    assert!(
        wait_until(Duration::from_secs(10), || delivered_counter(&s)
            == Some(stored)),
        "{:?} != {stored}",
        delivered_counter(&s)
    );
}

#[test]
fn error_answers_retry_after_slow_answers_and_resets() {
    let mut rng = Rng::seeded("error_answers");
    let mut s = System::new("");
    s.start_collector();
    let status = |code, retry_after| Fault::Status {
        code,
        retry_after,
        message: None,
    };
    let mut faults = vec![
        (status(500, None), 3),
        (status(503, Some(1)), 2),
        (status(429, Some(1)), 2),
        (status(408, None), 2),
        (Fault::Delay(Duration::from_millis(1500)), 2),
        (Fault::Reset, 3),
        (status(502, None), 2),
    ];
    // Seeded order, so each run tries another sequence (the seed is printed).
    for i in (1..faults.len()).rev() {
        faults.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (f, n) in faults {
        s.collector().push_fault(f, n);
    }
    s.start_probd();
    s.start_postd();
    let sent = send_many(&s, "errors", 6, 20, 3);
    assert_eq!(sent.failed, 0);
    // None of these faults stores a record, so none may give a duplicate.
    check_end_state(&s, &sent, 0);
}

#[test]
fn close_after_answer_store_then_500_and_reset_mid_answer() {
    let mut s = System::new("");
    s.start_collector();
    s.collector().push_fault(Fault::StoreThenStatus(500), 4);
    s.collector()
        .push_fault(Fault::ResetMidAnswer { bytes: 12 }, 3);
    s.collector().push_fault(Fault::StoreThenStatus(503), 2);
    // Then, for good: every answer followed by a close, without `Connection: close`.
    s.collector().push_fault(
        Fault::CloseAfterAnswer {
            linger: Duration::from_millis(5),
        },
        usize::MAX,
    );
    s.start_probd();
    s.start_postd();
    let sent = send_many(&s, "closes", 6, 20, 3);
    assert_eq!(sent.failed, 0);
    // Each fault that stores and then fails the answer causes one resend at most.
    check_end_state(&s, &sent, 4 + 3 + 2);
}

#[test]
fn kill_9_of_telemprobd_at_random_moments() {
    let mut rng = Rng::seeded("kill_probd");
    let mut s = System::new("");
    s.start_collector();
    s.start_probd();
    s.start_postd();
    const KILLS: usize = 22;
    const SENDERS: usize = 4;
    let done = std::sync::atomic::AtomicBool::new(false);
    let sent = Arc::new(Mutex::new(Sent::default()));
    let sys = SysInfo::gather(&s.sysroot());
    let mut config = s.config();
    // A send waits at most this long for telemprobd's answer before the sender retries.
    config.send_timeout_ms = 2000;
    std::thread::scope(|scope| {
        for t in 0..SENDERS {
            let (sent, sys, config, done) = (sent.clone(), sys.clone(), config.clone(), &done);
            scope.spawn(move || {
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = record(&sys, &format!("probd-{t}-{i}"), 300);
                    i += 1;
                    // Retried (the same record) until acknowledged or the test's end.
                    let mut ok = false;
                    for _ in 0..200 {
                        if telemetry::client::send(&r, &config).is_ok() {
                            ok = true;
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(25));
                    }
                    let mut g = sent.lock().unwrap();
                    if ok {
                        g.acked
                            .insert(r.get(telemetry::record::Header::EventId).to_string());
                    } else {
                        g.failed += 1;
                    }
                }
            });
        }
        for _ in 0..KILLS {
            std::thread::sleep(Duration::from_millis(30 + rng.below(250)));
            System::kill9(&mut s.probd);
            std::thread::sleep(Duration::from_millis(rng.below(100)));
            s.start_probd();
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let sent = Arc::try_unwrap(sent).ok().unwrap().into_inner().unwrap();
    assert!(
        sent.acked.len() > 50,
        "only {} acknowledged",
        sent.acked.len()
    );
    // A kill between a record's commit and its answer makes its sender send it again, and a
    // restarted daemon does not remember it: at most one duplicate per sender and kill.
    check_end_state(&s, &sent, (KILLS * SENDERS) as u64);
}

#[test]
fn kill_9_of_telempostd_at_random_moments() {
    let mut rng = Rng::seeded("kill_postd");
    let mut s = System::new("");
    s.start_collector();
    s.start_probd();
    // A backlog first, then telempostd killed again and again while it delivers it.
    let sent = send_many(&s, "postd", 4, 100, 0);
    assert_eq!(sent.failed, 0);
    const KILLS: usize = 22;
    for _ in 0..KILLS {
        s.start_postd();
        std::thread::sleep(Duration::from_millis(40 + rng.below(300)));
        System::kill9(&mut s.postd);
    }
    s.start_postd();
    // delivery.md §6: a kill resends the record in flight and those delivered in the last
    // moments and not yet finished, at most a batch of 32.
    check_end_state(&s, &sent, (KILLS * 33) as u64);
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn spool_on_a_full_small_tmpfs() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED spool_on_a_full_small_tmpfs: mounting a tmpfs needs root");
        return;
    }
    let mut s = System::new("spool_max_size=-1");
    let spool = s.spool_dir();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0750", "tmpfs"])
        .arg(&spool)
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("SKIPPED spool_on_a_full_small_tmpfs: mount -t tmpfs failed here");
        return;
    }
    let _umount = Mount(spool.clone());
    s.start_probd();
    // Far more than fits: the later sends fail (no space), the acknowledged ones must arrive.
    let sent = send_many(&s, "tmpfs", 4, 40, 0);
    assert!(sent.failed > 0, "the tmpfs never filled");
    assert!(!sent.acked.is_empty());
    s.start_collector();
    s.start_postd();
    check_end_state(&s, &sent, 0);
    // With room again, records are accepted again.
    let again = send_many(&s, "tmpfs-again", 1, 5, 0);
    assert_eq!(again.failed, 0);
}
