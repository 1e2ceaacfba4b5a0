//! On PostgreSQL with `ingest.writers = 2` a transaction that waits on the database does not
//! hold up the records that arrive behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use sqlx::Connection as _;

#[test]
fn a_commit_waiting_on_a_row_lock_does_not_hold_up_the_next_record() {
    let Some(pg) = common::pg::cluster() else {
        return;
    };
    let url = pg.database();
    let mut cfg = common::pg_config(&url);
    cfg.ingest.writers = 2;
    let server = TestServer::start(cfg);
    let stuck = common::v4_headers("00000000000000000000000000000001");
    let first = server.post("/v2/collector", &stuck, b"stuck");
    assert_eq!(first.status, 201, "{}", first.body);
    let id = first.json()["id"].as_i64().unwrap();

    // Another transaction deletes that row and stays open: a second copy of the record waits
    // in its INSERT for that transaction to end (it may yet roll back).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut blocker = rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query("DELETE FROM records WHERE id = $1")
            .bind(id)
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let again = {
        let u = server.url("/v2/collector");
        let h = stuck.clone();
        std::thread::spawn(move || common::post(&u, &h, b"stuck"))
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!again.is_finished(), "no answer while the row is locked");

    // A record of its own arrives meanwhile: another writer commits it.
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let u = server.url("/v2/collector");
        let h = common::v4_headers("00000000000000000000000000000002");
        std::thread::spawn(move || {
            let _ = tx.send(common::post(&u, &h, b"free"));
        });
    }
    // Generous: it needs one commit of one row.
    let free = rx.recv_timeout(Duration::from_secs(20));

    rt.block_on(async {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut blocker)
            .await
            .unwrap();
    });
    let free = free.expect("the next record waited for the locked one");
    assert_eq!(free.status, 201, "{}", free.body);
    // The delete rolled back: the second copy is a duplicate of the first.
    let again = again.join().unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"].as_i64(), Some(id));
    server.stop();
}
