//! Summary tables behind the overview, the counts and the population: records per UTC day ×
//! classification × severity × build × platform × system × external (`record_days`), and
//! heartbeat machines per build with their last heartbeat (`heartbeat_machines`).
//!
//! Database triggers keep them exact on every write path (ingest on any instance, COPY, purge,
//! any UPDATE of a summarised column), in the writing transaction:
//! - SQLite (one writer at a time) updates the summary rows in place;
//! - PostgreSQL appends a ±1 row to a change table instead (`record_day_changes`,
//!   `heartbeat_changes`): in-place counters would make concurrent ingest batches lock the same
//!   rows in different orders and deadlock. A reader first folds the changes into the summary
//!   (one statement moving them, keys in a fixed order), then reads the summary alone.
//!
//! Heartbeat rows keep their number of stored records `n` beside `last_seen`: purge deletes a
//! classification's records oldest first, so the newest heartbeat of a (build, machine) pair is
//! the last one to go, and the pair leaves when `n` reaches 0.
//!
//! Filters the summary holds are served from it: classification (exact or `*`), severity,
//! build, platform, system, external, and `since`/`until` on whole UTC days. Any other filter
//! (machine id, payload text or regex, crash signature, `after_id`, a time not on a day
//! boundary) counts the records themselves.

use super::filter::{Dialect, Filter, Where};
use super::StoreError;

/// The clause selecting the summary rows of the records `f` selects ([`servable`] filters
/// only): `f`'s own conditions on the columns `record_days` shares with `records`, and its
/// whole-day `since`/`until` as a range of the key's leading `day`.
pub(crate) fn summary_where(f: &Filter, d: Dialect) -> Result<Where, StoreError> {
    let rest = Filter {
        since: None,
        until: None,
        ..f.clone()
    };
    let mut w = rest.where_clause(d, false)?;
    let mut days = Vec::new();
    if let Some(t) = f.since {
        days.push(format!("day >= {}", t.div_euclid(DAY)));
    }
    if let Some(t) = f.until {
        days.push(format!("day < {}", t.div_euclid(DAY)));
    }
    if !days.is_empty() {
        let joined = days.join(" AND ");
        w.sql = if w.sql.is_empty() {
            format!("WHERE {joined}")
        } else {
            format!("{} AND {joined}", w.sql)
        };
    }
    Ok(w)
}

/// `YYYY-MM-DD` of a summary day.
pub fn day_label(day: i64) -> String {
    super::hardware::day_string(day.saturating_mul(DAY))
}

/// The heartbeat classification as a literal, for the DDL (equal to [`HEARTBEAT`]).
macro_rules! heartbeat {
    () => {
        "org.clearlinux/heartbeat/ping"
    };
}

/// How often the server folds PostgreSQL's pending changes, so the change tables stay small
/// even when nobody opens a page.
pub const FOLD_PERIOD: std::time::Duration = std::time::Duration::from_secs(60);

/// Folds pending changes every [`FOLD_PERIOD`] (the server's background task).
pub async fn fold_periodically(store: super::Store) {
    let mut tick = tokio::time::interval(FOLD_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = store.fold_summaries().await {
            tracing::warn!(error = %e, "folding the summary changes failed");
        }
    }
}

/// Seconds in a day: the summary's day is `ts_reception / DAY`.
pub const DAY: i64 = 86_400;

/// Whether the summary can answer counts of the records `f` selects.
pub fn servable(f: &Filter) -> bool {
    let on_day = |t: Option<i64>| t.is_none_or(|t| t.rem_euclid(DAY) == 0);
    f.machine_id.is_none()
        && f.payload.is_none()
        && f.not_payload.is_none()
        && f.payload_regex.is_none()
        && f.not_payload_regex.is_none()
        && f.crash_function.is_none()
        && f.crash_module.is_none()
        && f.after_id.is_none()
        && on_day(f.since)
        && on_day(f.until)
}

