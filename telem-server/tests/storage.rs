//! The storage suite: every test runs against SQLite and against a private PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::Db;

use telem_server::store::schema;
use telem_server::store::{CountBy, Filter, Inserted, NewRecord, Store};

fn record(n: u32) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        classification: "org.clearlinux/hello/world".into(),
        severity: 1,
        build: "40000".into(),
        kernel_version: "6.1.0-13-amd64".into(),
        arch: "x86_64".into(),
        host_type: "QEMU|Standard PC".into(),
        board_name: "blank|blank".into(),
        cpu_model: "Intel(R) Core(TM)".into(),
        bios_version: "1.16.0".into(),
        system_name: "clear-linux-os".into(),
        event_id: "3a2d799826edc6266d72824d2aac6763".into(),
        payload_version: 1,
        record_version: 4,
        ts_capture: 1_700_000_000,
        ts_reception: 1_700_000_100 + i64::from(n),
        payload: format!("payload {n}"),
        crash: None,
    }
}

async fn migrations_are_versioned_and_rerun_safely(db: Db) {
    let latest = match db {
        Db::Sqlite(_) => schema::latest(schema::SQLITE),
        Db::Postgres(_) => schema::latest(schema::POSTGRES),
    };
    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), latest);
    s.insert_batch(&[record(1)]).await.unwrap();
    s.close().await;
    // A second start finds the schema current and the data intact.
    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), latest);
    assert_eq!(s.list(&Filter::default(), 10).await.unwrap().len(), 1);
    s.ping().await.unwrap();
}
store_on_both_engines!(migrations_are_versioned_and_rerun_safely);

async fn insert_is_idempotent_by_identity(db: Db) {
    let s = db.open().await;
    let out = s
        .insert_batch(&[record(1), record(2), record(1)])
        .await
        .unwrap();
    let (Inserted::New(a), Inserted::New(b)) = (out[0], out[1]) else {
        panic!("{out:?}");
    };
    assert_ne!(a, b);
    assert_eq!(out[2], Inserted::Duplicate(a));
    assert_eq!(
        s.insert_batch(&[record(2)]).await.unwrap(),
        vec![Inserted::Duplicate(b)]
    );
    // The event id groups records; it is not unique.
    let mut same_event = record(3);
    same_event.event_id = record(1).event_id;
    assert!(matches!(
        s.insert_batch(&[same_event]).await.unwrap()[0],
        Inserted::New(_)
    ));
    let all = s.list(&Filter::default(), 100).await.unwrap();
    assert_eq!(all.len(), 3);
    let stored = s.get(a).await.unwrap().unwrap();
    assert_eq!(stored.record, record(1));
}
store_on_both_engines!(insert_is_idempotent_by_identity);

async fn text_is_stored_as_sent(db: Db) {
    let s = db.open().await;
    let mut r = record(1);
    r.host_type = "Bäckerei|Ωmega PC".into();
    r.payload = "naïve ☃ payload\nline 2\t".into();
    r.external = true;
    let id = s.insert_batch(&[r.clone()]).await.unwrap()[0].id();
    assert_eq!(s.get(id).await.unwrap().unwrap().record, r);
    assert!(s.get(id + 1000).await.unwrap().is_none());
}
store_on_both_engines!(text_is_stored_as_sent);

/// Records that differ in one field each, for the filter tests.
fn varied() -> Vec<NewRecord> {
    let mut v = Vec::new();
    for n in 0..12u32 {
        let mut r = record(n);
        r.classification = match n % 3 {
            0 => "org.clearlinux/crash/clr".into(),
            1 => "org.clearlinux/crash/unknown".into(),
            _ => "org.clearlinux/hello/world".into(),
        };
        r.severity = i64::from(n % 4 + 1);
        r.machine_id = format!("machine{}", n % 2);
        r.build = if n < 6 {
            "40000".into()
        } else {
            "40010".into()
        };
        r.system_name = if n == 11 {
            "debian".into()
        } else {
            "clear-linux-os".into()
        };
        r.host_type = if n % 2 == 0 {
            "QEMU".into()
        } else {
            "NUC".into()
        };
        r.external = n == 5;
        r.payload = format!("#0 frame_{n} - [libfoo.so]\nerror code {}", n * 7);
        // Four days, three records each.
        r.ts_reception = 1_700_000_000 + i64::from(n / 3) * 86_400;
        v.push(r);
    }
    v
}

