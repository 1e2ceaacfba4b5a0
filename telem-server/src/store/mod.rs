//! Storage: one interface ([`Store`]) over two engines, SQLite (embedded default) and PostgreSQL.
//!
//! Both engines run the same statements (SQLite reads `$N` parameters as PostgreSQL does); what
//! differs — DDL, wildcard and regex operators, the day of a timestamp — is in [`filter`] and
//! [`schema`].

pub mod filter;
mod postgres;
pub mod schema;
mod sqlite;

use serde::Serialize;

pub use filter::{CountBy, Filter};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{Config, Engine};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(
        "schema version {found} is newer than this program knows ({known}); upgrade telem-server"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("{0}")]
    BadFilter(String),
}

impl StoreError {
    /// Whether the database refused the data itself (SQLSTATE class 22, "data exception", e.g.
    /// PostgreSQL's refusal of a NUL character in text): retrying the same record cannot help.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|c| c.len() == 5 && c.starts_with("22")),
            _ => false,
        }
    }
}

/// A validated record, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The record identity, 64 hex digits: unique in the table.
    pub identity: String,
    /// `headers` or `json`: which request form carried it.
    pub form: String,
    pub external: bool,
    pub machine_id: String,
    pub classification: String,
    pub severity: i64,
    pub build: String,
    pub kernel_version: String,
    pub arch: String,
    pub host_type: String,
    pub board_name: String,
    pub cpu_model: String,
    pub bios_version: String,
    pub system_name: String,
    pub event_id: String,
    pub payload_version: i64,
    pub record_version: i64,
    /// Creation time on the client, unix seconds.
    pub ts_capture: i64,
    /// Reception time on the server, unix seconds.
    pub ts_reception: i64,
    pub payload: String,
}

/// A stored record: its row id and what was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub id: i64,
    pub record: NewRecord,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new row with this id.
    New(i64),
    /// The identity was already stored, in this row; nothing was written.
    Duplicate(i64),
}

impl Inserted {
    pub fn id(self) -> i64 {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// One group of a count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

/// The store, whichever engine holds it.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Connects to the configured engine and brings its schema up to date.
    pub async fn open(cfg: &Config) -> Result<Store, StoreError> {
        let s = &cfg.storage;
        let store = match s.engine {
            Engine::Sqlite => Store::Sqlite(
                SqliteStore::open(&s.path, s.max_connections, cfg.connect_timeout()).await?,
            ),
            Engine::Postgres => {
                let url = s.url.as_deref().unwrap_or_default();
                Store::Postgres(PgStore::open(url, s.max_connections, cfg.connect_timeout()).await?)
            }
        };
        Ok(store)
    }

    /// Stores `records` in one transaction: all or none. Each outcome is at the index of its
    /// record; a record whose identity is stored already (or earlier in `records`) is a
    /// [`Inserted::Duplicate`].
    pub async fn insert_batch(&self, records: &[NewRecord]) -> Result<Vec<Inserted>, StoreError> {
        dispatch!(self, s => s.insert_batch(records).await)
    }

    /// One record by id.
    pub async fn get(&self, id: i64) -> Result<Option<StoredRecord>, StoreError> {
        dispatch!(self, s => s.get(id).await)
    }

    /// Records matching `f`, newest first, at most `limit`.
    pub async fn list(&self, f: &Filter, limit: i64) -> Result<Vec<StoredRecord>, StoreError> {
        dispatch!(self, s => s.list(f, limit).await)
    }

    /// Numbers of records matching `f`, grouped.
    pub async fn counts(&self, by: CountBy, f: &Filter) -> Result<Vec<Count>, StoreError> {
        dispatch!(self, s => s.counts(by, f).await)
    }

    /// The schema version in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.schema_version().await)
    }

    /// A round trip to the database (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// The columns of `records` after `id`, in the order of every INSERT and SELECT.
pub(crate) const COLUMNS: &str = "identity, form, external, machine_id, classification, severity, \
    build, kernel_version, arch, host_type, board_name, cpu_model, bios_version, system_name, \
    event_id, payload_version, record_version, ts_capture, ts_reception, payload";

pub(crate) const INSERT: &str = "INSERT INTO records (identity, form, external, machine_id, \
    classification, severity, build, kernel_version, arch, host_type, board_name, cpu_model, \
    bios_version, system_name, event_id, payload_version, record_version, ts_capture, \
    ts_reception, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
    $15, $16, $17, $18, $19, $20) ON CONFLICT (identity) DO NOTHING RETURNING id";

/// Binds the fields of a [`NewRecord`] in [`INSERT`] order.
macro_rules! bind_record {
    ($q:expr, $r:expr) => {
        $q.bind(&$r.identity)
            .bind(&$r.form)
            .bind($r.external)
            .bind(&$r.machine_id)
            .bind(&$r.classification)
            .bind($r.severity)
            .bind(&$r.build)
            .bind(&$r.kernel_version)
            .bind(&$r.arch)
            .bind(&$r.host_type)
            .bind(&$r.board_name)
            .bind(&$r.cpu_model)
            .bind(&$r.bios_version)
            .bind(&$r.system_name)
            .bind(&$r.event_id)
            .bind($r.payload_version)
            .bind($r.record_version)
            .bind($r.ts_capture)
            .bind($r.ts_reception)
            .bind(&$r.payload)
    };
}
pub(crate) use bind_record;