macro_rules! sqlite_add_new {
    () => { concat!(
    "INSERT INTO record_days (day, classification, severity, build, host_type, system_name, \
     external, n) VALUES (NEW.ts_reception / 86400, NEW.classification, NEW.severity, \
     NEW.build, NEW.host_type, NEW.system_name, NEW.external, 1) \
     ON CONFLICT (day, classification, severity, build, host_type, system_name, external) \
     DO UPDATE SET n = n + 1;
     INSERT INTO heartbeat_machines (build, machine_id, last_seen, n) \
     SELECT NEW.build, NEW.machine_id, NEW.ts_reception, 1 WHERE NEW.classification = '",
    heartbeat!(),
    "' ON CONFLICT (build, machine_id) DO UPDATE SET last_seen = MAX(last_seen, \
     excluded.last_seen), n = n + 1;"
) };
}

macro_rules! sqlite_remove_old {
    () => {
        concat!(
            "UPDATE record_days SET n = n - 1 WHERE day = OLD.ts_reception / 86400 \
     AND classification = OLD.classification AND severity = OLD.severity AND build = OLD.build \
     AND host_type = OLD.host_type AND system_name = OLD.system_name \
     AND external = OLD.external;
     DELETE FROM record_days WHERE n <= 0 AND day = OLD.ts_reception / 86400 \
     AND classification = OLD.classification AND severity = OLD.severity AND build = OLD.build \
     AND host_type = OLD.host_type AND system_name = OLD.system_name \
     AND external = OLD.external;
     UPDATE heartbeat_machines SET n = n - 1 WHERE OLD.classification = '",
            heartbeat!(),
            "' AND build = OLD.build AND machine_id = OLD.machine_id;
     DELETE FROM heartbeat_machines WHERE n <= 0 AND build = OLD.build \
     AND machine_id = OLD.machine_id;"
        )
    };
}

/// The summary tables (the same DDL on both engines).
macro_rules! tables {
    () => {
        concat!(
            "CREATE TABLE record_days (
        day BIGINT NOT NULL,
        classification TEXT NOT NULL,
        severity BIGINT NOT NULL,
        build TEXT NOT NULL,
        host_type TEXT NOT NULL,
        system_name TEXT NOT NULL,
        external BOOLEAN NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (day, classification, severity, build, host_type, system_name, external)
    );
    CREATE TABLE heartbeat_machines (
        build TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        last_seen BIGINT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (build, machine_id)
    );
    "
        )
    };
}

/// The summaries of the records already stored when the migration runs.
macro_rules! backfill {
    () => {
        concat!(
            "
    INSERT INTO record_days (day, classification, severity, build, host_type, system_name,
        external, n)
    SELECT ts_reception / 86400, classification, severity, build, host_type, system_name,
        external, COUNT(*) FROM records GROUP BY 1, 2, 3, 4, 5, 6, 7;
    INSERT INTO heartbeat_machines (build, machine_id, last_seen, n)
    SELECT build, machine_id, MAX(ts_reception), COUNT(*) FROM records
    WHERE classification = '",
            heartbeat!(),
            "' GROUP BY build, machine_id;
    "
        )
    };
}

/// The hardware view reads only rasprobe's error records: a partial index holding every column
/// it reads answers it without touching the table.
macro_rules! hardware_index {
    () => { concat!(
    "CREATE INDEX records_hardware ON records (ts_reception, classification, build, machine_id) \
     WHERE ",
    super::hardware::errors_sql!(),
    ";"
) };
}

/// Schema version 5 on SQLite: the tables, triggers updating them in place, the backfill.
pub const SQLITE_V5: &str = concat!(
    tables!(),
    "CREATE TRIGGER records_summary_insert AFTER INSERT ON records BEGIN ",
    sqlite_add_new!(),
    " END;
    CREATE TRIGGER records_summary_delete AFTER DELETE ON records BEGIN ",
    sqlite_remove_old!(),
    " END;
    CREATE TRIGGER records_summary_update AFTER UPDATE OF ts_reception, classification, severity,
        build, host_type, system_name, external, machine_id ON records BEGIN ",
    sqlite_remove_old!(),
    sqlite_add_new!(),
    " END;",
    backfill!(),
    hardware_index!()
);