async fn ids(s: &Store, f: Filter) -> Vec<u32> {
    let mut out: Vec<u32> = s
        .list(&f, 1000)
        .await
        .unwrap_or_else(|e| panic!("{f:?}: {e}"))
        .into_iter()
        .map(|r| u32::from_str_radix(&r.record.identity, 16).unwrap())
        .collect();
    out.sort();
    out
}

async fn filters(db: Db) {
    let s = db.open().await;
    s.insert_batch(&varied()).await.unwrap();
    let f = |g: fn(&mut Filter)| {
        let mut f = Filter::default();
        g(&mut f);
        f
    };
    assert_eq!(
        ids(
            &s,
            f(|f| f.classification = Some("org.clearlinux/crash/*".into()))
        )
        .await,
        vec![0, 1, 3, 4, 6, 7, 9, 10]
    );
    assert_eq!(
        ids(&s, f(|f| f.classification = Some("*/clr".into()))).await,
        vec![0, 3, 6, 9]
    );
    // No wildcard: exact; and `_`/`%`/`?` are not wildcards.
    assert_eq!(
        ids(
            &s,
            f(|f| f.classification = Some("org.clearlinux/crash".into()))
        )
        .await,
        Vec::<u32>::new()
    );
    assert_eq!(
        ids(
            &s,
            f(|f| f.classification = Some("org.clearlinux/hello/worl_*".into()))
        )
        .await,
        Vec::<u32>::new()
    );
    assert_eq!(
        ids(
            &s,
            f(|f| f.classification = Some("org.clearlinux/hello/worl?".into()))
        )
        .await,
        Vec::<u32>::new()
    );
    // Case matters, as in the exact match.
    assert_eq!(
        ids(
            &s,
            f(|f| f.classification = Some("ORG.clearlinux/*".into()))
        )
        .await,
        Vec::<u32>::new()
    );
    assert_eq!(ids(&s, f(|f| f.severity = Some(4))).await, vec![3, 7, 11]);
    assert_eq!(
        ids(&s, f(|f| f.machine_id = Some("machine1".into()))).await,
        vec![1, 3, 5, 7, 9, 11]
    );
    assert_eq!(
        ids(&s, f(|f| f.build = Some("40010".into()))).await,
        vec![6, 7, 8, 9, 10, 11]
    );
    assert_eq!(
        ids(&s, f(|f| f.system_name = Some("debian".into()))).await,
        vec![11]
    );
    assert_eq!(
        ids(&s, f(|f| f.platform = Some("NUC".into()))).await,
        vec![1, 3, 5, 7, 9, 11]
    );
    assert_eq!(ids(&s, f(|f| f.external = Some(true))).await, vec![5]);
    assert_eq!(
        ids(&s, f(|f| f.payload = Some("frame_1 ".into()))).await,
        vec![1]
    );
    assert_eq!(
        ids(&s, f(|f| f.not_payload = Some("frame_1".into()))).await,
        vec![0, 2, 3, 4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        ids(&s, f(|f| f.payload_regex = Some("code (14|77)$".into()))).await,
        vec![2, 11]
    );
    assert_eq!(
        ids(&s, f(|f| f.not_payload_regex = Some("frame_[0-8] ".into()))).await,
        vec![9, 10, 11]
    );
    assert_eq!(
        ids(
            &s,
            f(|f| {
                f.since = Some(1_700_000_000 + 86_400);
                f.until = Some(1_700_000_000 + 3 * 86_400);
            })
        )
        .await,
        vec![3, 4, 5, 6, 7, 8]
    );
    // Filters combine.
    assert_eq!(
        ids(
            &s,
            f(|f| {
                f.classification = Some("*crash*".into());
                f.build = Some("40000".into());
                f.severity = Some(2);
            })
        )
        .await,
        vec![1]
    );
    assert!(s
        .list(&f(|f| f.payload_regex = Some("(".into())), 10)
        .await
        .is_err());
}
store_on_both_engines!(filters);

async fn keyset_pagination(db: Db) {
    let s = db.open().await;
    let recs: Vec<NewRecord> = (0..25).map(record).collect();
    s.insert_batch(&recs).await.unwrap();
    let mut seen = Vec::new();
    let mut f = Filter::default();
    let mut pages = Vec::new();
    loop {
        let page = s.list(&f, 10).await.unwrap();
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        f.before_id = Some(last.id);
        seen.extend(page.iter().map(|r| r.id));
        if page.len() < 10 {
            break;
        }
    }
    assert_eq!(pages, vec![10, 10, 5]);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len(), 25);
}
store_on_both_engines!(keyset_pagination);

