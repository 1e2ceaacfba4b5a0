//! Storage: one interface ([`Store`]) over two engines, SQLite (embedded default) and PostgreSQL.
//!
//! Both engines run the same statements (SQLite reads `$N` parameters as PostgreSQL does); what
//! differs — DDL, wildcard and regex operators, the day of a timestamp — is in [`filter`] and
//! [`schema`].

pub mod crash_summary;
pub mod day_summary;
pub mod filter;
pub(crate) mod group_days;
pub mod groups;
pub mod hardware;
pub mod hardware_summary;
mod postgres;
pub mod schema;
mod sqlite;

use serde::Serialize;

pub use filter::{CountBy, Filter};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{Config, Engine, Retention};
pub use crate::crash::Signature;
use crate::crash::SkipList;

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
    /// The crash group, for a payload with a backtrace (see [`crate::crash`]).
    pub crash: Option<Signature>,
}

impl NewRecord {
    /// The row of a request that passed the collector protocol's checks, received at
    /// `ts_reception` (unix seconds) with its capture time already converted.
    pub fn from_submission(
        sub: telemetry::collector_protocol::Submission,
        form: telemetry::collector_protocol::Form,
        ts_capture: i64,
        ts_reception: i64,
        crash: Option<Signature>,
    ) -> NewRecord {
        let a = sub.accepted;
        NewRecord {
            identity: a.identity(sub.payload.as_bytes()).to_string(),
            form: form.as_str().to_string(),
            external: a.external,
            machine_id: a.machine_id,
            classification: a.classification,
            severity: a.severity,
            build: a.build,
            kernel_version: a.kernel_version,
            arch: a.arch,
            host_type: a.host_type,
            board_name: a.board_name,
            cpu_model: a.cpu_model,
            bios_version: a.bios_version,
            system_name: a.system_name,
            event_id: a.event_id,
            payload_version: a.payload_version,
            record_version: a.record_version,
            ts_capture,
            ts_reception,
            payload: sub.payload,
            crash,
        }
    }
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

/// One group of a count per UTC day (see [`Store::day_counts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub key: String,
    pub count: i64,
}

/// One crash group: records with one signature, over the filtered records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrashGroup {
    pub function: String,
    pub module: String,
    pub count: i64,
    /// Distinct machines.
    pub machines: i64,
    /// Distinct builds, sorted.
    pub builds: Vec<String>,
    /// Reception times of the oldest and newest record (unix seconds).
    pub first_seen: i64,
    pub last_seen: i64,
}

/// What a regroup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Regrouped {
    /// Records with a backtrace payload that were looked at.
    pub examined: u64,
    /// Records whose signature changed.
    pub changed: u64,
}

/// Records deleted by one retention rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// The classification pattern, or `None` for the general age.
    pub classification: Option<String>,
    pub days: u32,
    pub deleted: u64,
}

/// Heartbeat population of one build: distinct machines that sent a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Population {
    pub build: String,
    /// Over all stored heartbeats.
    pub all: i64,
    pub last_1_days: i64,
    pub last_3_days: i64,
    pub last_7_days: i64,
    pub last_14_days: i64,
}

/// Classification of the heartbeat record (`hprobe -H`).
pub const HEARTBEAT: &str = "org.clearlinux/heartbeat/ping";

/// Most crash groups one query answers.
pub const MAX_CRASH_GROUPS: i64 = 1000;

