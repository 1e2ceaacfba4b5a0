//! The crash groups' fast answers (summary tables kept by every write path) against an oracle
//! computed the plain way, in Rust over every stored record: after ingest, after a purge, after
//! a regroup that moves records between groups, after a rebuild, after two instances ingest at
//! once and while one purges as the other ingests; on both engines. The crash groups since an
//! arbitrary second, the top crashers of 1, 7 and 30 days (counts, previous window, trend,
//! machines) and the group details are all checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Db, Rng};
use telem_server::config::Retention;
use telem_server::crash::SkipList;
use telem_server::store::{CountBy, CrashGroup, Filter, NewRecord, Signature, Store};

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const FUNCTIONS: &[&str] = &["alpha", "beta", "gamma", "delta"];

/// A small deterministic generator.
fn payload(function: &str) -> String {
    format!(
        "Process: /usr/bin/app\nPID: 100\nSignal: 6\n\nBacktrace (TID 100):\n\
         #0 raise() - [/usr/lib64/libc.so.6] - raise.c:26\n\
         #1 abort() - [/usr/lib64/libc.so.6] - abort.c:79\n\
         #2 {function}() - [/usr/bin/app] - /src/app.c:42\n\
         #3 main() - [/usr/bin/app] - /src/app.c:60\n"
    )
}

/// Record `n`: mostly crashes of a few groups, over a few machines, builds and 20 days (some
/// exactly on a day boundary), the rest without a backtrace.
fn record(n: u64, rng: &mut Rng) -> NewRecord {
    let crash = rng.below(4) != 0;
    let function = FUNCTIONS[rng.below(FUNCTIONS.len() as u64) as usize];
    let ts = if rng.below(10) == 0 {
        NOW - rng.below(20) as i64 * DAY
    } else {
        NOW - rng.below(20 * DAY as u64) as i64
    };
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: format!("machine-{}", rng.below(7)),
        classification: if crash {
            "org.clearlinux/crash/clr"
        } else {
            "org.clearlinux/hello/world"
        }
        .into(),
        severity: 3,
        build: format!("{}", 40000 + 10 * rng.below(3)),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "QEMU|Standard PC".into(),
        board_name: "blank|blank".into(),
        cpu_model: "cpu".into(),
        bios_version: "1".into(),
        system_name: format!("os-{}", rng.below(2)),
        event_id: format!("{n:032x}"),
        payload_version: 1,
        record_version: 4,
        ts_capture: ts,
        ts_reception: ts,
        payload: if crash {
            payload(function)
        } else {
            format!("hello {n}")
        },
        crash: crash.then(|| Signature {
            function: function.into(),
            module: "/usr/bin/app".into(),
        }),
    }
}

fn records(from: u64, to: u64, seed: u64) -> Vec<NewRecord> {
    let mut rng = Rng(seed);
    (from..to).map(|n| record(n, &mut rng)).collect()
}

/// A stored crash record: signature, machine, build, reception, system.
type Crash = ((String, String), String, String, i64, String);

/// Every stored crash record.
async fn crashes(s: &Store) -> Vec<Crash> {
    let all = s.list(&Filter::default(), 1_000_000).await.unwrap();
    all.into_iter()
        .filter_map(|r| {
            let r = r.record;
            let c = r.crash?;
            Some((
                (c.function, c.module),
                r.machine_id,
                r.build,
                r.ts_reception,
                r.system_name,
            ))
        })
        .collect()
}

/// The crash groups of the records received at or after `since`, the plain way.
fn oracle(all: &[Crash], since: i64) -> Vec<CrashGroup> {
    type Acc = (i64, BTreeSet<String>, BTreeSet<String>, i64, i64);
    let mut by: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for (key, machine, build, ts, _) in all.iter().filter(|c| c.3 >= since) {
        let e = by.entry(key.clone()).or_insert((
            0,
            BTreeSet::new(),
            BTreeSet::new(),
            i64::MAX,
            i64::MIN,
        ));
        e.0 += 1;
        e.1.insert(machine.clone());
        e.2.insert(build.clone());
        e.3 = e.3.min(*ts);
        e.4 = e.4.max(*ts);
    }
    let mut out: Vec<CrashGroup> = by
        .into_iter()
        .map(|((function, module), (count, m, b, lo, hi))| CrashGroup {
            function,
            module,
            count,
            machines: m.len() as i64,
            builds: b.into_iter().collect(),
            first_seen: lo,
            last_seen: hi,
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.function.cmp(&b.function))
            .then_with(|| a.module.cmp(&b.module))
    });
    out
}