async fn counts(db: Db) {
    let s = db.open().await;
    s.insert_batch(&varied()).await.unwrap();
    let kv = |c: Vec<telem_server::store::Count>| -> Vec<(String, i64)> {
        c.into_iter().map(|c| (c.key, c.count)).collect()
    };
    let all = Filter::default();
    assert_eq!(
        kv(s.counts(CountBy::Build, &all).await.unwrap()),
        vec![("40000".into(), 6), ("40010".into(), 6)]
    );
    assert_eq!(
        kv(s.counts(CountBy::Platform, &all).await.unwrap()),
        vec![("NUC".into(), 6), ("QEMU".into(), 6)]
    );
    let crash = Filter {
        classification: Some("*crash*".into()),
        ..Filter::default()
    };
    assert_eq!(
        kv(s.counts(CountBy::Classification, &crash).await.unwrap()),
        vec![
            ("org.clearlinux/crash/clr".into(), 4),
            ("org.clearlinux/crash/unknown".into(), 4)
        ]
    );
    assert_eq!(
        kv(s.counts(CountBy::Day, &all).await.unwrap()),
        vec![
            ("2023-11-14".into(), 3),
            ("2023-11-15".into(), 3),
            ("2023-11-16".into(), 3),
            ("2023-11-17".into(), 3)
        ]
    );
}
store_on_both_engines!(counts);

async fn two_instances_store_a_record_once(db: Db) {
    // Two stores (two pools, as two server processes would have) insert the same records
    // at once: each identity ends up in exactly one row.
    let a = db.open().await;
    let b = db.open().await;
    let recs: Vec<NewRecord> = (0..20).map(record).collect();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let recs = recs.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for r in &recs {
                out.push(s.insert_batch(std::slice::from_ref(r)).await.unwrap()[0]);
            }
            out
        }));
    }
    let mut new = 0;
    let mut ids_by_record = vec![None; recs.len()];
    for t in tasks {
        for (i, o) in t.await.unwrap().into_iter().enumerate() {
            if matches!(o, Inserted::New(_)) {
                new += 1;
            }
            // Every copy names the same row.
            assert_eq!(*ids_by_record[i].get_or_insert(o.id()), o.id());
        }
    }
    assert_eq!(new, recs.len(), "exactly one insert per record");
    assert_eq!(
        a.list(&Filter::default(), 1000).await.unwrap().len(),
        recs.len()
    );
}
store_on_both_engines!(two_instances_store_a_record_once);

// ---- Crash grouping, retention, population ----

use telem_server::config::Retention;
use telem_server::crash::{Signature, SkipList};

/// A crashprobe payload, made by the crash probe's own formatter: `frames` innermost first,
/// each `(function, module)`.
fn crash_payload(frames: &[(&str, &str)]) -> String {
    use coredump::{Backtrace, Frame, Thread};
    let frame = |(f, m): &(&str, &str)| Frame {
        function: (*f != "???").then(|| f.to_string()),
        module: Some(m.to_string()),
        file: Some("/src/app.c".into()),
        line: Some(42),
    };
    Backtrace {
        pid: 100,
        process_name: "app".into(),
        signal: Some(6),
        threads: vec![
            Thread {
                tid: 100,
                frames: frames.iter().map(frame).collect(),
                truncated: false,
            },
            // A second thread: never blamed.
            Thread {
                tid: 101,
                frames: vec![frame(&("worker_loop", "/usr/bin/app"))],
                truncated: false,
            },
        ],
    }
    .payload("/usr/bin/app", Some(6))
}

const LIBC: &str = "/usr/lib64/libc.so.6";
const APP: &str = "/usr/bin/app";

