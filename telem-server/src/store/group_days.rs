//! The crash groups per UTC day: `crash_group_days (function, module, day, n, first_seen,
//! last_seen, machines)`, at most one row per group and day, so a window of days reads a few
//! thousand rows where the per-build cells (`crash_days`) and the (group, machine) pairs
//! (`crash_machines`) hold about one row per crash record.
//!
//! `n`, `first_seen` and `last_seen` are the group's records received that day. `machines`
//! counts the machines whose **newest** record of the group was received that day, so the
//! distinct machines with a record at or after a day's start are the sum over the days from it
//! (what the top crashers and `/api/v1/crashes?since=` need). Ingest keeps it exact with the
//! pair's previous newest reception, which the `crash_machines` upsert saves in
//! `prev_last_seen` and returns: under PostgreSQL the upsert locks the pair's row and sees its
//! latest version, so two instances ingesting at once still move each machine exactly once.
//! Purge and regroup recompute the touched days' records and the touched groups' machines.

use std::collections::BTreeMap;

use super::crash_summary::{day, Cell};

/// The rows of every group and day, from the per-build cells (the machines follow).
macro_rules! all_days {
    () => {
        "INSERT INTO crash_group_days (crash_function, crash_module, day, n, first_seen, \
         last_seen, machines) SELECT crash_function, crash_module, day, SUM(n), \
         MIN(first_seen), MAX(last_seen), 0 FROM crash_days WHERE n > 0 \
         GROUP BY crash_function, crash_module, day"
    };
}
pub const ALL_DAYS: &str = all_days!();

/// Every group's machines by the day of their newest record, from the pairs.
macro_rules! all_machines {
    () => {
        "INSERT INTO crash_group_days (crash_function, crash_module, day, n, first_seen, \
         last_seen, machines) SELECT crash_function, crash_module, last_seen / 86400, 0, \
         MIN(last_seen), MAX(last_seen), COUNT(*) FROM crash_machines WHERE n > 0 \
         GROUP BY crash_function, crash_module, last_seen / 86400 \
         ON CONFLICT (crash_function, crash_module, day) DO UPDATE SET machines = excluded.machines"
    };
}
pub const ALL_MACHINES: &str = all_machines!();

/// Version 6 on SQLite: the table, the pair's previous newest reception, filled from the
/// summaries already stored.
pub const SQLITE_V6: &str = concat!(
    "ALTER TABLE crash_machines ADD COLUMN prev_last_seen INTEGER;
    CREATE TABLE crash_group_days (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        day INTEGER NOT NULL,
        n INTEGER NOT NULL,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        machines INTEGER NOT NULL,
        PRIMARY KEY (crash_function, crash_module, day)
    );
    CREATE INDEX crash_group_days_day ON crash_group_days (day);
    CREATE INDEX crash_machines_top ON crash_machines (crash_function, crash_module, n DESC,
        machine_id);
    ",
    all_days!(),
    ";\n",
    all_machines!(),
    ";"
);

/// Version 6 on PostgreSQL (BIGINT for the numbers).
pub const POSTGRES_V6: &str = concat!(
    "ALTER TABLE crash_machines ADD COLUMN prev_last_seen BIGINT;
    CREATE TABLE crash_group_days (
        crash_function TEXT NOT NULL,
        crash_module TEXT NOT NULL,
        day BIGINT NOT NULL,
        n BIGINT NOT NULL,
        first_seen BIGINT NOT NULL,
        last_seen BIGINT NOT NULL,
        machines BIGINT NOT NULL,
        PRIMARY KEY (crash_function, crash_module, day)
    );
    CREATE INDEX crash_group_days_day ON crash_group_days (day);
    CREATE INDEX crash_machines_top ON crash_machines (crash_function, crash_module, n DESC,
        machine_id);
    ",
    all_days!(),
    ";\n",
    all_machines!(),
    ";"
);

/// One day's records per group, from its cells (`$1` the day); its rows were zeroed first.
pub const DAY_FROM_CELLS: &str = "INSERT INTO crash_group_days (crash_function, crash_module, \
    day, n, first_seen, last_seen, machines) SELECT crash_function, crash_module, day, SUM(n), \
    MIN(first_seen), MAX(last_seen), 0 FROM crash_days WHERE day = $1 \
    GROUP BY crash_function, crash_module, day \
    ON CONFLICT (crash_function, crash_module, day) DO UPDATE SET n = excluded.n, \
    first_seen = excluded.first_seen, last_seen = excluded.last_seen";

/// One group's machines by the day of their newest record (`$1`, `$2` the group); its
/// machines were zeroed first.
pub const MACHINES_OF_GROUP: &str = "INSERT INTO crash_group_days (crash_function, crash_module, \
    day, n, first_seen, last_seen, machines) SELECT crash_function, crash_module, \
    last_seen / 86400, 0, MIN(last_seen), MAX(last_seen), COUNT(*) FROM crash_machines \
    WHERE crash_function = $1 AND crash_module = $2 \
    GROUP BY crash_function, crash_module, last_seen / 86400 \
    ON CONFLICT (crash_function, crash_module, day) DO UPDATE SET machines = excluded.machines";

/// What one ingest transaction adds per (group, day): records and the machines moved in (or,
/// negative, out).
pub type Deltas = BTreeMap<(String, String, i64), (Cell, i64)>;

/// Moves a pair's machine from the day of its previous newest record (none when the pair is
/// new) to the day of its newest.
pub fn move_machine(d: &mut Deltas, function: &str, module: &str, prev: Option<i64>, last: i64) {
    if prev.is_some_and(|p| day(p) == day(last)) {
        return;
    }
    let mut at = |ts: i64, by: i64| {
        let e = d
            .entry((function.to_string(), module.to_string(), day(ts)))
            .or_insert((
                Cell {
                    n: 0,
                    lo: ts,
                    hi: ts,
                },
                0,
            ));
        e.1 += by;
    };
    if let Some(p) = prev {
        at(p, -1);
    }
    at(last, 1);
}

/// A multi-row upsert of `rows` deltas (7 parameters each: group, day, n, first, last,
/// machines).
pub fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=7).map(|i| format!("${}", r * 7 + i)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO crash_group_days (crash_function, crash_module, day, n, first_seen, \
         last_seen, machines) VALUES {} ON CONFLICT (crash_function, crash_module, day) \
         DO UPDATE SET n = crash_group_days.n + excluded.n, \
         first_seen = CASE WHEN excluded.first_seen < crash_group_days.first_seen \
         THEN excluded.first_seen ELSE crash_group_days.first_seen END, \
         last_seen = CASE WHEN excluded.last_seen > crash_group_days.last_seen \
         THEN excluded.last_seen ELSE crash_group_days.last_seen END, \
         machines = crash_group_days.machines + excluded.machines",
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_machine_moves_only_between_days() {
        let mut d = Deltas::new();
        move_machine(&mut d, "f", "m", Some(10), 20);
        assert!(d.is_empty(), "same day");
        move_machine(&mut d, "f", "m", None, 5);
        move_machine(&mut d, "f", "m", Some(100), 86_400 + 3);
        assert_eq!(d[&("f".into(), "m".into(), 0)].1, 0, "one in, one out");
        assert_eq!(d[&("f".into(), "m".into(), 1)].1, 1);
    }
}
