//! The summary tables behind the overview, the counts and the population, on both engines:
//! what they answer equals what counting every stored row gives, after ingest, after a purge,
//! and after two store instances ingested at the same time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Db, Rng};
use telem_server::store::{CountBy, Filter, NewRecord, Population, Store, HEARTBEAT};

const DAY: i64 = 86_400;
/// "Now" for the test: noon, so windows and days are not on the same boundary.
const NOW: i64 = 1_700_000_000 / DAY * DAY + DAY / 2;

const CLASSES: &[&str] = &[
    HEARTBEAT,
    HEARTBEAT,
    "org.clearlinux/crash/clr",
    "org.clearlinux/crash/unknown",
    "org.clearlinux/hello/world",
    "org.clearlinux/mce/corrected",
];

/// `n` records with identities from `first`, received over the 20 days before [`NOW`].
fn records(first: u64, n: u64, seed: u64) -> Vec<NewRecord> {
    let mut rng = Rng(seed);
    (first..first + n)
        .map(|i| NewRecord {
            identity: format!("{i:064x}"),
            form: "headers".into(),
            external: rng.below(5) == 0,
            machine_id: format!("{:032x}", rng.below(12)),
            classification: CLASSES[rng.below(CLASSES.len() as u64) as usize].into(),
            severity: 1 + rng.below(4) as i64,
            build: (40000 + 10 * rng.below(4)).to_string(),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            host_type: ["QEMU|Standard PC", "Dell|XPS"][rng.below(2) as usize].into(),
            board_name: "blank".into(),
            cpu_model: "cpu".into(),
            bios_version: "1".into(),
            system_name: ["clear-linux-os", "other-os"][rng.below(2) as usize].into(),
            event_id: format!("{i:032x}"),
            payload_version: 1,
            record_version: 4,
            ts_capture: NOW,
            ts_reception: NOW - rng.below(20 * DAY as u64) as i64,
            payload: format!("payload {i}"),
            crash: None,
        })
        .collect()
}

fn key(r: &NewRecord, by: CountBy) -> String {
    match by {
        CountBy::Classification => r.classification.clone(),
        CountBy::Build => r.build.clone(),
        CountBy::Platform => r.host_type.clone(),
        CountBy::Severity => r.severity.to_string(),
        CountBy::Day => telem_server::store::hardware::day_string(r.ts_reception),
    }
}

fn matches(r: &NewRecord, f: &Filter) -> bool {
    let class = f
        .classification
        .as_ref()
        .is_none_or(|c| match c.strip_suffix('*') {
            Some(prefix) => r.classification.starts_with(prefix),
            None => r.classification == *c,
        });
    class
        && f.build.as_ref().is_none_or(|b| r.build == *b)
        && f.severity.is_none_or(|s| r.severity == s)
        && f.platform.as_ref().is_none_or(|p| r.host_type == *p)
        && f.system_name.as_ref().is_none_or(|s| r.system_name == *s)
        && f.external.is_none_or(|e| r.external == e)
        && f.since.is_none_or(|t| r.ts_reception >= t)
        && f.until.is_none_or(|t| r.ts_reception < t)
}

