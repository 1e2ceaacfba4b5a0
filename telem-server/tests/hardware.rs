//! The hardware view on both engines: rasprobe's error classes per class, build, week and
//! machine, thermal records per week; the summaries it reads equal counting every stored row
//! after ingest, purge, two instances ingesting at once and the migration's backfill; then
//! over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Db, Rng};

use common::{v4_headers, with, TestServer};
use telem_server::store::hardware::{
    day_string, week_start, ClassBuild, ClassWeek, Hardware, HwMachine, ThermalWeek, THERMAL,
};
use telem_server::store::{Count, Filter, NewRecord, Store};

const NOW: i64 = 1_800_000_000;
const WEEK: i64 = 7 * 86_400;

fn record(n: u32, class: &str, ts: i64, machine: &str, build: &str) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: machine.into(),
        classification: class.into(),
        severity: 2,
        build: build.into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "h".into(),
        board_name: "b".into(),
        cpu_model: "c".into(),
        bios_version: "1".into(),
        system_name: "clear-linux-os".into(),
        event_id: format!("{n:032x}"),
        payload_version: 1,
        record_version: 4,
        ts_capture: ts,
        ts_reception: ts,
        payload: "CPU 0 BANK 5\nSTATUS 9c00000000010091 MCGSTATUS 0\n".into(),
        crash: None,
    }
}

async fn hardware_view(db: Db) {
    let s = db.open().await;
    let this = NOW;
    let last = NOW - WEEK;
    let mut n = 0;
    let mut r = |class: &str, ts: i64, m: &str, b: &str| {
        n += 1;
        record(n, class, ts, m, b)
    };
    s.insert_batch(&[
        r("org.clearlinux/mce/corrected", this, "m1", "40000"),
        r("org.clearlinux/mce/corrected", this, "m1", "40000"),
        r("org.clearlinux/mce/corrected", last, "m1", "40010"),
        r("org.clearlinux/memory/corrected", this, "m2", "40000"),
        r("org.clearlinux/pcie/fatal", last, "m1", "40000"),
        r("org.clearlinux/mce/thermal", this, "m3", "40000"),
        r("org.clearlinux/mce/thermal", this, "m4", "40000"),
        r("org.clearlinux/mce/thermal", last, "m3", "40000"),
        // Not hardware errors, or too old for a 4-week view.
        r("org.clearlinux/hello/world", this, "m1", "40000"),
        r("org.clearlinux/MCE/corrected", this, "m1", "40000"),
        r("org.clearlinux/memoryx/corrected", this, "m1", "40000"),
        r(
            "org.clearlinux/mce/corrected",
            NOW - 10 * WEEK,
            "m1",
            "40000",
        ),
    ])
    .await
    .unwrap();
    let h = s.hardware(4, NOW).await.unwrap();
    assert_eq!(h.since, week_start(NOW) - 3 * WEEK);
    let classes: Vec<(&str, i64)> = h
        .classes
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(
        classes,
        [
            ("org.clearlinux/mce/corrected", 3),
            ("org.clearlinux/memory/corrected", 1),
            ("org.clearlinux/pcie/fatal", 1)
        ]
    );
    let builds: Vec<(&str, &str, i64)> = h
        .builds
        .iter()
        .map(|b| (b.build.as_str(), b.classification.as_str(), b.count))
        .collect();
    assert_eq!(
        builds,
        [
            ("40000", "org.clearlinux/mce/corrected", 2),
            ("40000", "org.clearlinux/memory/corrected", 1),
            ("40000", "org.clearlinux/pcie/fatal", 1),
            ("40010", "org.clearlinux/mce/corrected", 1),
        ]
    );
    let this_week = day_string(week_start(this));
    let last_week = day_string(week_start(last));
    let weekly: Vec<(&str, &str, i64)> = h
        .weekly
        .iter()
        .map(|w| (w.week.as_str(), w.classification.as_str(), w.count))
        .collect();
    assert_eq!(
        weekly,
        [
            (last_week.as_str(), "org.clearlinux/mce/corrected", 1),
            (last_week.as_str(), "org.clearlinux/pcie/fatal", 1),
            (this_week.as_str(), "org.clearlinux/mce/corrected", 2),
            (this_week.as_str(), "org.clearlinux/memory/corrected", 1),
        ]
    );
    assert_eq!(h.machines[0].machine_id, "m1");
    assert_eq!((h.machines[0].count, h.machines[0].classes), (4, 2));
    assert_eq!(h.machines[1].machine_id, "m2");
    assert_eq!(h.machines.len(), 2);
    let thermal: Vec<(&str, i64, i64)> = h
        .thermal_weekly
        .iter()
        .map(|t| (t.week.as_str(), t.count, t.machines))
        .collect();
    assert_eq!(
        thermal,
        [(last_week.as_str(), 1, 1), (this_week.as_str(), 2, 2)]
    );
    assert!(s.hardware(0, NOW).await.is_err());
}
store_on_both_engines!(hardware_view);

