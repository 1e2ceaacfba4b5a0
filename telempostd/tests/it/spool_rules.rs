//! What happens to records besides delivery: expiry, quota, local-only mode and retention,
//! per-record CFG, opt-in, rate limits, files of the original daemon, entries to ignore.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use telem_collector::{Collector, Options};
use telemetry::journal::Outcome;

use crate::common::*;

const T: Duration = Duration::from_secs(10);

/// A URL where nothing listens.
fn dead_url() -> String {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let url = c.url("/v2/collector");
    c.stop();
    url
}

#[test]
fn expired_records_are_journaled_and_removed_even_while_the_server_fails() {
    let mut env = Env::new(&dead_url(), "record_expiry=1");
    let head = record("fresh head");
    env.spool(&head, None);
    // Behind the failing head: one long expired, one that expires while the daemon backs off.
    let old = with_created(&record("old"), now() - 3600);
    let soon = with_created(&record("soon"), now() - 58);
    env.spool(&old, None);
    let soon_name = env.spool(&soon, None);
    let d = env.start(FAST);
    assert!(
        wait_until(T, || !env.spool_files().contains(&soon_name)),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    assert_eq!(env.spool_files().len(), 1, "the fresh head stays");
    let j = env.journal();
    let expired: Vec<_> = j
        .iter()
        .filter(|e| e.outcome == Some(Outcome::Expired))
        .map(|e| e.event_id.clone())
        .collect();
    assert_eq!(expired, [event_id(&old), event_id(&soon)]);
    assert!(j[0].detail.contains("record_expiry"));
    assert_eq!(env.counter("expired"), 2);
    assert!(env.counter("failed_attempts") >= 1);
}

#[test]
fn over_quota_the_oldest_records_are_dropped() {
    let mut env = Env::new(&dead_url(), "");
    let recs: Vec<_> = (0..5).map(|i| record(&format!("quota {i}"))).collect();
    let names: Vec<String> = recs.iter().map(|r| env.spool(r, None)).collect();
    // Two files' worth: the drop limit (an eighth above) holds two, not three.
    let per_file = env.allocated(&names[0]);
    let kib = (2 * per_file).div_ceil(1024);
    env.write_config(&dead_url(), &format!("spool_max_size={kib}"));
    let d = env.start(FAST);
    assert!(
        wait_until(T, || env.spool_files().len() == 2),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    assert_eq!(env.spool_files(), names[3..].to_vec());
    let j = env.journal();
    assert_eq!(j.len(), 3);
    for (e, r) in j.iter().zip(&recs) {
        assert_eq!(e.outcome, Some(Outcome::Dropped));
        assert_eq!(e.event_id, event_id(r));
        assert!(e.detail.contains("quota"));
    }
}

#[test]
fn local_only_journals_and_retains_without_any_network() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(
        &c.url("/v2/collector"),
        "record_server_delivery_enabled=false\nrecord_retention_enabled=true",
    );
    let recs: Vec<_> = (0..3)
        .map(|i| record(&format!("local body {i}\n")))
        .collect();
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
    assert!(c.requests().is_empty(), "local only must not send");
    let j = env.journal();
    assert_eq!(j.len(), 3);
    let dir = env.config().retention_dir;
    for (e, r) in j.iter().zip(&recs) {
        assert_eq!(e.outcome, Some(Outcome::Delivered));
        assert!(e.detail.contains("record_server_delivery_enabled=false"));
        assert_eq!(fs::read(dir.join(&e.record_id)).unwrap(), r.payload());
    }
}

#[test]
fn retention_keeps_delivered_bodies_and_pruning_deletes_old_ones() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "record_retention_enabled=true");
    let n = 155;
    for i in 0..n {
        env.spool(&record(&format!("body {i}")), None);
    }
    let d = env.start(FAST);
    assert!(
        c.wait_for_records(n, Duration::from_secs(20)),
        "{}",
        d.log_text()
    );
    assert!(wait_until(T, || env.spool_files().is_empty()));
    assert!(d.stop().success());
    // 151st entry triggered the prune to 100; four more since.
    let j = env.journal();
    assert_eq!(j.len(), 104);
    let dir = env.config().retention_dir;
    let mut kept: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    let mut ids: Vec<String> = j.iter().map(|e| e.record_id.clone()).collect();
    ids.sort();
    assert_eq!(kept, ids);
    assert_eq!(
        fs::read_to_string(dir.join(&j[103].record_id)).unwrap(),
        "body 154"
    );
}