/// Every stored row, read back one by one (the plain way, no aggregate).
async fn all_rows(s: &Store) -> Vec<NewRecord> {
    s.list(&Filter::default(), 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect()
}

fn filters() -> Vec<Filter> {
    let since = NOW / DAY * DAY - 6 * DAY;
    vec![
        Filter::default(),
        Filter {
            since: Some(since),
            ..Filter::default()
        },
        Filter {
            classification: Some("org.clearlinux/crash/*".into()),
            build: Some("40010".into()),
            ..Filter::default()
        },
        Filter {
            severity: Some(2),
            platform: Some("Dell|XPS".into()),
            system_name: Some("other-os".into()),
            external: Some(false),
            since: Some(since - 3 * DAY),
            until: Some(since + 2 * DAY),
            ..Filter::default()
        },
    ]
}

/// The summaries' answers equal counts over every row, for every grouping and filter, and
/// the population equals distinct heartbeat machines counted from the rows.
async fn assert_summaries_exact(s: &Store, what: &str) {
    let rows = all_rows(s).await;
    for f in filters() {
        for by in [
            CountBy::Classification,
            CountBy::Build,
            CountBy::Platform,
            CountBy::Severity,
            CountBy::Day,
        ] {
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for r in rows.iter().filter(|r| matches(r, &f)) {
                *want.entry(key(r, by)).or_default() += 1;
            }
            let got: BTreeMap<String, i64> = s
                .counts(by, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.key, c.count))
                .collect();
            assert_eq!(got, want, "{what}: counts by {by:?} of {f:?}");
            // The same counts the other way: a filter the summary does not hold (after_id)
            // makes the store count the rows.
            let raw_filter = Filter {
                after_id: Some(0),
                ..f.clone()
            };
            let raw: BTreeMap<String, i64> = s
                .counts(by, &raw_filter)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.key, c.count))
                .collect();
            assert_eq!(raw, want, "{what}: raw counts by {by:?} of {f:?}");
        }
        let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
        for r in rows.iter().filter(|r| matches(r, &f)) {
            *want
                .entry((key(r, CountBy::Day), r.classification.clone()))
                .or_default() += 1;
        }
        let got: BTreeMap<(String, String), i64> = s
            .day_counts(CountBy::Classification, &f)
            .await
            .unwrap()
            .into_iter()
            .map(|c| ((c.day, c.key), c.count))
            .collect();
        assert_eq!(got, want, "{what}: day counts of {f:?}");
    }

    let mut machines: BTreeMap<String, [BTreeSet<String>; 5]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.classification == HEARTBEAT) {
        let sets = machines.entry(r.build.clone()).or_default();
        sets[0].insert(r.machine_id.clone());
        for (i, days) in [1, 3, 7, 14].iter().enumerate() {
            if r.ts_reception >= NOW - days * DAY {
                sets[i + 1].insert(r.machine_id.clone());
            }
        }
    }
    let want: BTreeMap<String, Population> = machines
        .into_iter()
        .map(|(build, s)| {
            let p = Population {
                build: build.clone(),
                all: s[0].len() as i64,
                last_1_days: s[1].len() as i64,
                last_3_days: s[2].len() as i64,
                last_7_days: s[3].len() as i64,
                last_14_days: s[4].len() as i64,
            };
            (build, p)
        })
        .collect();
    let got: BTreeMap<String, Population> = s
        .population(NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.build.clone(), p))
        .collect();
    assert_eq!(got, want, "{what}: population");
}

async fn summaries_follow_ingest_and_purge(db: Db) {
    let s = db.open().await;
    let batch = records(0, 600, 0x1234_5678);
    common::ingest_with_duplicates(&s, &batch, 50, 40).await;
    assert_summaries_exact(&s, "after ingest").await;

    let deleted = common::purge_with(&s, 12, "org.clearlinux/heartbeat/*", 5, NOW).await;
    assert!(deleted > 100, "{deleted}");
    assert_summaries_exact(&s, "after a purge").await;

    // Ingest after the purge, including records of days the purge emptied.
    s.insert_batch(&records(10_000, 200, 0x9abc)).await.unwrap();
    assert_summaries_exact(&s, "after ingest following a purge").await;
    s.close().await;
}
store_on_both_engines!(summaries_follow_ingest_and_purge);

async fn two_instances_ingesting_at_once(db: Db) {
    let a = db.open().await;
    let b = db.open().await;
    // Both instances get overlapping batches (a client retrying on the other instance).
    let all = records(0, 800, 0xfeed_beef);
    common::ingest_on_two_instances(&a, &b, &all, 500, 300).await;
    assert_eq!(all_rows(&a).await.len(), 800);
    assert_summaries_exact(&a, "instance a after concurrent ingest").await;
    assert_summaries_exact(&b, "instance b after concurrent ingest").await;
    a.close().await;
    b.close().await;
}
store_on_both_engines!(two_instances_ingesting_at_once);
