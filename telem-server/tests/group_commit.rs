//! Group commit: records that wait while a commit is in progress share the next transaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Db;
use sqlx::Connection as _;
use telem_server::ingest::Ingest;
use telem_server::metrics::Metrics;
use telem_server::store::{Filter, Inserted, NewRecord, Store};

fn record(n: u32) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: "m".into(),
        classification: "a/b/c".into(),
        severity: 1,
        build: "1".into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "h".into(),
        board_name: "N/A".into(),
        cpu_model: "N/A".into(),
        bios_version: "N/A".into(),
        system_name: "clear-linux-os".into(),
        event_id: "N/A".into(),
        payload_version: 1,
        record_version: 4,
        ts_capture: 1,
        ts_reception: 2,
        payload: format!("{n}"),
        crash: None,
    }
}

fn commits(m: &Metrics) -> u64 {
    let t = m.render();
    let line = t
        .lines()
        .find(|l| l.starts_with("telem_server_commits_total "))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::sqlite_config(dir.path());
    let store = Store::open(&cfg).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (ingest, writer) = Ingest::start(store.clone(), metrics.clone(), 256, 1024, 1);

    // Another connection holds the write lock: the writer's first commit waits on it.
    let mut blocker =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", cfg.storage.path.display()))
            .await
            .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();

    let first = {
        let i = ingest.clone();
        tokio::spawn(async move { i.submit(record(0)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest: Vec<_> = (1..=20)
        .map(|n| {
            let i = ingest.clone();
            tokio::spawn(async move { i.submit(record(n)).await })
        })
        .collect();
    // Generous: the twenty only need to be queued, which takes microseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!first.is_finished(), "no answer before the commit");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();

    first.await.unwrap().unwrap();
    for t in rest {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        commits(&metrics),
        2,
        "one commit for the first, one for the twenty"
    );
    assert_eq!(store.list(&Filter::default(), 100).await.unwrap().len(), 21);
    drop(ingest);
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_database_refuses_does_not_fail_its_batch() {
    // PostgreSQL refuses NUL in text; on SQLite the same record is stored. Either way its
    // neighbours in the batch are committed.
    let Some(pg) = common::pg::cluster() else {
        return;
    };
    let cfg = common::pg_config(&pg.database());
    let store = Store::open(&cfg).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let (ingest, writer) = Ingest::start(store.clone(), metrics.clone(), 256, 1024, 1);
    // Another transaction locks the table: the first record's commit waits, the next nine
    // (one of them bad) queue up and go into one batch.
    let mut blocker = sqlx::PgConnection::connect(cfg.storage.url.as_deref().unwrap())
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE records IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let first = {
        let i = ingest.clone();
        tokio::spawn(async move { i.submit(record(0)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bad = record(99);
    bad.payload = "nul \0 byte".into();
    let tasks: Vec<_> = (1..10)
        .map(|n| {
            let i = ingest.clone();
            let r = if n == 5 { bad.clone() } else { record(n) };
            tokio::spawn(async move { (n, i.submit(r).await) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut blocker)
        .await
        .unwrap();
    first.await.unwrap().unwrap();
    for t in tasks {
        let (n, r) = t.await.unwrap();
        assert_eq!(r.is_ok(), n != 5, "record {n}: {r:?}");
    }
    // The first alone, then the batch of nine failed and its eight good records were
    // committed one by one.
    assert_eq!(commits(&metrics), 9);
    assert_eq!(store.list(&Filter::default(), 100).await.unwrap().len(), 9);
    drop(ingest);
    writer.await.unwrap();
}

/// A batch longer than one multi-row INSERT: duplicates of stored rows and of earlier records
/// of the same batch (in another statement of it) are found, each record gets its own answer,
/// in order, and nothing is stored twice.
async fn a_long_batch_answers_each_record_in_order(db: Db) {
    let s = db.open().await;
    let stored = s.insert_batch(&[record(7), record(2001)]).await.unwrap();
    let mut batch: Vec<NewRecord> = (0..2500).map(record).collect();
    batch.push(record(3)); // a duplicate of the first statement's row, in the third statement
    batch.push(record(3));
    let out = s.insert_batch(&batch).await.unwrap();
    assert_eq!(out.len(), 2502);
    assert_eq!(out[7], Inserted::Duplicate(stored[0].id()));
    assert_eq!(out[2001], Inserted::Duplicate(stored[1].id()));
    assert_eq!(out[2500], Inserted::Duplicate(out[3].id()));
    assert_eq!(out[2501], Inserted::Duplicate(out[3].id()));
    for (n, o) in out.iter().enumerate().take(2500) {
        if n == 7 || n == 2001 {
            continue;
        }
        assert!(matches!(o, Inserted::New(_)), "record {n}: {o:?}");
        let row = s.get(o.id()).await.unwrap().unwrap();
        assert_eq!(row.record, record(n as u32), "record {n}");
    }
    assert_eq!(s.list(&Filter::default(), 5000).await.unwrap().len(), 2500);
}
store_on_both_engines!(a_long_batch_answers_each_record_in_order);