/// Records per regroup transaction and per purge DELETE: short transactions, so ingest on
/// SQLite (one writer) waits at most for one of them.
pub(crate) const CHUNK: i64 = 5000;

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

    /// Crash groups among the records matching `f`, largest first, at most `limit`.
    pub async fn crash_groups(
        &self,
        f: &Filter,
        limit: i64,
    ) -> Result<Vec<CrashGroup>, StoreError> {
        if let Some(since) = crash_summary::served(f) {
            return dispatch!(self, s => s.summary_crash_groups(since, limit).await);
        }
        dispatch!(self, s => s.crash_groups(f, limit).await)
    }

    /// Recomputes the signature of every record with a backtrace under `skip`.
    pub async fn regroup(&self, skip: &SkipList) -> Result<Regrouped, StoreError> {
        dispatch!(self, s => s.regroup(skip).await)
    }

    /// Deletes records older than `retention` allows at time `now` (unix seconds).
    pub async fn purge(&self, retention: &Retention, now: i64) -> Result<Vec<Purged>, StoreError> {
        dispatch!(self, s => s.purge(retention, now).await)
    }

    /// Counts of the filtered records per UTC day of reception and `by` (a chart of records per
    /// day by classification), days in order. `by` must not be [`CountBy::Day`].
    pub async fn day_counts(&self, by: CountBy, f: &Filter) -> Result<Vec<DayCount>, StoreError> {
        dispatch!(self, s => s.day_counts(by, f).await)
    }

    /// Heartbeat machines per build at time `now` (unix seconds), largest first.
    pub async fn population(&self, now: i64) -> Result<Vec<Population>, StoreError> {
        dispatch!(self, s => s.population(now).await)
    }

    /// Folds the summary tables' pending changes (PostgreSQL keeps them beside the summaries;
    /// every summary read folds first, so this only bounds how much a read has to fold: run it
    /// after loading rows with COPY).
    pub async fn fold_summaries(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.fold_summaries().await)
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
    event_id, payload_version, record_version, ts_capture, ts_reception, payload, crash_function, \
    crash_module";

/// Rows per multi-row INSERT (and identities per duplicate lookup): 22 parameters a row stays
/// under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 1000;

/// Pushes the fields of a [`NewRecord`] into a row of a multi-row INSERT, in [`COLUMNS`] order.
macro_rules! push_record {
    ($b:expr, $r:expr) => {
        $b.push_bind(&$r.identity)
            .push_bind(&$r.form)
            .push_bind($r.external)
            .push_bind(&$r.machine_id)
            .push_bind(&$r.classification)
            .push_bind($r.severity)
            .push_bind(&$r.build)
            .push_bind(&$r.kernel_version)
            .push_bind(&$r.arch)
            .push_bind(&$r.host_type)
            .push_bind(&$r.board_name)
            .push_bind(&$r.cpu_model)
            .push_bind(&$r.bios_version)
            .push_bind(&$r.system_name)
            .push_bind(&$r.event_id)
            .push_bind($r.payload_version)
            .push_bind($r.record_version)
            .push_bind($r.ts_capture)
            .push_bind($r.ts_reception)
            .push_bind(&$r.payload)
            .push_bind($r.crash.as_ref().map(|c| c.function.as_str()))
            .push_bind($r.crash.as_ref().map(|c| c.module.as_str()))
    };
}
pub(crate) use push_record;

/// The outcome of each of `records` (in order) from the ids of the rows the INSERTs created
/// (`new`, by identity) and of the rows that were stored already (`stored`, by identity): the
/// first record of an identity in `new` is [`Inserted::New`], any later one a duplicate of it.
pub(crate) fn outcomes(
    records: &[NewRecord],
    mut new: std::collections::HashMap<String, i64>,
    stored: &std::collections::HashMap<String, i64>,
) -> Result<Vec<Inserted>, StoreError> {
    let mut claimed = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let done = if let Some(id) = new.remove(&r.identity) {
            claimed.insert(r.identity.as_str(), id);
            Inserted::New(id)
        } else if let Some(id) = claimed.get(r.identity.as_str()) {
            Inserted::Duplicate(*id)
        } else if let Some(id) = stored.get(&r.identity) {
            Inserted::Duplicate(*id)
        } else {
            // Neither inserted nor found: the row vanished in between (a purge on another
            // instance); the batch fails and each record is retried on its own.
            return Err(StoreError::Db(sqlx::Error::RowNotFound));
        };
        out.push(done);
    }
    Ok(out)
}

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
                crash: match (
                    r.try_get::<Option<String>, _>("crash_function")?,
                    r.try_get::<Option<String>, _>("crash_module")?,
                ) {
                    (Some(function), Some(module)) => {
                        Some($crate::store::Signature { function, module })
                    }
                    _ => None,
                },
            },
        })
    }};
}
pub(crate) use record_from_row;