/// The payload of the one oops in a sample of probes/tests/data/oops, as klogscanner sends it.
fn oops_payload(name: &str) -> (String, String) {
    let path = format!(
        "{}/../probes/tests/data/oops/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let found = probes::oops::scan_text(&text);
    assert_eq!(found.len(), 1, "{name}");
    (
        found[0].classification().to_string(),
        found[0].payload(false),
    )
}

fn sig(f: &str, m: &str) -> Option<Signature> {
    Some(Signature {
        function: f.into(),
        module: m.into(),
    })
}

/// Crash records as ingest makes them (signature by `skip`), and a hello record.
fn crash_records(skip: &SkipList) -> Vec<NewRecord> {
    let abort = crash_payload(&[
        ("__pthread_kill_implementation", LIBC),
        ("raise", LIBC),
        ("abort", LIBC),
        ("parse_config", APP),
        ("main", APP),
    ]);
    let assert = crash_payload(&[
        ("__assert_fail", LIBC),
        ("???", "/usr/lib64/libplugin.so"),
        ("parse_config", APP),
        ("load", APP),
        ("main", APP),
    ]);
    let alloc = crash_payload(&[
        ("_int_malloc", LIBC),
        ("malloc", LIBC),
        // A C++ name as .dynsym gives it: demangled before grouping.
        ("_ZN6Config6reloadEv", APP),
        ("main", APP),
    ]);
    let mut out = Vec::new();
    let mut add = |n: u32, class: &str, payload: String, machine: &str, build: &str| {
        let mut r = record(n);
        r.classification = class.into();
        r.crash = skip.signature(&payload);
        r.payload = payload;
        r.machine_id = machine.into();
        r.build = build.into();
        out.push(r);
    };
    add(1, "org.clearlinux/crash/clr", abort.clone(), "m1", "40000");
    add(2, "org.clearlinux/crash/clr", abort, "m1", "40010");
    add(3, "org.clearlinux/crash/clr", assert, "m2", "40010");
    add(4, "org.clearlinux/crash/clr", alloc, "m3", "40000");
    for (n, file) in [(5, "warning.txt"), (6, "loglevel_notimestamp.txt")] {
        let (class, payload) = oops_payload(file);
        add(n, &class, payload, "m4", "40020");
    }
    for (n, file) in [
        (7, "watchdog.txt"),
        (8, "kernel_null_pointer.txt"),
        (9, "soft_lockup.txt"),
        (10, "bug_kernel_handle_new.txt"),
    ] {
        let (class, payload) = oops_payload(file);
        add(n, &class, payload, "m5", "40020");
    }
    add(
        11,
        "org.clearlinux/hello/world",
        "hello\n".into(),
        "m1",
        "40000",
    );
    out
}

async fn group_keys(s: &Store, f: &Filter) -> Vec<(String, String, i64)> {
    s.crash_groups(f, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.function, g.module, g.count))
        .collect()
}

fn k(f: &str, m: &str, n: i64) -> (String, String, i64) {
    (f.into(), m.into(), n)
}

async fn crash_groups_and_regroup(db: Db) {
    let s = db.open().await;
    let skip = SkipList::default();
    let recs = crash_records(&skip);
    let ids: Vec<i64> = s
        .insert_batch(&recs)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id())
        .collect();
    // Signatures stored with the records.
    let stored = s.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(stored.record.crash, sig("parse_config", APP));
    assert_eq!(
        s.get(ids[3]).await.unwrap().unwrap().record.crash,
        sig("Config::reload()", APP)
    );
    assert_eq!(s.get(ids[10]).await.unwrap().unwrap().record.crash, None);

    let all = Filter::default();
    assert_eq!(
        group_keys(&s, &all).await,
        vec![
            k("parse_config", APP, 3),
            k("preempt_notifier_register", "kernel", 2),
            k("Config::reload()", APP, 1),
            // `? __queue_work` is a guess of the kernel's, not blamed.
            k("_raw_read_lock", "kernel", 1),
            k("dev_watchdog", "kernel", 1),
            k("fat_detach", "kernel", 1),
            k("nv_kern_open", "kernel", 1),
        ]
    );
    let groups = s.crash_groups(&all, 1000).await.unwrap();
    let top = &groups[0];
    assert_eq!(top.machines, 2);
    assert_eq!(top.builds, vec!["40000".to_string(), "40010".to_string()]);
    assert_eq!(top.first_seen, recs[0].ts_reception);
    assert_eq!(top.last_seen, recs[2].ts_reception);
    // Filters apply; the limit keeps the largest.
    let kernel = Filter {
        classification: Some("org.clearlinux/kernel/*".into()),
        ..Filter::default()
    };
    assert_eq!(group_keys(&s, &kernel).await.len(), 5);
    assert_eq!(s.crash_groups(&all, 1).await.unwrap().len(), 1);
    // The records of one group.
    let members = Filter {
        crash_function: Some("parse_config".into()),
        crash_module: Some(APP.into()),
        ..Filter::default()
    };
    assert_eq!(s.list(&members, 100).await.unwrap().len(), 3);

    // Nothing changes when the list has not changed.
    let same = s.regroup(&skip).await.unwrap();
    assert_eq!((same.examined, same.changed), (10, 0));

    // The operator adds parse_config (a wrapper that only reports) and drops the kernel's
    // warning machinery: the groups follow.
    let mut entries: Vec<&str> = telem_server::crash::DEFAULT_SKIP
        .iter()
        .copied()
        .filter(|e| !e.starts_with("warn_slowpath") && !e.starts_with("dump_stack"))
        .collect();
    entries.push("parse_config");
    let edited = SkipList::new(entries);
    let done = s.regroup(&edited).await.unwrap();
    assert_eq!((done.examined, done.changed), (10, 6));
    assert_eq!(
        group_keys(&s, &all).await,
        vec![
            k("dump_stack", "kernel", 3),
            k("main", APP, 2),
            k("Config::reload()", APP, 1),
            k("_raw_read_lock", "kernel", 1),
            k("fat_detach", "kernel", 1),
            k("load", APP, 1),
            k("nv_kern_open", "kernel", 1),
        ]
    );
    // Back to the defaults: the first grouping again.
    s.regroup(&skip).await.unwrap();
    assert_eq!(group_keys(&s, &all).await[0], k("parse_config", APP, 3));
}
store_on_both_engines!(crash_groups_and_regroup);

