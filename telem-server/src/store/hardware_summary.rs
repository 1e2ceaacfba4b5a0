//! Summary tables behind the hardware view, kept by triggers on `records` the way
//! [`super::day_summary`] keeps its own (exact at every commit, on every write path: ingest on
//! any instance, `COPY`, purge, an UPDATE of a summarised column):
//! - `hardware_weeks`: records per week × classification × build;
//! - `hardware_machines`: records and newest reception per week × classification × machine, so
//!   distinct machines (thermal machines per week, a machine's error classes) are counted
//!   from it;
//! - `hardware_machine_totals`: error records (thermal excluded) per machine over all weeks,
//!   indexed by count. With machines that rarely fail `hardware_machines` barely shrinks the
//!   records (on the pages bench, 58,182 rows for 60,174 error records), and ranking all of
//!   its machines took 160–290 ms; the totals bound a machine's count in any window, so the
//!   view ranks only the machines with the largest totals (see [`super::hardware`]).
//!
//! Both hold only rasprobe's classification trees (`org.clearlinux/mce/`, `memory/`, `pcie/`,
//! the thermal record included); the view splits errors from thermal on read. A week is
//! `(ts_reception + 3 days) / 7 days`: weeks start on Monday 00:00 UTC (1970-01-05, the first
//! Monday, begins week 1).
//!
//! SQLite (one writer) updates the rows in place; PostgreSQL appends ±1 rows to
//! `hardware_changes`, folded with the day summaries' changes (keys in a fixed order), because
//! in-place counters would make concurrent ingest batches lock the same rows in opposite
//! orders. `last_seen` stays right under purge for the reason the heartbeat pairs' does: purge
//! deletes a classification's records oldest first, so a key's newest record goes last.

/// Seconds from the epoch to the first Monday, minus a week: `(t + SHIFT) / WEEK` is the week
/// number of `t` (for `t >= 0`).
pub const SHIFT: i64 = 3 * 86_400;
/// Seconds in a week.
pub const WEEK: i64 = 7 * 86_400;

/// The week number of unix seconds `t` (the summaries' `week`).
pub fn week_of(t: i64) -> i64 {
    (t + SHIFT).div_euclid(WEEK)
}

/// The Monday 00:00 UTC starting week number `w`, unix seconds.
pub fn week_begins(w: i64) -> i64 {
    w * WEEK - SHIFT
}

/// Whether a row (`NEW` or `OLD`) belongs in the summaries: the three rasprobe trees, compared
/// by prefix with `substr` so the test is the same exact comparison on both engines.
macro_rules! hw_row {
    ($row:literal) => {
        concat!(
            "(substr(",
            $row,
            ".classification, 1, 19) = 'org.clearlinux/mce/' OR substr(",
            $row,
            ".classification, 1, 22) = 'org.clearlinux/memory/' OR substr(",
            $row,
            ".classification, 1, 20) = 'org.clearlinux/pcie/')"
        )
    };
}

/// The thermal classification as a literal, for the DDL (equal to
/// [`super::hardware::THERMAL`]).
macro_rules! thermal {
    () => {
        "org.clearlinux/mce/thermal"
    };
}

/// The week of a row's reception, as SQL (the same integer division on both engines).
macro_rules! week_sql {
    ($row:literal) => {
        concat!("((", $row, ".ts_reception + 259200) / 604800)")
    };
}

/// The tables (the same DDL on both engines).
macro_rules! tables {
    () => {
        "CREATE TABLE hardware_weeks (
        week BIGINT NOT NULL,
        classification TEXT NOT NULL,
        build TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (week, classification, build)
    );
    CREATE TABLE hardware_machines (
        week BIGINT NOT NULL,
        classification TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        n BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        PRIMARY KEY (week, classification, machine_id)
    );
    CREATE INDEX hardware_machines_machine ON hardware_machines (machine_id, week);
    CREATE TABLE hardware_machine_totals (
        machine_id TEXT NOT NULL PRIMARY KEY,
        n BIGINT NOT NULL
    );
    CREATE INDEX hardware_machine_totals_n ON hardware_machine_totals (n DESC, machine_id);
    "
    };
}