#[test]
fn per_record_cfg_applies_to_that_record_only() {
    let a = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let b = Collector::start(
        "127.0.0.1:0",
        Options {
            tid: "other-tid".into(),
            store: None,
        },
    )
    .unwrap();
    let mut env = Env::new(&a.url("/v2/collector"), "");
    let cfg = env.root.join("etc/telemetrics/record.conf");
    fs::write(
        &cfg,
        format!(
            // The errors and oddities in keys the target does not use cost nothing.
            "[settings]\nserver={}\ntidheader=X-Telemetry-TID: other-tid\nrate_limit_enabled=maybe\nrecord_expiry=1200 # minutes\n",
            b.url("/v3/collector")
        ),
    )
    .unwrap();
    let broken = env.root.join("etc/telemetrics/broken.conf");
    fs::write(&broken, "[settings]\nserver\n").unwrap();
    let r1 = record("via cfg");
    let r2 = record("via daemon config");
    let r3 = record("broken cfg");
    let r4 = record("cfg is a directory");
    let no_ca = env.root.join("etc/telemetrics/no-ca.conf");
    fs::write(
        &no_ca,
        "[settings]\nserver=https://127.0.0.1:9/v2/collector\ncainfo=/nonexistent/ca.pem\n",
    )
    .unwrap();
    let r5 = record("cfg with a missing cainfo");
    env.spool(&r1, Some(&cfg));
    env.spool(&r2, None);
    let n3 = env.spool(&r3, Some(&broken));
    env.spool(&r4, Some(&env.root.join("etc")));
    let n5 = env.spool(&r5, Some(&no_ca));
    let d = env.start(FAST);
    // The records whose own configuration is unusable stay queued; the others go.
    assert!(
        wait_until(T, || env.spool_files() == [n3.clone(), n5.clone()]),
        "{}",
        d.log_text()
    );
    assert!(d.stop().success());
    assert_eq!(stored_ids(&b), [event_id(&r1)]);
    assert_eq!(b.records()[0].format, "json");
    assert_eq!(stored_ids(&a), [event_id(&r2), event_id(&r4)]);
    let j = env.journal();
    assert_eq!(j.len(), 3, "{j:?}");
    assert!(j.iter().all(|e| e.outcome == Some(Outcome::Delivered)));
    let log = d_log_text(&env);
    assert!(log.contains("broken.conf:2"), "{log}");
    assert!(log.contains("/nonexistent/ca.pem"), "{log}");
}

/// Every telempostd log of the test root.
fn d_log_text(env: &Env) -> String {
    let mut all = String::new();
    for e in fs::read_dir(&env.root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "log") {
            all.push_str(&fs::read_to_string(p).unwrap_or_default());
        }
    }
    all
}

#[test]
fn not_opted_in_nothing_is_sent_until_opt_in() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // A minute's expiry and a record made two hours ago: expired, were it opted in.
    let mut env = Env::new(&c.url("/v2/collector"), "record_expiry=1");
    fs::remove_file(env.root.join("etc/telemetrics/opt-in")).unwrap();
    let r = with_created(&record("private"), now() - 7200);
    env.spool(&r, None);
    let d = env.start(FAST);
    // Several scan periods pass (and even expiry is not applied while opted out).
    assert!(wait_until(T, || d.log_text().contains("not opted in")));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(c.requests().is_empty());
    assert_eq!(env.spool_files().len(), 1);
    assert!(d.stop().success());
    assert_eq!(d_log_count(&env), 0);

    // Opted in with the same expiry: now it expires, untouched before.
    fs::write(env.root.join("etc/telemetrics/opt-in"), "").unwrap();
    let d = env.start(FAST);
    assert!(wait_until(T, || d_log_count(&env) == 1), "{}", d.log_text());
    assert!(d.stop().success());
    assert_eq!(env.journal()[0].outcome, Some(Outcome::Expired));
    assert!(c.requests().is_empty());

    // And a fresh record is delivered.
    env.spool(&record("later"), None);
    let d = env.start(FAST);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    assert!(d.stop().success());
}

fn d_log_count(env: &Env) -> usize {
    env.journal().len()
}

#[test]
fn files_of_the_original_daemon_are_delivered() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let env = Env::new(&c.url("/v2/collector"), "");
    let ts = now();
    let file = format!(
        "record_format_version: 4\nclassification: org.clearlinux/hello/world\nseverity: 1\n\
         machine_id: {MACHINE_ID}\ncreation_timestamp: {ts}\narch: x86_64\n\
         host_type: QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2\nbuild: 40000\n\
         kernel_version: 6.1.0-13-amd64\npayload_format_version: 1\nsystem_name: clear-linux-os\n\
         board_name: no_bn_file|no_bv_file\ncpu_model: Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz\n\
         bios_version: 1.16.0-debian-1.16.0-5\nevent_id: 3a2d799826edc6266d72824d2aac6763\nhello\n"
    );
    // Written in place like the original (no rename): IN_CLOSE_WRITE picks it up.
    let d = env.start(FAST);
    assert!(wait_until(T, || env.status().is_some()));
    fs::write(env.spool.join("aB3dE9"), &file).unwrap();
    fs::write(
        env.spool.join("bC4eF0"),
        file.replace("3a2d7998", "4a2d7998"),
    )
    .unwrap();
    assert!(c.wait_for_records(2, T), "{}", d.log_text());
    assert!(d.stop().success());
    let got = c.records();
    assert_eq!(got[0].payload, "hello");
    assert_eq!(
        got[0].headers["event-id"],
        "3a2d799826edc6266d72824d2aac6763"
    );
    assert_eq!(
        got[0].headers["cpu-model"],
        "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz"
    );
    assert_eq!(
        got[1].headers["event-id"],
        "4a2d799826edc6266d72824d2aac6763"
    );
}

