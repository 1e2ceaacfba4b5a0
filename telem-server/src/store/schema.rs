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
    (4, SQLITE_CRASH_SUMMARIES),
    (5, super::day_summary::SQLITE_V5),
    (6, super::group_days::SQLITE_V6),
    (7, super::hardware_summary::SQLITE_V7),
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
    (4, POSTGRES_CRASH_SUMMARIES),
    (5, super::day_summary::POSTGRES_V5),
    (6, super::group_days::POSTGRES_V6),
    (7, super::hardware_summary::POSTGRES_V7),
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

/// Version 4: the crash summaries (see `store::crash_summary`), filled from the records already
/// stored, and covering indexes for the crash queries the summaries cannot answer: by group
/// (the group page: its newest records by id, its systems, builds and days), by reception time
/// (the top crashers' trend) and by build.
const SQLITE_CRASH_SUMMARIES: &str = "CREATE TABLE crash_days (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        day INTEGER NOT NULL,
        build TEXT NOT NULL,
        n INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module, day, build)
    );
    CREATE INDEX crash_days_day ON crash_days (day);
    CREATE TABLE crash_machines (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module, machine_id)
    );
    CREATE INDEX crash_machines_last ON crash_machines (last_seen, crash_function, crash_module);
    CREATE TABLE crash_builds (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        build TEXT NOT NULL,
        n INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module, build)
    );
    CREATE TABLE crash_group_machines (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        machines INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module)
    );
    DROP INDEX records_crash;
    CREATE INDEX records_crash ON records (crash_function, crash_module, id, ts_reception,
        machine_id, build, system_name) WHERE crash_function IS NOT NULL;
    CREATE INDEX records_crash_time ON records (ts_reception, crash_function, crash_module,
        machine_id) WHERE crash_function IS NOT NULL;
    CREATE INDEX records_crash_build ON records (build, crash_function, crash_module, machine_id,
        ts_reception, classification) WHERE crash_function IS NOT NULL;
    INSERT INTO crash_days SELECT crash_function, crash_module, ts_reception / 86400, build,
        COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records
        WHERE crash_function IS NOT NULL
        GROUP BY crash_function, crash_module, ts_reception / 86400, build;
    INSERT INTO crash_machines SELECT crash_function, crash_module, machine_id, COUNT(*),
        MIN(ts_reception), MAX(ts_reception) FROM records WHERE crash_function IS NOT NULL
        GROUP BY crash_function, crash_module, machine_id;
    INSERT INTO crash_builds SELECT crash_function, crash_module, build, SUM(n), MIN(first_seen),
        MAX(last_seen) FROM crash_days GROUP BY crash_function, crash_module, build;
    INSERT INTO crash_group_machines SELECT crash_function, crash_module, COUNT(*)
        FROM crash_machines GROUP BY crash_function, crash_module;";

/// Version 4 on PostgreSQL (the same tables and indexes, BIGINT for the numbers).
const POSTGRES_CRASH_SUMMARIES: &str = "CREATE TABLE crash_days (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        day BIGINT NOT NULL,
        build TEXT NOT NULL,
        n BIGINT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module, day, build)
    );
    CREATE INDEX crash_days_day ON crash_days (day);
    CREATE TABLE crash_machines (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        n BIGINT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module, machine_id)
    );
    CREATE INDEX crash_machines_last ON crash_machines (last_seen, crash_function, crash_module);
    CREATE TABLE crash_builds (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        build TEXT NOT NULL,
        n BIGINT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module, build)
    );
    CREATE TABLE crash_group_machines (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        machines BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module)
    );
    DROP INDEX records_crash;
    CREATE INDEX records_crash ON records (crash_function, crash_module, id, ts_reception,
        machine_id, build, system_name) WHERE crash_function IS NOT NULL;
    CREATE INDEX records_crash_time ON records (ts_reception, crash_function, crash_module,
        machine_id) WHERE crash_function IS NOT NULL;
    CREATE INDEX records_crash_build ON records (build, crash_function, crash_module, machine_id,
        ts_reception, classification) WHERE crash_function IS NOT NULL;
    INSERT INTO crash_days SELECT crash_function, crash_module, ts_reception / 86400, build,
        COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records
        WHERE crash_function IS NOT NULL
        GROUP BY crash_function, crash_module, ts_reception / 86400, build;
    INSERT INTO crash_machines SELECT crash_function, crash_module, machine_id, COUNT(*),
        MIN(ts_reception), MAX(ts_reception) FROM records WHERE crash_function IS NOT NULL
        GROUP BY crash_function, crash_module, machine_id;
    INSERT INTO crash_builds SELECT crash_function, crash_module, build, SUM(n), MIN(first_seen),
        MAX(last_seen) FROM crash_days GROUP BY crash_function, crash_module, build;
    INSERT INTO crash_group_machines SELECT crash_function, crash_module, COUNT(*)
        FROM crash_machines GROUP BY crash_function, crash_module;";

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