const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

fn aged(n: u32, class: &str, age_secs: i64) -> NewRecord {
    let mut r = record(n);
    r.classification = class.into();
    r.ts_reception = NOW - age_secs;
    r
}

async fn remaining(s: &Store) -> Vec<u32> {
    ids(s, Filter::default()).await
}

async fn purge_by_age_and_classification(db: Db) {
    let s = db.open().await;
    s.insert_batch(&[
        aged(1, "org.clearlinux/hello/world", 2 * DAY),
        aged(2, "org.clearlinux/hello/world", DAY / 2),
        aged(3, "org.clearlinux/crash/clr", 40 * DAY),
        aged(4, "org.clearlinux/crash/clr", 10 * DAY),
        aged(5, "org.clearlinux/heartbeat/ping", 400 * DAY),
        // Exactly at the limit: kept (older than, not as old as).
        aged(6, "org.clearlinux/kernel/bug", 35 * DAY),
        aged(7, "org.clearlinux/kernel/bug", 35 * DAY + 1),
    ])
    .await
    .unwrap();

    // Nothing configured: nothing deleted.
    assert!(s
        .purge(&Retention::default(), NOW)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(remaining(&s).await, vec![1, 2, 3, 4, 5, 6, 7]);

    // The general age alone.
    let general = Retention {
        days: 35,
        ..Retention::default()
    };
    let done = s.purge(&general, NOW).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].classification.clone(), done[0].deleted), (None, 3));
    assert_eq!(remaining(&s).await, vec![1, 2, 4, 6]);

    // Per classification: hello after a day; heartbeats kept forever (0) despite `days`.
    s.insert_batch(&[aged(5, "org.clearlinux/heartbeat/ping", 400 * DAY)])
        .await
        .unwrap();
    let mut per_class = Retention {
        days: 5,
        ..Retention::default()
    };
    per_class
        .classification
        .insert("org.clearlinux/hello/*".into(), 1);
    per_class
        .classification
        .insert("org.clearlinux/heartbeat/ping".into(), 0);
    let done = s.purge(&per_class, NOW).await.unwrap();
    let summary: Vec<(Option<String>, u64)> = done
        .iter()
        .map(|p| (p.classification.clone(), p.deleted))
        .collect();
    assert_eq!(
        summary,
        vec![(Some("org.clearlinux/hello/*".into()), 1), (None, 2)]
    );
    // 1 (hello, 2 days) by its class; 4 and 6 by the general 5 days; 2 (hello, half a day)
    // and 5 (heartbeat, kept forever) stay.
    assert_eq!(remaining(&s).await, vec![2, 5]);
    // A second run finds nothing more.
    let again = s.purge(&per_class, NOW).await.unwrap();
    assert!(again.iter().all(|p| p.deleted == 0), "{again:?}");
}
store_on_both_engines!(purge_by_age_and_classification);

