//! Every acknowledged record reaches the server: a server that closes kept-alive connections,
//! a record the server keeps failing, kill -9 at full speed, configuration problems, files that
//! are not records.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use telem_collector::{Collector, Fault, Options};
use telemetry::journal::Outcome;

use crate::common::*;

const T: Duration = Duration::from_secs(20);

/// Requests per event id, in arrival order.
fn request_ids(c: &Collector) -> Vec<String> {
    c.requests()
        .into_iter()
        .filter_map(|r| r.event_id)
        .collect()
}

#[test]
fn a_server_that_closes_after_each_answer_costs_no_failure() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // uWSGI's http-socket: 201 without `Connection: close`, then the close (50 ms later, so the
    // next request always finds the connection still open and is sent on it).
    c.push_fault(
        Fault::CloseAfterAnswer {
            linger: Duration::from_millis(50),
        },
        usize::MAX,
    );
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let recs: Vec<_> = (0..8).map(|i| record(&format!("closing {i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    assert_eq!(
        stored_ids(&c),
        recs.iter().map(event_id).collect::<Vec<_>>()
    );
    assert_eq!(
        env.counter("failed_attempts"),
        0,
        "a dead kept-alive connection counted as a failure"
    );
    assert_eq!(env.counter("delivered"), 8);
}

#[test]
fn a_record_the_server_keeps_failing_goes_behind_the_others() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // The backend that commits every record, then answers 500.
    c.push_fault(Fault::StoreThenStatus(500), usize::MAX);
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let recs: Vec<_> = (0..4).map(|i| record(&format!("hol {i}"))).collect();
    for r in &recs {
        env.spool(r, None);
    }
    let args: Vec<&str> = FAST
        .iter()
        .map(|a| if *a == "1000" { "300" } else { a })
        .collect();
    let d = env.start(&args);
    let all: Vec<String> = recs.iter().map(event_id).collect();
    let every_one_arrived = wait_until(T, || {
        let got = stored_ids(&c);
        all.iter().all(|id| got.contains(id))
    });
    assert!(every_one_arrived, "{:?}\n{}", request_ids(&c), d.log_text());
    // Until the last one was first tried, no record was tried more than the bound.
    let reqs = request_ids(&c);
    let last_first = all
        .iter()
        .map(|id| reqs.iter().position(|r| r == id).unwrap())
        .max()
        .unwrap();
    let mut per: HashMap<&str, usize> = HashMap::new();
    for r in &reqs[..=last_first] {
        *per.entry(r).or_default() += 1;
    }
    assert!(per.values().all(|&n| n <= 3), "{reqs:?}");
    assert!(d.stop().success());
    // Nothing was journaled: every record is still queued (the server never said 2xx).
    assert_eq!(env.spool_files().len(), 4);
    assert!(env.journal().is_empty());
}

#[test]
fn attempt_counts_survive_a_restart() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    c.push_fault(
        Fault::Status {
            code: 500,
            retry_after: None,
            message: None,
        },
        usize::MAX,
    );
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let (a, b) = (record("first"), record("second"));
    env.spool(&a, None);
    env.spool(&b, None);
    let d = env.start(FAST);
    // A is tried up to the bound, then B once; stop before B's second try (≥ 200 ms later).
    let tried = wait_until(T, || {
        let ids = request_ids(&c);
        ids.iter().filter(|i| **i == event_id(&b)).count() == 1
    });
    assert!(tried, "{:?}\n{}", request_ids(&c), d.log_text());
    assert!(d.stop().success());
    let before = request_ids(&c);
    assert_eq!(
        before.iter().filter(|i| **i == event_id(&a)).count(),
        3,
        "{before:?}"
    );
    c.clear_faults();
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    // After the restart B, which has had fewer attempts, goes first.
    assert_eq!(stored_ids(&c), [event_id(&b), event_id(&a)]);
}

