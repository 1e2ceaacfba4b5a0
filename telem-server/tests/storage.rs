//! The storage suite: every test runs against SQLite and against a private PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
    }
}

/// Where a store of one engine lives.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    fn config(&self) -> telem_server::Config {
        match self {
            Db::Sqlite(d) => common::sqlite_config(d.path()),
            Db::Postgres(url) => common::pg_config(url),
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.config()).await.unwrap()
    }
}

/// Runs `$body` (an async fn taking a `Db`) once per engine.
macro_rules! both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::Sqlite(tempfile::tempdir().unwrap())).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(pg) = super::common::pg::cluster() else {
                    return;
                };
                super::$name(super::Db::Postgres(pg.database())).await;
            }
        }
    };
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
both_engines!(migrations_are_versioned_and_rerun_safely);

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
both_engines!(insert_is_idempotent_by_identity);

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
both_engines!(text_is_stored_as_sent);

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
both_engines!(filters);

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
both_engines!(keyset_pagination);

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
both_engines!(counts);

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
both_engines!(two_instances_store_a_record_once);