async fn purge_deletes_more_than_one_chunk(db: Db) {
    let s = db.open().await;
    let old: Vec<NewRecord> = (0..12_000)
        .map(|n| aged(n, "org.clearlinux/hello/world", 10 * DAY))
        .collect();
    for chunk in old.chunks(2000) {
        s.insert_batch(chunk).await.unwrap();
    }
    s.insert_batch(&[aged(20_000, "org.clearlinux/hello/world", 0)])
        .await
        .unwrap();
    let done = s
        .purge(
            &Retention {
                days: 1,
                ..Retention::default()
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(done[0].deleted, 12_000);
    assert_eq!(remaining(&s).await, vec![20_000]);
}
store_on_both_engines!(purge_deletes_more_than_one_chunk);

async fn heartbeat_population_per_build(db: Db) {
    let s = db.open().await;
    let beat = |n: u32, machine: &str, build: &str, age: i64| {
        let mut r = aged(n, "org.clearlinux/heartbeat/ping", age);
        r.machine_id = machine.into();
        r.build = build.into();
        r
    };
    let mut recs = vec![
        // m1 beats every hour on 40000: one machine however many records.
        beat(1, "m1", "40000", 3600),
        beat(2, "m1", "40000", 7200),
        beat(3, "m2", "40000", 2 * DAY),
        beat(4, "m3", "40000", 5 * DAY),
        beat(5, "m4", "40000", 10 * DAY),
        beat(6, "m5", "40000", 20 * DAY),
        // m1 also ran 39990 a while ago.
        beat(7, "m1", "39990", 13 * DAY),
        beat(8, "m6", "39990", 30 * DAY),
    ];
    // Other classifications do not count.
    let mut hello = beat(9, "m9", "40000", 60);
    hello.classification = "org.clearlinux/hello/world".into();
    recs.push(hello);
    s.insert_batch(&recs).await.unwrap();
    let p = s.population(NOW).await.unwrap();
    let rows: Vec<(String, [i64; 5])> = p
        .into_iter()
        .map(|b| {
            (
                b.build,
                [
                    b.all,
                    b.last_1_days,
                    b.last_3_days,
                    b.last_7_days,
                    b.last_14_days,
                ],
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("40000".to_string(), [5, 1, 2, 3, 4]),
            ("39990".to_string(), [2, 0, 0, 0, 1]),
        ]
    );
}
store_on_both_engines!(heartbeat_population_per_build);

/// Creates the schema of the first version (1) and stores one crash record in it, as that
/// version did (no signature columns).
macro_rules! schema_1_with_a_crash {
    ($pool:expr, $ddl:expr, $payload:expr) => {{
        let pool = $pool;
        sqlx::raw_sql(schema::VERSIONS_TABLE)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql($ddl).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (1, 0)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO records (identity, form, external, machine_id, classification, \
             severity, build, kernel_version, arch, host_type, board_name, cpu_model, \
             bios_version, system_name, event_id, payload_version, record_version, ts_capture, \
             ts_reception, payload) VALUES ('id1', 'headers', false, 'm', \
             'org.clearlinux/crash/clr', 2, '1', 'k', 'x86_64', 'h', 'b', 'c', 'v', 's', 'e', \
             1, 4, 1, 1, $1)",
        )
        .bind($payload)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }};
}

async fn upgrade_from_schema_1_then_regroup(db: Db) {
    let payload = crash_payload(&[("abort", LIBC), ("parse_config", APP), ("main", APP)]);
    match &db {
        Db::Sqlite(d) => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(d.path().join("records.db"))
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            schema_1_with_a_crash!(pool, schema::SQLITE[0].1, &payload);
        }
        Db::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            schema_1_with_a_crash!(pool, schema::POSTGRES[0].1, &payload);
        }
    }
    let latest = match db {
        Db::Sqlite(_) => schema::latest(schema::SQLITE),
        Db::Postgres(_) => schema::latest(schema::POSTGRES),
    };
    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), latest);
    let before = s.list(&Filter::default(), 10).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].record.crash, None);
    assert_eq!(before[0].record.payload, payload);
    let done = s.regroup(&SkipList::default()).await.unwrap();
    assert_eq!((done.examined, done.changed), (1, 1));
    assert_eq!(
        s.get(before[0].id).await.unwrap().unwrap().record.crash,
        sig("parse_config", APP)
    );
}
store_on_both_engines!(upgrade_from_schema_1_then_regroup);