/// The crash groups, the top crashers and the group details all agree with the oracle.
async fn agrees(s: &Store, when: &str) {
    let all = crashes(s).await;
    for since in [
        None,
        Some(NOW - 3 * DAY - 1234),
        Some(NOW - 7 * DAY),
        Some((NOW / DAY - 9) * DAY),
        Some(NOW - 11 * DAY + 1),
        Some(NOW - 40 * DAY),
    ] {
        let f = Filter {
            since,
            ..Filter::default()
        };
        let fast = s.crash_groups(&f, 1000).await.unwrap();
        let want = oracle(&all, since.unwrap_or(i64::MIN));
        assert_eq!(fast, want, "{when}: crash groups since {since:?}");
        // The raw rows' answer (a filter the summaries cannot serve) is the same.
        let raw = Filter {
            until: Some(i64::MAX),
            ..f
        };
        assert_eq!(s.crash_groups(&raw, 1000).await.unwrap(), want, "{when}");
    }
    let every = oracle(&all, i64::MIN);
    for days in [1, 7, 30] {
        top_crashers_agree(s, &all, &every, days, when).await;
    }
    for (days, now) in [(30, NOW), (5, NOW + 1234), (2, NOW - 16 * 3600)] {
        for e in &every {
            detail_agrees(s, &all, e, days, now, when).await;
        }
    }
}

/// The top crashers of a window ending with `NOW`'s bucket equal the plain count.
async fn top_crashers_agree(s: &Store, all: &[Crash], every: &[CrashGroup], days: i64, when: &str) {
    let top = s
        .top_crashers(&Filter::default(), days, NOW, true, 100)
        .await
        .unwrap();
    let bucket = if days == 1 { 3600 } else { DAY };
    // The window ends with the bucket `NOW` is in.
    assert_eq!(
        top.until,
        (NOW / bucket + 1) * bucket,
        "{when}: window {days}"
    );
    assert_eq!(top.since, top.until - 2 * days * DAY);
    let buckets = (2 * days * DAY / bucket) as usize;
    let mid = top.until - days * DAY;
    type Want = (Vec<i64>, BTreeSet<String>);
    let mut want: BTreeMap<(String, String), Want> = BTreeMap::new();
    for (key, machine, _, ts, _) in all.iter().filter(|c| c.3 >= top.since && c.3 < top.until) {
        let e = want
            .entry(key.clone())
            .or_insert((vec![0; buckets], BTreeSet::new()));
        e.0[((ts - top.since) / bucket) as usize] += 1;
        if *ts >= mid {
            e.1.insert(machine.clone());
        }
    }
    let (mut total, mut previous_total) = (0, 0);
    let mut groups = 0;
    for (key, (trend, machines)) in &want {
        let count: i64 = trend[buckets / 2..].iter().sum();
        let previous: i64 = trend[..buckets / 2].iter().sum();
        total += count;
        previous_total += previous;
        if count == 0 {
            assert!(top.groups.iter().all(|g| g.function != key.0), "{when}");
            continue;
        }
        groups += 1;
        let g = top
            .groups
            .iter()
            .find(|g| (&g.function, &g.module) == (&key.0, &key.1))
            .unwrap_or_else(|| panic!("{when}: window {days}: {key:?} missing"));
        let what = format!("{when}: window {days}: {}", key.0);
        assert_eq!(&g.trend, trend, "{what}");
        assert_eq!((g.count, g.previous), (count, previous), "{what}");
        assert_eq!(g.machines, machines.len() as i64, "{what}");
        let e = every.iter().find(|e| e.function == g.function).unwrap();
        assert_eq!((g.first_seen, g.last_seen), (e.first_seen, e.last_seen));
    }
    assert_eq!(top.groups.len(), groups, "{when}: window {days}");
    assert_eq!(
        (top.total, top.previous_total),
        (total, previous_total),
        "{when}: window {days}"
    );
}