#[test]
fn dot_files_symlinks_and_directories_are_left_alone() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    let outside = env.root.join("outside-record");
    fs::write(&outside, telemetry::spool::encode(&record("outside"), None)).unwrap();
    symlink(&outside, env.spool.join("link")).unwrap();
    fs::write(env.spool.join(".being-written"), "partial").unwrap();
    fs::create_dir(env.spool.join("subdir")).unwrap();
    let r = record("real");
    env.spool(&r, None);
    let d = env.start(FAST);
    assert!(c.wait_for_records(1, T), "{}", d.log_text());
    std::thread::sleep(Duration::from_millis(700));
    assert!(d.stop().success());
    assert_eq!(stored_ids(&c), [event_id(&r)]);
    assert_eq!(env.spool_files(), [".being-written", "link", "subdir"]);
    assert!(outside.exists());
}

#[test]
fn rate_limit_drop_journals_and_deletes_spool_waits() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(
        &c.url("/v2/collector"),
        "rate_limit_enabled=true\nrecord_burst_limit=2\nrecord_window_length=15\nrate_limit_strategy=drop",
    );
    let recs: Vec<_> = (0..4).map(|i| record(&format!("rate {i}"))).collect();
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
    assert_eq!(stored_ids(&c), [event_id(&recs[0]), event_id(&recs[1])]);
    let j = env.journal();
    assert_eq!(j[2].outcome, Some(Outcome::Dropped));
    assert_eq!(j[3].outcome, Some(Outcome::Dropped));
    assert!(j[2].detail.contains("rate limited"));

    // Strategy spool: the third record waits in the spool.
    let c2 = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(
        &c2.url("/v2/collector"),
        "rate_limit_enabled=true\nrecord_burst_limit=2\nrecord_window_length=15\nrate_limit_strategy=spool",
    );
    for r in &recs[..3] {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(c2.wait_for_records(2, T), "{}", d.log_text());
    std::thread::sleep(Duration::from_millis(800));
    assert!(d.stop().success());
    assert_eq!(c2.records().len(), 2);
    assert_eq!(env.spool_files().len(), 1);
    assert_eq!(env.journal().len(), 2);
}

#[test]
fn idle_exit_with_recycling() {
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "");
    env.write_config(&c.url("/v2/collector"), "");
    fs::write(
        &env.conf,
        format!(
            "[settings]\nserver={}\ndaemon_recycling_enabled=true\nrate_limit_enabled=false\n",
            c.url("/v2/collector")
        ),
    )
    .unwrap();
    env.spool(&record("before idle"), None);
    let mut args = FAST.to_vec();
    args.extend(["--idle-exit-secs", "1"]);
    let mut d = env.start(&args);
    let status = d.wait(T).expect("no idle exit");
    assert!(status.success());
    assert_eq!(c.records().len(), 1);
}

#[test]
fn opting_out_stops_a_backlog_drain_within_the_recheck_time() {
    // The opt-in file is looked at every 100 ms during a drain, not before every record.
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    // Each answer takes ≥ 5 ms, so 300 records take well over a second.
    c.push_fault(telem_collector::Fault::Delay(Duration::from_millis(5)), 300);
    let mut env = Env::new(&c.url("/v2/collector"), "");
    for i in 0..300 {
        env.spool(&record(&format!("backlog {i}")), None);
    }
    let d = env.start(FAST);
    assert!(c.wait_for_records(20, T), "{}", d.log_text());
    fs::remove_file(env.root.join("etc/telemetrics/opt-in")).unwrap();
    // 100 ms for the recheck, one POST in flight: settled well within 600 ms.
    std::thread::sleep(Duration::from_millis(600));
    let settled = c.records().len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        c.records().len(),
        settled,
        "delivery went on after the opt-out"
    );
    assert!(
        settled < 300,
        "the whole backlog went out before the opt-out"
    );
    assert_eq!(env.spool_files().len(), 300 - settled);
    assert!(d.log_text().contains("not opted in"));
    assert!(d.stop().success());
}

#[test]
fn an_expired_record_in_a_moving_queue_is_expired_not_sent() {
    // With a working collector the scans do not read the backlog; the check before each
    // attempt must still catch an expired record.
    let c = Collector::start("127.0.0.1:0", Options::default()).unwrap();
    let mut env = Env::new(&c.url("/v2/collector"), "record_expiry=1");
    let first = record("fresh 1");
    let old = with_created(&record("old"), now() - 3600);
    let last = record("fresh 2");
    for r in [&first, &old, &last] {
        env.spool(r, None);
    }
    let d = env.start(FAST);
    assert!(c.wait_for_records(2, T), "{}", d.log_text());
    assert!(wait_until(T, || env.spool_files().is_empty()));
    assert!(d.stop().success());
    assert_eq!(stored_ids(&c), [event_id(&first), event_id(&last)]);
    let expired: Vec<_> = env
        .journal()
        .into_iter()
        .filter(|e| e.outcome == Some(Outcome::Expired))
        .map(|e| e.event_id)
        .collect();
    assert_eq!(expired, [event_id(&old)]);
}