/// The summaries of the records already stored when the migration runs, and the end of the
/// partial index the view read before (nothing reads it now).
macro_rules! backfill {
    () => {
        concat!(
            "INSERT INTO hardware_weeks (week, classification, build, n)
    SELECT (ts_reception + 259200) / 604800, classification, build, COUNT(*) FROM records r
    WHERE ",
            hw_row!("r"),
            " GROUP BY 1, 2, 3;
    INSERT INTO hardware_machines (week, classification, machine_id, n, last_seen)
    SELECT (ts_reception + 259200) / 604800, classification, machine_id, COUNT(*),
        MAX(ts_reception) FROM records r WHERE ",
            hw_row!("r"),
            " GROUP BY 1, 2, 3;
    INSERT INTO hardware_machine_totals (machine_id, n)
    SELECT machine_id, COUNT(*) FROM records r WHERE ",
            hw_row!("r"),
            " AND classification <> '",
            thermal!(),
            "' GROUP BY 1;
    DROP INDEX IF EXISTS records_hardware;"
        )
    };
}

macro_rules! sqlite_add_new {
    () => {
        concat!(
            "INSERT INTO hardware_weeks (week, classification, build, n) VALUES (",
            week_sql!("NEW"),
            ", NEW.classification, NEW.build, 1)
        ON CONFLICT (week, classification, build) DO UPDATE SET n = n + 1;
    INSERT INTO hardware_machines (week, classification, machine_id, n, last_seen) VALUES (",
            week_sql!("NEW"),
            ", NEW.classification, NEW.machine_id, 1, NEW.ts_reception)
        ON CONFLICT (week, classification, machine_id) DO UPDATE SET n = n + 1,
        last_seen = MAX(last_seen, excluded.last_seen);
    INSERT INTO hardware_machine_totals (machine_id, n) SELECT NEW.machine_id, 1
        WHERE NEW.classification <> '",
            thermal!(),
            "' ON CONFLICT (machine_id) DO UPDATE SET n = n + 1;"
        )
    };
}

macro_rules! sqlite_remove_old {
    () => {
        concat!(
            "UPDATE hardware_weeks SET n = n - 1 WHERE week = ",
            week_sql!("OLD"),
            " AND classification = OLD.classification AND build = OLD.build;
    DELETE FROM hardware_weeks WHERE n <= 0 AND week = ",
            week_sql!("OLD"),
            " AND classification = OLD.classification AND build = OLD.build;
    UPDATE hardware_machines SET n = n - 1 WHERE week = ",
            week_sql!("OLD"),
            " AND classification = OLD.classification AND machine_id = OLD.machine_id;
    DELETE FROM hardware_machines WHERE n <= 0 AND week = ",
            week_sql!("OLD"),
            " AND classification = OLD.classification AND machine_id = OLD.machine_id;
    UPDATE hardware_machine_totals SET n = n - 1 WHERE machine_id = OLD.machine_id
        AND OLD.classification <> '",
            thermal!(),
            "';
    DELETE FROM hardware_machine_totals WHERE n <= 0 AND machine_id = OLD.machine_id;"
        )
    };
}

/// The columns whose change moves a record between summary keys.
macro_rules! summarised {
    () => {
        "ts_reception, classification, build, machine_id"
    };
}

/// Schema version 7 on SQLite: the tables, triggers updating them in place (only for
/// rasprobe's records: the `WHEN` keeps every other insert as cheap as before), the backfill.
pub const SQLITE_V7: &str = concat!(
    tables!(),
    "CREATE TRIGGER records_hardware_insert AFTER INSERT ON records WHEN ",
    hw_row!("NEW"),
    " BEGIN ",
    sqlite_add_new!(),
    " END;
    CREATE TRIGGER records_hardware_delete AFTER DELETE ON records WHEN ",
    hw_row!("OLD"),
    " BEGIN ",
    sqlite_remove_old!(),
    " END;
    CREATE TRIGGER records_hardware_update_old AFTER UPDATE OF ",
    summarised!(),
    " ON records WHEN ",
    hw_row!("OLD"),
    " BEGIN ",
    sqlite_remove_old!(),
    " END;
    CREATE TRIGGER records_hardware_update_new AFTER UPDATE OF ",
    summarised!(),
    " ON records WHEN ",
    hw_row!("NEW"),
    " BEGIN ",
    sqlite_add_new!(),
    " END;
    ",
    backfill!()
);

/// Schema version 7 on PostgreSQL: the tables, the change table and its triggers, the
/// backfill.
pub const POSTGRES_V7: &str = concat!(
    tables!(),
    "CREATE TABLE hardware_changes (
        week BIGINT NOT NULL,
        classification TEXT NOT NULL,
        build TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        ts BIGINT NOT NULL,
        n BIGINT NOT NULL
    );
    CREATE FUNCTION records_hardware_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') AND ",
    hw_row!("OLD"),
    " THEN
            INSERT INTO hardware_changes VALUES (",
    week_sql!("OLD"),
    ", OLD.classification, OLD.build, OLD.machine_id, OLD.ts_reception, -1);
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND ",
    hw_row!("NEW"),
    " THEN
            INSERT INTO hardware_changes VALUES (",
    week_sql!("NEW"),
    ", NEW.classification, NEW.build, NEW.machine_id, NEW.ts_reception, 1);
        END IF;
        RETURN NULL;
    END
    $fn$;
    CREATE TRIGGER records_hardware_insert AFTER INSERT ON records FOR EACH ROW WHEN (",
    hw_row!("NEW"),
    ") EXECUTE FUNCTION records_hardware_change();
    CREATE TRIGGER records_hardware_delete AFTER DELETE ON records FOR EACH ROW WHEN (",
    hw_row!("OLD"),
    ") EXECUTE FUNCTION records_hardware_change();
    CREATE TRIGGER records_hardware_update AFTER UPDATE OF ",
    summarised!(),
    " ON records FOR EACH ROW WHEN (",
    hw_row!("OLD"),
    " OR ",
    hw_row!("NEW"),
    ") EXECUTE FUNCTION records_hardware_change();
    CREATE INDEX hardware_weeks_empty ON hardware_weeks (week) WHERE n <= 0;
    CREATE INDEX hardware_machines_empty ON hardware_machines (week) WHERE n <= 0;
    ",
    backfill!()
);

/// Moves PostgreSQL's pending changes into both tables, keys in order (so two folds lock the
/// summary rows in the same order), then drops the keys with no record left. A change row's
/// `ts` raises `last_seen` only when it adds a record.
pub(crate) const PG_FOLD: &[&str] = &[
    "WITH moved AS (DELETE FROM hardware_changes RETURNING *),
     weeks AS (
        INSERT INTO hardware_weeks (week, classification, build, n)
        SELECT week, classification, build, CAST(SUM(n) AS BIGINT) FROM moved
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (week, classification, build)
        DO UPDATE SET n = hardware_weeks.n + EXCLUDED.n
     ),
     totals AS (
        INSERT INTO hardware_machine_totals (machine_id, n)
        SELECT machine_id, CAST(SUM(n) AS BIGINT) FROM moved
        WHERE classification <> 'org.clearlinux/mce/thermal' GROUP BY 1 ORDER BY 1
        ON CONFLICT (machine_id) DO UPDATE SET n = hardware_machine_totals.n + EXCLUDED.n
     )
     INSERT INTO hardware_machines (week, classification, machine_id, n, last_seen)
     SELECT week, classification, machine_id, CAST(SUM(n) AS BIGINT),
        COALESCE(MAX(CASE WHEN n > 0 THEN ts END), 0) FROM moved
     GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
     ON CONFLICT (week, classification, machine_id) DO UPDATE SET
        n = hardware_machines.n + EXCLUDED.n,
        last_seen = GREATEST(hardware_machines.last_seen, EXCLUDED.last_seen)",
    "DELETE FROM hardware_weeks WHERE n <= 0",
    "DELETE FROM hardware_machines WHERE n <= 0",
    "DELETE FROM hardware_machine_totals WHERE n <= 0",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hardware::week_start;

    #[test]
    fn week_numbers_begin_on_monday() {
        for t in [
            0,
            345_599,
            345_600,
            1_700_000_000,
            week_start(1_700_000_000),
        ] {
            assert_eq!(week_begins(week_of(t)), week_start(t), "{t}");
        }
        // 2023-11-13 was a Monday: its first second opens a week, the one before closes one.
        let monday = week_start(1_700_000_000);
        assert_eq!(week_of(monday), week_of(monday - 1) + 1);
    }
}