/// Schema version 5 on PostgreSQL: the tables, the change tables and their trigger, the
/// backfill.
pub const POSTGRES_V5: &str = concat!(
    tables!(),
    "CREATE TABLE record_day_changes (
        day BIGINT NOT NULL,
        classification TEXT NOT NULL,
        severity BIGINT NOT NULL,
        build TEXT NOT NULL,
        host_type TEXT NOT NULL,
        system_name TEXT NOT NULL,
        external BOOLEAN NOT NULL,
        n BIGINT NOT NULL
    );
    CREATE TABLE heartbeat_changes (
        build TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        ts BIGINT NOT NULL,
        n BIGINT NOT NULL
    );
    CREATE FUNCTION records_summary_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            INSERT INTO record_day_changes VALUES (OLD.ts_reception / 86400,
                OLD.classification, OLD.severity, OLD.build, OLD.host_type, OLD.system_name,
                OLD.external, -1);
            IF OLD.classification = '",
    heartbeat!(),
    "' THEN
                INSERT INTO heartbeat_changes VALUES (OLD.build, OLD.machine_id,
                    OLD.ts_reception, -1);
            END IF;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO record_day_changes VALUES (NEW.ts_reception / 86400,
                NEW.classification, NEW.severity, NEW.build, NEW.host_type, NEW.system_name,
                NEW.external, 1);
            IF NEW.classification = '",
    heartbeat!(),
    "' THEN
                INSERT INTO heartbeat_changes VALUES (NEW.build, NEW.machine_id,
                    NEW.ts_reception, 1);
            END IF;
        END IF;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER records_summary_insert_delete AFTER INSERT OR DELETE ON records
        FOR EACH ROW EXECUTE FUNCTION records_summary_change();
    CREATE TRIGGER records_summary_update AFTER UPDATE OF ts_reception, classification,
        severity, build, host_type, system_name, external, machine_id ON records
        FOR EACH ROW EXECUTE FUNCTION records_summary_change();
    CREATE INDEX record_days_empty ON record_days (day) WHERE n <= 0;
    CREATE INDEX heartbeat_machines_gone ON heartbeat_machines (build) WHERE n <= 0;",
    backfill!(),
    hardware_index!()
);

/// Moves PostgreSQL's pending changes into the summary, keys in order (so two folds lock the
/// summary rows in the same order), then drops the keys with no record left.
pub(crate) const PG_FOLD: &[&str] = &[
    "WITH moved AS (DELETE FROM record_day_changes RETURNING *)
     INSERT INTO record_days (day, classification, severity, build, host_type, system_name,
        external, n)
     SELECT day, classification, severity, build, host_type, system_name, external,
        CAST(SUM(n) AS BIGINT) FROM moved GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7
     ON CONFLICT (day, classification, severity, build, host_type, system_name, external)
     DO UPDATE SET n = record_days.n + EXCLUDED.n",
    "DELETE FROM record_days WHERE n <= 0",
    "WITH moved AS (DELETE FROM heartbeat_changes RETURNING *)
     INSERT INTO heartbeat_machines (build, machine_id, last_seen, n)
     SELECT build, machine_id, MAX(ts), CAST(SUM(n) AS BIGINT) FROM moved
     GROUP BY 1, 2 ORDER BY 1, 2
     ON CONFLICT (build, machine_id) DO UPDATE SET
        last_seen = GREATEST(heartbeat_machines.last_seen, EXCLUDED.last_seen),
        n = heartbeat_machines.n + EXCLUDED.n",
    "DELETE FROM heartbeat_machines WHERE n <= 0",
];