/// A small deterministic generator (xorshift), so the kill moments are the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_at_full_speed_duplicates_at_most_the_bound_per_crash() {
    // Delivered but not yet finished records, plus the one in flight.
    const BOUND: usize = telempostd::finish::MAX_UNFINISHED + 1;
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(
        &c.url("/v2/collector"),
        "spool_max_size=-1\nrecord_retention_enabled=true",
    );
    let n = 3000;
    for i in 0..n {
        env.spool(&record(&format!("k{i}")), None);
    }
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let mut kills = 0;
    let mut worst = 0;
    for _ in 0..8 {
        let before = c.records().len();
        if before >= n {
            break;
        }
        let d = env.start(&[]);
        if !c.wait_for_records(before + 1, T) {
            panic!("no delivery after a restart\n{}", d.log_text());
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
        d.kill9();
        kills += 1;
        // Records the collector has that are still spooled: what this crash will duplicate.
        let stored: std::collections::HashSet<String> = stored_ids(&c).into_iter().collect();
        let again = env
            .spool_files()
            .iter()
            .filter_map(|f| fs::read(env.spool.join(f)).ok())
            .filter_map(|b| telemetry::spool::decode(&b).ok())
            .filter(|sr| stored.contains(&event_id(&sr.record)))
            .count();
        worst = worst.max(again);
        assert!(
            again <= BOUND,
            "kill {kills}: {again} delivered records still spooled"
        );
    }
    let d = env.start(&[]);
    assert!(
        wait_until(Duration::from_secs(120), || env.spool_files().is_empty()),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    let ids = stored_ids(&c);
    let mut seen = std::collections::HashSet::new();
    let dups = ids.iter().filter(|id| !seen.insert(*id)).count();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for e in env.journal() {
        *outcomes
            .entry(format!("{:?} {}", e.outcome, e.detail))
            .or_default() += 1;
    }
    assert_eq!(
        seen.len(),
        n,
        "records lost; journal (last 100): {outcomes:?}"
    );
    assert!(kills > 0);
    eprintln!("{dups} duplicates after {kills} kills, at most {worst} for one");
    assert!(
        dups <= kills * BOUND,
        "{dups} duplicates after {kills} kills (bound {BOUND} each)"
    );
}

#[test]
fn configuration_problems_keep_records_queued_until_fixed() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let broken = env.root.join("etc/telemetrics/broken.conf");
    fs::write(&broken, "[settings]\nserver\n").unwrap();
    let no_ca = env.root.join("etc/telemetrics/no-ca.conf");
    fs::write(
        &no_ca,
        "[settings]\nserver=https://127.0.0.1:9/v2/collector\ncainfo=/nonexistent/ca.pem\n",
    )
    .unwrap();
    let bad_tid = env.root.join("etc/telemetrics/bad-tid.conf");
    fs::write(
        &bad_tid,
        format!(
            "[settings]\nserver={}\ntidheader=X Telemetry TID: x\n",
            c.url("/v2/collector")
        ),
    )
    .unwrap();
    let (r1, r2, r3, ok) = (
        record("broken cfg"),
        record("missing cainfo"),
        record("bad tidheader"),
        record("fine"),
    );
    let n1 = env.spool(&r1, Some(&broken));
    let n2 = env.spool(&r2, Some(&no_ca));
    let n3 = env.spool(&r3, Some(&bad_tid));
    env.spool(&ok, None);
    let d = env.start(FAST);
    // The good record behind the three stuck ones goes.
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    // Several scans later the stuck ones are still there, and nothing was journaled for them.
    std::thread::sleep(Duration::from_millis(1000));
    let mut left = vec![n1.clone(), n2, n3];
    left.sort();
    assert_eq!(env.spool_files(), left, "{}", d.log_text());
    let j = env.journal();
    assert_eq!(j.len(), 1, "{j:?}");
    assert_eq!(j[0].event_id, event_id(&ok));
    assert_eq!(env.counter("rejected"), 0);
    // Fixing the file delivers its record at the next scan.
    fs::write(
        &broken,
        format!("[settings]\nserver={}\n", c.url("/v2/collector")),
    )
    .unwrap();
    assert!(c.wait_for_records(2, T), "{}", d.log_text());
    assert!(wait_until(T, || !env.spool.join(&n1).exists()));
    assert!(d.stop().success());
    assert_eq!(stored_ids(&c), [event_id(&ok), event_id(&r1)]);
    let st = env.status().unwrap();
    assert!(
        st.counters.get("config_errors").copied().unwrap_or(0) >= 3,
        "{st:?}"
    );
    let log = d_log(&env);
    assert!(
        log.contains("bad-tid.conf") || log.contains("X Telemetry TID"),
        "{log}"
    );
}