/// Binds filter parameters in order.
macro_rules! bind_params {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                $crate::store::filter::Param::Text(s) => q.bind(s.clone()),
                $crate::store::filter::Param::Int(i) => q.bind(*i),
                $crate::store::filter::Param::Bool(b) => q.bind(*b),
            };
        }
        q
    }};
}
pub(crate) use bind_params;

/// Reads a [`StoredRecord`] from a row selected as `id, COLUMNS`.
macro_rules! record_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let r = $row;
        Ok::<_, sqlx::Error>($crate::store::StoredRecord {
            id: r.try_get("id")?,
            record: $crate::store::NewRecord {
                identity: r.try_get("identity")?,
                form: r.try_get("form")?,
                external: r.try_get("external")?,
                machine_id: r.try_get("machine_id")?,
                classification: r.try_get("classification")?,
                severity: r.try_get("severity")?,
                build: r.try_get("build")?,
                kernel_version: r.try_get("kernel_version")?,
                arch: r.try_get("arch")?,
                host_type: r.try_get("host_type")?,
                board_name: r.try_get("board_name")?,
                cpu_model: r.try_get("cpu_model")?,
                bios_version: r.try_get("bios_version")?,
                system_name: r.try_get("system_name")?,
                event_id: r.try_get("event_id")?,
                payload_version: r.try_get("payload_version")?,
                record_version: r.try_get("record_version")?,
                ts_capture: r.try_get("ts_capture")?,
                ts_reception: r.try_get("ts_reception")?,
                payload: r.try_get("payload")?,
            },
        })
    }};
}
pub(crate) use record_from_row;

/// The engine methods, the same statements for both pools: `$begin` opens a write
/// transaction, `$dialect` picks the operators of the filters.
macro_rules! engine_methods {
    ($begin:expr, $dialect:expr) => {
        pub async fn insert_batch(
            &self,
            records: &[$crate::store::NewRecord],
        ) -> Result<Vec<$crate::store::Inserted>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let mut tx = self.pool.begin_with($begin).await?;
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                let q = sqlx::query($crate::store::INSERT);
                let row = $crate::store::bind_record!(q, r)
                    .fetch_optional(&mut *tx)
                    .await?;
                let done = match row {
                    Some(row) => $crate::store::Inserted::New(row.try_get("id")?),
                    None => {
                        let row = sqlx::query("SELECT id FROM records WHERE identity = $1")
                            .bind(&r.identity)
                            .fetch_one(&mut *tx)
                            .await?;
                        $crate::store::Inserted::Duplicate(row.try_get("id")?)
                    }
                };
                out.push(done);
            }
            tx.commit().await?;
            Ok(out)
        }

        pub async fn get(
            &self,
            id: i64,
        ) -> Result<Option<$crate::store::StoredRecord>, $crate::store::StoreError> {
            let sql = format!(
                "SELECT id, {} FROM records WHERE id = $1",
                $crate::store::COLUMNS
            );
            let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
            match row {
                Some(row) => Ok(Some($crate::store::record_from_row!(&row)?)),
                None => Ok(None),
            }
        }

        pub async fn list(
            &self,
            f: &$crate::store::Filter,
            limit: i64,
        ) -> Result<Vec<$crate::store::StoredRecord>, $crate::store::StoreError> {
            let w = f.where_clause($dialect, true)?;
            let sql = format!(
                "SELECT id, {} FROM records {} ORDER BY id DESC LIMIT ${}",
                $crate::store::COLUMNS,
                w.sql,
                w.params.len() + 1
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params).bind(limit);
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push($crate::store::record_from_row!(row)?);
            }
            Ok(out)
        }

        pub async fn counts(
            &self,
            by: $crate::store::CountBy,
            f: &$crate::store::Filter,
        ) -> Result<Vec<$crate::store::Count>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let w = f.where_clause($dialect, false)?;
            let key = by.key_sql($dialect);
            let order = by.order_sql();
            let sql = format!(
                "SELECT {key} AS k, COUNT(*) AS n FROM records {} GROUP BY k ORDER BY {order} LIMIT {}",
                w.sql,
                $crate::store::filter::MAX_GROUPS
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push($crate::store::Count {
                    key: row.try_get("k")?,
                    count: row.try_get("n")?,
                });
            }
            Ok(out)
        }

        pub async fn schema_version(&self) -> Result<i64, $crate::store::StoreError> {
            use sqlx::Row as _;
            let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
                .fetch_one(&self.pool)
                .await?;
            Ok(row.try_get("v")?)
        }

        pub async fn ping(&self) -> Result<(), $crate::store::StoreError> {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }

        pub async fn close(&self) {
            self.pool.close().await;
        }
    };
}
pub(crate) use engine_methods;