/// The engine methods reading the summaries, the same statements for both pools.
macro_rules! summary_methods {
    ($dialect:expr) => {
        /// Folds pending changes into the summaries, the hardware view's too (PostgreSQL; SQLite
        /// has none).
        pub(crate) async fn fold_summaries(&self) -> Result<(), $crate::store::StoreError> {
            if $dialect == $crate::store::filter::Dialect::Postgres {
                let hardware = $crate::store::hardware_summary::PG_FOLD;
                for sql in $crate::store::day_summary::PG_FOLD.iter().chain(hardware) {
                    sqlx::query(sql).execute(&self.pool).await?;
                }
            }
            Ok(())
        }

        async fn summary_counts(
            &self,
            by: $crate::store::CountBy,
            f: &$crate::store::Filter,
        ) -> Result<Vec<$crate::store::Count>, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::CountBy;
            self.fold_summaries().await?;
            let w = $crate::store::day_summary::summary_where(f, $dialect)?;
            let key = match by {
                CountBy::Day => "day",
                by => by.key_sql($dialect),
            };
            let sql = format!(
                "SELECT {key} AS k, CAST(SUM(n) AS BIGINT) AS n FROM record_days {} GROUP BY k \
                 HAVING SUM(n) > 0 ORDER BY {} LIMIT {}",
                w.sql,
                by.order_sql(),
                $crate::store::filter::MAX_GROUPS
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let key = match by {
                    CountBy::Day => $crate::store::day_summary::day_label(row.try_get("k")?),
                    _ => row.try_get("k")?,
                };
                out.push($crate::store::Count {
                    key,
                    count: row.try_get("n")?,
                });
            }
            Ok(out)
        }

        async fn summary_day_counts(
            &self,
            by: $crate::store::CountBy,
            f: &$crate::store::Filter,
        ) -> Result<Vec<$crate::store::DayCount>, $crate::store::StoreError> {
            use sqlx::Row as _;
            self.fold_summaries().await?;
            let w = $crate::store::day_summary::summary_where(f, $dialect)?;
            let key = by.key_sql($dialect);
            let sql = format!(
                "SELECT day AS d, {key} AS k, CAST(SUM(n) AS BIGINT) AS n FROM record_days {} \
                 GROUP BY d, k HAVING SUM(n) > 0 ORDER BY d, n DESC, k LIMIT {}",
                w.sql,
                $crate::store::filter::MAX_GROUPS
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push($crate::store::DayCount {
                    day: $crate::store::day_summary::day_label(row.try_get("d")?),
                    key: row.try_get("k")?,
                    count: row.try_get("n")?,
                });
            }
            Ok(out)
        }

        async fn summary_population(
            &self,
            now: i64,
        ) -> Result<Vec<$crate::store::Population>, $crate::store::StoreError> {
            use sqlx::Row as _;
            self.fold_summaries().await?;
            let sql = format!(
                "SELECT build, COUNT(*) AS all_n, \
                 COUNT(CASE WHEN last_seen >= $1 THEN 1 END) AS d1, \
                 COUNT(CASE WHEN last_seen >= $2 THEN 1 END) AS d3, \
                 COUNT(CASE WHEN last_seen >= $3 THEN 1 END) AS d7, \
                 COUNT(CASE WHEN last_seen >= $4 THEN 1 END) AS d14 \
                 FROM heartbeat_machines GROUP BY build ORDER BY all_n DESC, build LIMIT {}",
                $crate::store::filter::MAX_GROUPS
            );
            let mut q = sqlx::query(&sql);
            for days in [1i64, 3, 7, 14] {
                q = q.bind(now.saturating_sub(days * 86_400));
            }
            let rows = q.fetch_all(&self.pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push($crate::store::Population {
                    build: row.try_get("build")?,
                    all: row.try_get("all_n")?,
                    last_1_days: row.try_get("d1")?,
                    last_3_days: row.try_get("d3")?,
                    last_7_days: row.try_get("d7")?,
                    last_14_days: row.try_get("d14")?,
                });
            }
            Ok(out)
        }
    };
}
pub(crate) use summary_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_filters_the_summary_holds_are_served_from_it() {
        let mut f = Filter {
            classification: Some("org.clearlinux/crash/*".into()),
            build: Some("40280".into()),
            since: Some(20 * DAY),
            until: Some(30 * DAY),
            before_id: Some(5),
            ..Filter::default()
        };
        assert!(servable(&f));
        f.since = Some(20 * DAY + 1);
        assert!(!servable(&f));
        f.since = None;
        f.machine_id = Some("m".into());
        assert!(!servable(&f));
        f.machine_id = None;
        f.after_id = Some(1);
        assert!(!servable(&f));
    }
}