#[test]
fn hardware_over_http() {
    let d = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(d.path()));
    for (n, class) in [
        "org.clearlinux/mce/SRAR",
        "org.clearlinux/mce/thermal",
        "org.clearlinux/hello/world",
    ]
    .iter()
    .enumerate()
    {
        let h = with(
            &v4_headers(&format!("{n:032x}")),
            "Classification",
            Some(class),
        );
        assert_eq!(s.post("/v2/collector", &h, b"x").status, 201);
    }
    let h = s.get("/api/v1/hardware?weeks=2").json();
    assert_eq!(h["weeks"], 2);
    assert_eq!(h["classes"][0]["key"], "org.clearlinux/mce/SRAR");
    assert_eq!(h["classes"].as_array().unwrap().len(), 1);
    assert_eq!(h["thermal_weekly"][0]["count"], 1);
    assert_eq!(s.get("/api/v1/hardware?weeks=0").status, 400);
    assert_eq!(s.get("/api/v1/hardware?days=3").status, 400);
}

/// The classifications of the oracle tests: rasprobe's trees (thermal included), look-alikes
/// that are not, and everyday records.
const ORACLE_CLASSES: &[&str] = &[
    "org.clearlinux/mce/corrected",
    "org.clearlinux/mce/corrected",
    "org.clearlinux/mce/SRAR",
    "org.clearlinux/memory/corrected",
    "org.clearlinux/pcie/aer",
    THERMAL,
    THERMAL,
    "org.clearlinux/MCE/corrected",
    "org.clearlinux/memoryx/corrected",
    "org.clearlinux/heartbeat/ping",
];

/// `n` records with identities from `first`, received over the 12 weeks before [`NOW`], from
/// 1040 machines and 4 builds.
fn oracle_records(first: u64, n: u64, seed: u64) -> Vec<NewRecord> {
    let mut rng = Rng(seed);
    (first..first + n)
        .map(|i| {
            let class = ORACLE_CLASSES[rng.below(ORACLE_CLASSES.len() as u64) as usize];
            // Half from 40 machines that fail often, half from 1000 that rarely do: the view
            // ranks its machines both by their totals and, past the bound, all of them.
            let m = if rng.below(2) == 0 {
                rng.below(40)
            } else {
                40 + rng.below(1000)
            };
            let machine = format!("{m:032x}");
            let build = (40000 + 10 * rng.below(4)).to_string();
            let ts = NOW - rng.below(12 * WEEK as u64) as i64;
            record(i as u32, class, ts, &machine, &build)
        })
        .collect()
}

/// The view counted from `rows` the plain way, as the store promises to answer it.
fn oracle(rows: &[NewRecord], weeks: i64, now: i64) -> Hardware {
    let since = week_start(now) - (weeks - 1) * WEEK;
    let tree = |c: &str| {
        c.starts_with("org.clearlinux/mce/")
            || c.starts_with("org.clearlinux/memory/")
            || c.starts_with("org.clearlinux/pcie/")
    };
    let mut classes: BTreeMap<&str, i64> = BTreeMap::new();
    let mut builds: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut weekly: BTreeMap<(String, &str), i64> = BTreeMap::new();
    let mut machines: BTreeMap<&str, (i64, BTreeSet<&str>, i64)> = BTreeMap::new();
    let mut thermal: BTreeMap<String, (i64, BTreeSet<&str>)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.ts_reception >= since) {
        let c = r.classification.as_str();
        let week = day_string(week_start(r.ts_reception));
        if c == THERMAL {
            let t = thermal.entry(week).or_default();
            t.0 += 1;
            t.1.insert(&r.machine_id);
        } else if tree(c) {
            *classes.entry(c).or_default() += 1;
            *builds.entry((c, &r.build)).or_default() += 1;
            *weekly.entry((week, c)).or_default() += 1;
            let m = machines.entry(&r.machine_id).or_default();
            m.0 += 1;
            m.1.insert(c);
            m.2 = m.2.max(r.ts_reception);
        }
    }
    let mut classes: Vec<Count> = classes
        .into_iter()
        .map(|(k, n)| Count {
            key: k.into(),
            count: n,
        })
        .collect();
    classes.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
    let mut builds: Vec<ClassBuild> = builds
        .into_iter()
        .map(|((c, b), n)| ClassBuild {
            classification: c.into(),
            build: b.into(),
            count: n,
        })
        .collect();
    builds.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.build.cmp(&b.build))
            .then(a.classification.cmp(&b.classification))
    });
    let mut machines: Vec<HwMachine> = machines
        .into_iter()
        .map(|(m, (n, c, hi))| HwMachine {
            machine_id: m.into(),
            count: n,
            classes: c.len() as i64,
            last_seen: hi,
        })
        .collect();
    machines.sort_by(|a, b| b.count.cmp(&a.count).then(a.machine_id.cmp(&b.machine_id)));
    machines.truncate(50);
    Hardware {
        weeks,
        since,
        classes,
        builds,
        weekly: weekly
            .into_iter()
            .map(|((w, c), n)| ClassWeek {
                week: w,
                classification: c.into(),
                count: n,
            })
            .collect(),
        machines,
        thermal_weekly: thermal
            .into_iter()
            .map(|(w, (n, m))| ThermalWeek {
                week: w,
                count: n,
                machines: m.len() as i64,
            })
            .collect(),
    }
}

