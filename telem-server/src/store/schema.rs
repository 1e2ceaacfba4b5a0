//! Versioned schema migrations, per engine. A migration is applied once, in order, inside the
//! transaction that records its version in `schema_migrations`; a database newer than this
//! program is refused rather than guessed at.

/// Version and DDL of each SQLite migration.
pub const SQLITE: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL UNIQUE,
        form TEXT NOT NULL,
        external BOOLEAN NOT NULL,
        machine_id TEXT NOT NULL,
        classification TEXT NOT NULL,
        severity INTEGER NOT NULL,
        build TEXT NOT NULL,
        kernel_version TEXT NOT NULL,
        arch TEXT NOT NULL,
        host_type TEXT NOT NULL,
        board_name TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        bios_version TEXT NOT NULL,
        system_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        payload_version INTEGER NOT NULL,
        record_version INTEGER NOT NULL,
        ts_capture INTEGER NOT NULL,
        ts_reception INTEGER NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX records_classification ON records (classification, id);
    CREATE INDEX records_build ON records (build, id);
    CREATE INDEX records_machine ON records (machine_id, id);
    CREATE INDEX records_platform ON records (host_type, id);
    CREATE INDEX records_reception ON records (ts_reception, id);
    CREATE INDEX records_event ON records (event_id);",
    ),
    (2, CRASH_COLUMNS),
    (3, SQLITE_ANNOTATIONS),
    (5, super::day_summary::SQLITE_V5),
];

/// Version 2: the crash signature of each record (NULL without one), indexed for the groups.
const CRASH_COLUMNS: &str = "ALTER TABLE records ADD COLUMN crash_function TEXT;
    ALTER TABLE records ADD COLUMN crash_module TEXT;
    CREATE INDEX records_crash ON records (crash_function, crash_module)
        WHERE crash_function IS NOT NULL;";

/// Version and DDL of each PostgreSQL migration.
pub const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE records (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        identity TEXT NOT NULL UNIQUE,
        form TEXT NOT NULL,
        external BOOLEAN NOT NULL,
        machine_id TEXT NOT NULL,
        classification TEXT NOT NULL,
        severity BIGINT NOT NULL,
        build TEXT NOT NULL,
        kernel_version TEXT NOT NULL,
        arch TEXT NOT NULL,
        host_type TEXT NOT NULL,
        board_name TEXT NOT NULL,
        cpu_model TEXT NOT NULL,
        bios_version TEXT NOT NULL,
        system_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        payload_version BIGINT NOT NULL,
        record_version BIGINT NOT NULL,
        ts_capture BIGINT NOT NULL,
        ts_reception BIGINT NOT NULL,
        payload TEXT NOT NULL
    );
    CREATE INDEX records_classification ON records (classification text_pattern_ops, id);
    CREATE INDEX records_build ON records (build, id);
    CREATE INDEX records_machine ON records (machine_id, id);
    CREATE INDEX records_platform ON records (host_type, id);
    CREATE INDEX records_reception ON records (ts_reception, id);
    CREATE INDEX records_event ON records (event_id);",
    ),
    (2, CRASH_COLUMNS),
    (3, POSTGRES_ANNOTATIONS),
    (5, super::day_summary::POSTGRES_V5),
];

/// Version 3: what people said about crash groups, and the skip-list edits every instance
/// sharing the database applies. A group is keyed by its signature, so a regroup that moves
/// records to another signature leaves the notes with the old one.
const SQLITE_ANNOTATIONS: &str = "CREATE TABLE crash_group_flags (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        hidden BOOLEAN NOT NULL,
        changed_at INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module)
    );
    CREATE TABLE crash_group_comments (
        id INTEGER PRIMARY KEY,
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX crash_group_comments_group ON crash_group_comments (crash_function, crash_module, id);
    CREATE TABLE skip_edits (
        entry TEXT PRIMARY KEY,
        added BOOLEAN NOT NULL,
        changed_at INTEGER NOT NULL
    );";

/// Version 3 on PostgreSQL (the same tables; only the identity column differs).
const POSTGRES_ANNOTATIONS: &str = "CREATE TABLE crash_group_flags (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        hidden BOOLEAN NOT NULL,
        changed_at BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module)
    );
    CREATE TABLE crash_group_comments (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        author TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX crash_group_comments_group ON crash_group_comments (crash_function, crash_module, id);
    CREATE TABLE skip_edits (
        entry TEXT PRIMARY KEY,
        added BOOLEAN NOT NULL,
        changed_at BIGINT NOT NULL
    );";

/// The table that records applied versions (same DDL on both engines).
pub const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// The newest version in `list`.
pub fn latest(list: &[(i64, &str)]) -> i64 {
    list.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// Runs the migrations of `$list` newer than the database's version inside `$tx`.
macro_rules! migrate {
    ($tx:ident, $list:expr) => {{
        use sqlx::Row as _;
        sqlx::raw_sql($crate::store::schema::VERSIONS_TABLE)
            .execute(&mut *$tx)
            .await?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&mut *$tx)
            .await?;
        let current: i64 = row.try_get("v")?;
        let known = $crate::store::schema::latest($list);
        if current > known {
            return Err($crate::store::StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, ddl) in $list.iter().filter(|(v, _)| *v > current) {
            tracing::info!(version, "applying schema migration");
            sqlx::raw_sql(ddl).execute(&mut *$tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind($crate::store::schema::unix_now())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use migrate;

/// Unix time now, seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