/// A group's detail over the `days` days before `now` equals the plain count.
async fn detail_agrees(s: &Store, all: &[Crash], e: &CrashGroup, days: i64, now: i64, when: &str) {
    let d = s
        .group_detail(&e.function, &e.module, days, now)
        .await
        .unwrap();
    assert_eq!(d.count, e.count, "{when}: {}", e.function);
    assert_eq!(d.machines_total, e.machines, "{when}: {}", e.function);
    assert_eq!(d.first_seen, Some(e.first_seen));
    assert_eq!(d.last_seen, Some(e.last_seen));
    let machines: i64 = d.machines.iter().map(|m| m.count).sum();
    assert_eq!(machines, e.count);
    // Per day and per build: what the rows answer for the same filter.
    let f = Filter {
        crash_function: Some(e.function.clone()),
        crash_module: Some(e.module.clone()),
        ..Filter::default()
    };
    let recent = Filter {
        since: Some(now - days * DAY),
        ..f.clone()
    };
    let per_day = s.counts(CountBy::Day, &recent).await.unwrap();
    assert_eq!(
        d.per_day, per_day,
        "{when}: {} over {days} days",
        e.function
    );
    let in_days = all
        .iter()
        .filter(|c| c.0 .0 == e.function && c.3 >= now - days * DAY)
        .count() as i64;
    assert_eq!(d.per_day.iter().map(|c| c.count).sum::<i64>(), in_days);
    assert_eq!(
        d.per_build,
        s.counts(CountBy::Build, &f).await.unwrap(),
        "{when}"
    );
    let mut systems: BTreeMap<&str, i64> = BTreeMap::new();
    for c in all.iter().filter(|c| c.0 .0 == e.function) {
        *systems.entry(&c.4).or_insert(0) += 1;
    }
    for c in &d.per_system {
        assert_eq!(Some(&c.count), systems.get(c.key.as_str()), "{when}");
    }
    assert_eq!(d.per_system.len(), systems.len());
}

async fn summaries_follow_ingest_purge_and_regroup(db: Db) {
    let s = db.open().await;
    let batch = records(0, 400, 0x1234_5678);
    common::ingest_with_duplicates(&s, &batch, 37, 50).await;
    agrees(&s, "after ingest").await;

    // Purge: everything older than 12 days.
    let ret = Retention {
        days: 12,
        ..Retention::default()
    };
    let purged = s.purge(&ret, NOW).await.unwrap();
    assert!(purged.iter().map(|p| p.deleted).sum::<u64>() > 0);
    agrees(&s, "after purge").await;

    // Regroup: skipping `alpha` moves its records to `main`; then back.
    let skip = SkipList::new(["raise", "abort", "alpha"]);
    assert!(s.regroup(&skip).await.unwrap().changed > 0);
    assert!(s
        .crash_groups(&Filter::default(), 1000)
        .await
        .unwrap()
        .iter()
        .any(|g| g.function == "main"));
    agrees(&s, "after regroup").await;
    let skip = SkipList::new(["raise", "abort"]);
    assert!(s.regroup(&skip).await.unwrap().changed > 0);
    agrees(&s, "after regroup back").await;

    // A full rebuild (what the query bench runs after seeding with COPY) changes nothing.
    s.rebuild_crash_summaries().await.unwrap();
    agrees(&s, "after rebuild").await;
}
store_on_both_engines!(summaries_follow_ingest_purge_and_regroup);

async fn two_instances_ingesting_at_once_keep_summaries_exact(db: Db) {
    let a = db.open().await;
    let b = db.open().await;
    // Both instances store interleaved batches of the same groups, machines and days, and
    // overlapping identities (each record stored once, whichever instance wins).
    let left = records(0, 600, 0xabcd_0001);
    let right = records(300, 900, 0xabcd_0001 ^ 0x55);
    let ta = tokio::spawn(async move {
        for chunk in left.chunks(23) {
            a.insert_batch(chunk).await.unwrap();
        }
        a
    });
    let tb = tokio::spawn(async move {
        for chunk in right.chunks(29) {
            b.insert_batch(chunk).await.unwrap();
        }
        b
    });
    let a = ta.await.unwrap();
    let b = tb.await.unwrap();
    agrees(&a, "after concurrent ingest").await;
    // A purge on one instance while the other ingests.
    let ret = Retention {
        days: 10,
        ..Retention::default()
    };
    let more = records(900, 1200, 0x77);
    let (p, i) = tokio::join!(a.purge(&ret, NOW), async {
        for chunk in more.chunks(31) {
            b.insert_batch(chunk).await.unwrap();
        }
    });
    p.unwrap();
    let () = i;
    agrees(&b, "after a purge during ingest").await;
}
store_on_both_engines!(two_instances_ingesting_at_once_keep_summaries_exact);