/// Every stored row, read back one by one (no aggregate).
async fn all_rows(s: &Store) -> Vec<NewRecord> {
    s.list(&Filter::default(), 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect()
}

/// The view equals the oracle over every stored row, for windows inside and beyond the data.
async fn assert_view_exact(s: &Store, what: &str) {
    let rows = all_rows(s).await;
    for weeks in [1, 2, 5, 52] {
        let got = s.hardware(weeks, NOW).await.unwrap();
        assert_eq!(got, oracle(&rows, weeks, NOW), "{what}: {weeks} weeks");
    }
    let full = s.hardware(52, NOW).await.unwrap();
    assert!(
        full.machines.len() == 50 && !full.thermal_weekly.is_empty(),
        "{what}: {full:?}"
    );
}

async fn hardware_summary_follows_ingest_and_purge(db: Db) {
    let s = db.open().await;
    let batch = oracle_records(0, 1200, 0x1234_5678);
    common::ingest_with_duplicates(&s, &batch, 100, 60).await;
    assert_view_exact(&s, "after ingest").await;

    let deleted = common::purge_with(&s, 60, "org.clearlinux/mce/*", 25, NOW).await;
    assert!(deleted > 200, "{deleted}");
    assert_view_exact(&s, "after a purge").await;

    // Ingest after the purge, including records of weeks the purge emptied.
    s.insert_batch(&oracle_records(10_000, 300, 0x9abc))
        .await
        .unwrap();
    assert_view_exact(&s, "after ingest following a purge").await;
    s.close().await;
}
store_on_both_engines!(hardware_summary_follows_ingest_and_purge);

async fn hardware_summary_with_two_instances_ingesting(db: Db) {
    let a = db.open().await;
    let b = db.open().await;
    // Overlapping batches (a client retrying on the other instance).
    let all = oracle_records(0, 1000, 0xfeed_beef);
    common::ingest_on_two_instances(&a, &b, &all, 600, 400).await;
    assert_eq!(all_rows(&a).await.len(), 1000);
    assert_view_exact(&a, "instance a after concurrent ingest").await;
    assert_view_exact(&b, "instance b after concurrent ingest").await;
    a.close().await;
    b.close().await;
}
store_on_both_engines!(hardware_summary_with_two_instances_ingesting);

/// Takes schema version 7 (the hardware summaries) out of `db` again, as if it had never run.
async fn undo_version_7(db: &Db) {
    match db {
        Db::Sqlite(_) => {
            let path = db.config().storage.path;
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::raw_sql(
                "DROP TRIGGER records_hardware_insert; DROP TRIGGER records_hardware_delete;
                 DROP TRIGGER records_hardware_update_old;
                 DROP TRIGGER records_hardware_update_new;
                 DROP TABLE hardware_weeks; DROP TABLE hardware_machines;
                 DROP TABLE hardware_machine_totals;
                 DELETE FROM schema_migrations WHERE version = 7;",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Db::Postgres(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::raw_sql(
                "DROP TRIGGER records_hardware_insert ON records;
                 DROP TRIGGER records_hardware_delete ON records;
                 DROP TRIGGER records_hardware_update ON records;
                 DROP FUNCTION records_hardware_change();
                 DROP TABLE hardware_weeks, hardware_machines, hardware_machine_totals,
                     hardware_changes;
                 DELETE FROM schema_migrations WHERE version = 7;",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

/// A database of an older version gains the summaries at the next start, filled from the
/// records already stored.
async fn hardware_summary_backfilled_by_the_migration(db: Db) {
    let s = db.open().await;
    s.insert_batch(&oracle_records(0, 800, 0x5eed))
        .await
        .unwrap();
    s.close().await;
    undo_version_7(&db).await;
    let s = db.open().await;
    assert_eq!(s.schema_version().await.unwrap(), 7);
    assert_view_exact(&s, "after the migration").await;
    s.close().await;
}
store_on_both_engines!(hardware_summary_backfilled_by_the_migration);
