//! The SQLite engine: one file, WAL, `synchronous = FULL` so a commit survives a power loss.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::filter::Dialect;
use super::schema;
use super::StoreError;

/// Records in an SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` and migrates it.
    pub async fn open(
        path: &Path,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Another process (a second instance, a backup) may hold the write lock briefly.
            .busy_timeout(timeout)
            .with_regexp();
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect_with(opts)
            .await?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        // IMMEDIATE takes the write lock up front: two instances starting together queue on
        // it instead of failing when a reader upgrades.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        schema::migrate!(tx, schema::SQLITE);
        tx.commit().await?;
        Ok(())
    }

    super::engine_methods!("BEGIN IMMEDIATE", Dialect::Sqlite, sqlx::Sqlite);
    super::groups::group_methods!(Dialect::Sqlite);
    super::hardware::hardware_methods!();
    super::crash_summary::summary_methods!(
        sqlx::SqliteConnection,
        "BEGIN IMMEDIATE",
        Dialect::Sqlite
    );
    super::day_summary::summary_methods!(Dialect::Sqlite);
}
