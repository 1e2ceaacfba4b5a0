//! The PostgreSQL engine. Several servers may share one database: the UNIQUE identity column
//! with `ON CONFLICT DO NOTHING` keeps ingest idempotent across them, and an advisory lock
//! serialises their migrations.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::filter::Dialect;
use super::schema;
use super::StoreError;

/// Advisory lock key held while migrating ("telemsrv" in ASCII).
const MIGRATION_LOCK: i64 = 0x7465_6c65_6d73_7276;

/// Records in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(
        url: &str,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect(url)
            .await?;
        let store = PgStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        schema::migrate!(tx, schema::POSTGRES);
        tx.commit().await?;
        Ok(())
    }

    super::engine_methods!("BEGIN", Dialect::Postgres, sqlx::Postgres);
    super::groups::group_methods!(Dialect::Postgres);
    super::hardware::hardware_methods!();
    super::crash_summary::summary_methods!(sqlx::PgConnection, "BEGIN", Dialect::Postgres);
    super::day_summary::summary_methods!(Dialect::Postgres);
}