fn d_log(env: &Env) -> String {
    let mut all = String::new();
    for e in fs::read_dir(&env.root).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".log") {
            all.push_str(&fs::read_to_string(p).unwrap_or_default());
        }
    }
    all
}

fn age(path: &std::path::Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn files_that_are_not_records_are_moved_to_quarantine_never_deleted() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    // A wrong spool_dir full of someone's files: a large one, an old small one, an old one with
    // a name that is not UTF-8, and a fresh one (maybe being written in place: left alone).
    let photo: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(env.spool.join("photo.jpg"), &photo).unwrap();
    fs::write(env.spool.join("notes.txt"), "shopping list\n").unwrap();
    age(&env.spool.join("notes.txt"), 3600);
    let odd = OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(env.spool.join(odd), "not utf-8 name\n").unwrap();
    age(&env.spool.join(odd), 3600);
    fs::write(env.spool.join("fresh.txt"), "being written\n").unwrap();
    let r = record("a real one");
    env.spool(&r, None);
    let d = env.start(FAST);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    let q = env.spool.join(".quarantine");
    assert!(
        wait_until(T, || q.join("notes.txt").exists() && q.join(odd).exists()),
        "{}",
        d.log_text()
    );
    assert!(wait_until(T, || q.join("photo.jpg").exists()));
    std::thread::sleep(Duration::from_millis(700));
    assert!(d.stop().success());
    assert_eq!(fs::read(q.join("photo.jpg")).unwrap(), photo);
    assert_eq!(fs::read(q.join("notes.txt")).unwrap(), b"shopping list\n");
    assert_eq!(env.spool_files(), [".quarantine", "fresh.txt"]);
    let j = env.journal();
    let moved: Vec<_> = j
        .iter()
        .filter(|e| e.outcome == Some(Outcome::Rejected) && e.detail.contains(".quarantine"))
        .collect();
    assert_eq!(moved.len(), 3, "{j:?}");
}

/// Gives the whole test root to `uid` (and makes its temporary parent passable).
fn chown_all(path: &std::path::Path, uid: u32) {
    use std::os::unix::fs::PermissionsExt;
    let owner = Some(rustix::process::Uid::from_raw(uid));
    let group = Some(rustix::process::Gid::from_raw(uid));
    rustix::fs::chown(path, owner, group).unwrap();
    if fs::symlink_metadata(path).unwrap().is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        for e in fs::read_dir(path).unwrap() {
            chown_all(&e.unwrap().path(), uid);
        }
    }
}

#[test]
fn a_spool_file_nobody_can_read_is_quarantined_after_the_grace() {
    use std::os::unix::fs::PermissionsExt;
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let name = env.spool(&record("locked"), None);
    let p = env.spool.join(&name);
    age(&p, 3600);
    // Root reads a mode 000 file: as root, run the daemon as `nobody`, who cannot.
    let root = rustix::process::geteuid().is_root();
    if root {
        chown_all(&env.root, 65534);
    }
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    let d = if root {
        env.start_as(65534, FAST)
    } else {
        env.start(FAST)
    };
    let q = env.spool.join(".quarantine").join(&name);
    assert!(wait_until(T, || q.exists()), "{}", d.log_text());
    assert!(d.stop().success());
    assert_eq!(env.journal().len(), 1);
}

#[test]
fn the_journal_and_the_retention_directory_are_not_followed_through_symlinks() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "record_retention_enabled=true");
    let cfg = env.config();
    let victim = env.root.join("victim-file");
    fs::write(&victim, "precious\n").unwrap();
    let victim_dir = env.root.join("victim-dir");
    fs::create_dir_all(&victim_dir).unwrap();
    fs::create_dir_all(cfg.journal_file.parent().unwrap()).unwrap();
    symlink(&victim, &cfg.journal_file).unwrap();
    fs::create_dir_all(cfg.retention_dir.parent().unwrap()).unwrap();
    symlink(&victim_dir, &cfg.retention_dir).unwrap();
    env.spool(&record("through a link?"), None);
    let d = env.start(FAST);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    assert!(wait_until(T, || env.spool_files().is_empty()));
    assert!(d.stop().success());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0);
}