/// The engine methods, the same statements for both pools: `$begin` opens a write
/// transaction, `$dialect` picks the operators of the filters, `$db` is the sqlx database.
macro_rules! engine_methods {
    ($begin:expr, $dialect:expr, $db:ty) => {
        pub async fn insert_batch(
            &self,
            records: &[$crate::store::NewRecord],
        ) -> Result<Vec<$crate::store::Inserted>, $crate::store::StoreError> {
            let mut tx = self.pool.begin_with($begin).await?;
            let out = Self::insert_rows(&mut tx, records).await?;
            // Work that must commit with the rows (summary tables) goes here, one call each,
            // given `records` and `out` (the `Inserted::New` ones are the rows just added).
            let mut added = $crate::store::crash_summary::Added::default();
            for (r, done) in records.iter().zip(&out) {
                if matches!(done, $crate::store::Inserted::New(_)) {
                    added.record(r);
                }
            }
            if !added.is_empty() {
                Self::summary_add(&mut tx, &added).await?;
            }
            tx.commit().await?;
            Ok(out)
        }

        /// Inserts `records` with multi-row INSERTs that skip stored identities, then looks up
        /// the ids of the skipped ones: a few statements per batch, not two per record.
        async fn insert_rows<'c>(
            tx: &mut sqlx::Transaction<'c, $db>,
            records: &[$crate::store::NewRecord],
        ) -> Result<Vec<$crate::store::Inserted>, $crate::store::StoreError> {
            use sqlx::Row as _;
            use std::collections::HashMap;
            let mut new: HashMap<String, i64> = HashMap::with_capacity(records.len());
            // In identity order: two transactions inserting the same identities (two writers,
            // two instances) take their unique-index locks in one order, never in a cycle.
            let mut sorted: Vec<&$crate::store::NewRecord> = records.iter().collect();
            sorted.sort_by(|a, b| a.identity.cmp(&b.identity));
            for chunk in sorted.chunks($crate::store::ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(format!(
                    "INSERT INTO records ({}) ",
                    $crate::store::COLUMNS
                ));
                q.push_values(chunk, |mut b, r| {
                    $crate::store::push_record!(b, r);
                });
                q.push(" ON CONFLICT (identity) DO NOTHING RETURNING id, identity");
                for row in q.build().fetch_all(&mut **tx).await? {
                    new.insert(row.try_get("identity")?, row.try_get("id")?);
                }
            }
            let mut stored: HashMap<String, i64> = HashMap::new();
            if new.len() < records.len() {
                // Duplicates: of a stored row, or of an earlier record of this batch.
                let missing: Vec<&str> = records
                    .iter()
                    .map(|r| r.identity.as_str())
                    .filter(|i| !new.contains_key(*i))
                    .collect();
                for chunk in missing.chunks($crate::store::ROWS_PER_STATEMENT) {
                    let mut q =
                        sqlx::QueryBuilder::new("SELECT id, identity FROM records WHERE identity IN (");
                    let mut list = q.separated(", ");
                    for i in chunk {
                        list.push_bind(*i);
                    }
                    q.push(")");
                    for row in q.build().fetch_all(&mut **tx).await? {
                        stored.insert(row.try_get("identity")?, row.try_get("id")?);
                    }
                }
            }
            $crate::store::outcomes(records, new, &stored)
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
            if $crate::store::day_summary::servable(f) {
                return self.summary_counts(by, f).await;
            }
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

        pub async fn day_counts(
            &self,
            by: $crate::store::CountBy,
            f: &$crate::store::Filter,
        ) -> Result<Vec<$crate::store::DayCount>, $crate::store::StoreError> {
            use sqlx::Row as _;
            if $crate::store::day_summary::servable(f) {
                return self.summary_day_counts(by, f).await;
            }
            let w = f.where_clause($dialect, false)?;
            let day = $crate::store::CountBy::Day.key_sql($dialect);
            let key = by.key_sql($dialect);
            let sql = format!(
                "SELECT {day} AS d, {key} AS k, COUNT(*) AS n FROM records {} \
                 GROUP BY d, k ORDER BY d, n DESC, k LIMIT {}",
                w.sql,
                $crate::store::filter::MAX_GROUPS
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push($crate::store::DayCount {
                    day: row.try_get("d")?,
                    key: row.try_get("k")?,
                    count: row.try_get("n")?,
                });
            }
            Ok(out)
        }

        pub async fn crash_groups(
            &self,
            f: &$crate::store::Filter,
            limit: i64,
        ) -> Result<Vec<$crate::store::CrashGroup>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let w = f.where_clause($dialect, false)?;
            let cond = if w.sql.is_empty() {
                "WHERE crash_function IS NOT NULL".to_string()
            } else {
                format!("{} AND crash_function IS NOT NULL", w.sql)
            };
            let sql = format!(
                "SELECT crash_function AS f, crash_module AS m, COUNT(*) AS n, \
                 COUNT(DISTINCT machine_id) AS machines, MIN(ts_reception) AS first_seen, \
                 MAX(ts_reception) AS last_seen FROM records {cond} \
                 GROUP BY crash_function, crash_module ORDER BY n DESC, f, m LIMIT ${}",
                w.params.len() + 1
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params).bind(limit);
            let rows = q.fetch_all(&self.pool).await?;
            let mut groups = Vec::with_capacity(rows.len());
            let mut index = std::collections::HashMap::new();
            for row in &rows {
                let g = $crate::store::CrashGroup {
                    function: row.try_get("f")?,
                    module: row.try_get("m")?,
                    count: row.try_get("n")?,
                    machines: row.try_get("machines")?,
                    builds: Vec::new(),
                    first_seen: row.try_get("first_seen")?,
                    last_seen: row.try_get("last_seen")?,
                };
                index.insert((g.function.clone(), g.module.clone()), groups.len());
                groups.push(g);
            }
            // The builds of each group: one more pass over the same records (a list per group
            // is not portable SQL; the pairs are few).
            let sql = format!(
                "SELECT DISTINCT crash_function AS f, crash_module AS m, build FROM records {cond}"
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            for row in &q.fetch_all(&self.pool).await? {
                let key: (String, String) = (row.try_get("f")?, row.try_get("m")?);
                if let Some(g) = index.get(&key).and_then(|i| groups.get_mut(*i)) {
                    g.builds.push(row.try_get("build")?);
                }
            }
            for g in &mut groups {
                g.builds.sort();
            }
            // Ties in byte order whatever the database's collation.
            groups.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| a.function.cmp(&b.function))
                    .then_with(|| a.module.cmp(&b.module))
            });
            Ok(groups)
        }

        pub async fn regroup(
            &self,
            skip: &$crate::crash::SkipList,
        ) -> Result<$crate::store::Regrouped, $crate::store::StoreError> {
            use sqlx::Row as _;
            let mut out = $crate::store::Regrouped::default();
            let mut after = 0i64;
            loop {
                // Only the two payload shapes that carry frames; the crash module decides.
                let rows = sqlx::query(
                    "SELECT id, payload, crash_function, crash_module, machine_id, ts_reception \
                     FROM records \
                     WHERE id > $1 AND (substr(payload, 1, 9) = 'Process: ' \
                     OR substr(payload, 1, 13) = 'Crash Report:') ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind($crate::store::CHUNK)
                .fetch_all(&self.pool)
                .await?;
                let mut changes = Vec::new();
                // The crash summaries' days and pairs the moved records leave and join.
                let mut touched = $crate::store::crash_summary::Touched::default();
                for row in &rows {
                    let id: i64 = row.try_get("id")?;
                    let payload: String = row.try_get("payload")?;
                    let old = match (
                        row.try_get::<Option<String>, _>("crash_function")?,
                        row.try_get::<Option<String>, _>("crash_module")?,
                    ) {
                        (Some(function), Some(module)) => {
                            Some($crate::store::Signature { function, module })
                        }
                        _ => None,
                    };
                    after = id;
                    out.examined += 1;
                    let new = skip.signature(&payload);
                    if new != old {
                        let machine: String = row.try_get("machine_id")?;
                        let ts: i64 = row.try_get("ts_reception")?;
                        for s in old.iter().chain(new.iter()) {
                            touched.add(s.function.clone(), s.module.clone(), machine.clone(), ts);
                        }
                        changes.push((id, new));
                    }
                }
                if !changes.is_empty() {
                    let mut tx = self.pool.begin_with($begin).await?;
                    Self::summary_lock(&mut tx).await?;
                    for (id, sig) in &changes {
                        sqlx::query(
                            "UPDATE records SET crash_function = $1, crash_module = $2 WHERE id = $3",
                        )
                        .bind(sig.as_ref().map(|s| s.function.clone()))
                        .bind(sig.as_ref().map(|s| s.module.clone()))
                        .bind(*id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Self::summary_recompute(&mut tx, &touched).await?;
                    tx.commit().await?;
                    out.changed += changes.len() as u64;
                }
                if (rows.len() as i64) < $crate::store::CHUNK {
                    break;
                }
            }
            Ok(out)
        }

        pub async fn purge(
            &self,
            ret: &$crate::config::Retention,
            now: i64,
        ) -> Result<Vec<$crate::store::Purged>, $crate::store::StoreError> {
            use $crate::store::filter::{classification_match, Param};
            let cutoff = |days: u32| now.saturating_sub(i64::from(days) * 86_400);
            let mut out = Vec::new();
            for (pattern, days) in ret.classification.iter().filter(|(_, d)| **d > 0) {
                let (m, p) = classification_match($dialect, pattern);
                let cond = format!("{} AND ts_reception < $2", m.replace("$?", "$1"));
                let deleted = self
                    .delete_where(&cond, &[p, Param::Int(cutoff(*days))])
                    .await?;
                out.push($crate::store::Purged {
                    classification: Some(pattern.clone()),
                    days: *days,
                    deleted,
                });
            }
            if ret.days > 0 {
                // Records a pattern covers are kept by their pattern, not by the general age.
                let mut params = vec![Param::Int(cutoff(ret.days))];
                let mut cond = "ts_reception < $1".to_string();
                for pattern in ret.classification.keys() {
                    let (m, p) = classification_match($dialect, pattern);
                    params.push(p);
                    let n = format!("${}", params.len());
                    cond.push_str(&format!(" AND NOT ({})", m.replace("$?", &n)));
                }
                let deleted = self.delete_where(&cond, &params).await?;
                out.push($crate::store::Purged {
                    classification: None,
                    days: ret.days,
                    deleted,
                });
            }
            Ok(out)
        }

        /// Deletes the records matching `cond` in chunks (each its own transaction, which also
        /// recomputes the crash summaries the chunk touched).
        async fn delete_where(
            &self,
            cond: &str,
            params: &[$crate::store::filter::Param],
        ) -> Result<u64, $crate::store::StoreError> {
            use sqlx::Row as _;
            let sql = format!(
                "DELETE FROM records WHERE id IN (SELECT id FROM records WHERE {cond} LIMIT {}) \
                 RETURNING crash_function, crash_module, machine_id, ts_reception",
                $crate::store::CHUNK
            );
            let mut total = 0u64;
            loop {
                let mut tx = self.pool.begin_with($begin).await?;
                Self::summary_lock(&mut tx).await?;
                let q = $crate::store::bind_params!(sqlx::query(&sql), params);
                let rows = q.fetch_all(&mut *tx).await?;
                let mut touched = $crate::store::crash_summary::Touched::default();
                for r in &rows {
                    if let (Some(f), Some(m)) = (
                        r.try_get::<Option<String>, _>("crash_function")?,
                        r.try_get::<Option<String>, _>("crash_module")?,
                    ) {
                        touched.add(f, m, r.try_get("machine_id")?, r.try_get("ts_reception")?);
                    }
                }
                Self::summary_recompute(&mut tx, &touched).await?;
                tx.commit().await?;
                let n = rows.len() as u64;
                total += n;
                if n < $crate::store::CHUNK as u64 {
                    return Ok(total);
                }
            }
        }

        pub async fn population(
            &self,
            now: i64,
        ) -> Result<Vec<$crate::store::Population>, $crate::store::StoreError> {
            self.summary_population(now).await
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
