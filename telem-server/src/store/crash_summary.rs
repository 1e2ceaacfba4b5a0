//! Crash summaries: what the crash-group queries read instead of every crash record.
//!
//! Four tables, exact at every commit. `crash_days` counts each group's records per UTC day and
//! build, with the first and last reception in that cell; `crash_machines` counts each group's
//! records per machine, with the first and last reception; `crash_builds` (per group and build)
//! and `crash_group_machines` (distinct machines per group) are their totals, small enough to
//! read whole for the unfiltered groups (the first two hold about as many rows as there are
//! crash records when machines crash rarely). Ingest adds to them in the
//! transaction that stores the rows; purge and regroup recompute the days and (group, machine)
//! pairs they touched from the rows, holding the summaries' lock so no ingest adds meanwhile;
//! [`Store::rebuild_crash_summaries`] recomputes everything (after rows were loaded around the
//! server, as the query bench's COPY does).
//!
//! They answer a filter that is empty or only `since` (whole days from the cells, the first,
//! partial day from the rows); any other filter reads the rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{CrashGroup, Filter, NewRecord, Store, StoreError};

const DAY: i64 = 86_400;

/// Summary rows per upsert statement (7 parameters each, well under both engines' limits).
pub(crate) const ROWS: usize = 500;

/// UTC day number of a reception time: the same truncating division as the SQL.
pub(crate) fn day(ts: i64) -> i64 {
    ts / DAY
}

/// A crash group's key: function and module.
pub(crate) type Key = (String, String);

/// Records of a cell, with the first and last reception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cell {
    pub n: i64,
    pub lo: i64,
    pub hi: i64,
}

impl Cell {
    fn one(ts: i64) -> Cell {
        Cell {
            n: 1,
            lo: ts,
            hi: ts,
        }
    }

    fn add(&mut self, o: Cell) {
        self.n += o.n;
        self.lo = self.lo.min(o.lo);
        self.hi = self.hi.max(o.hi);
    }
}

/// What new rows add to the summaries. Kept in key order, the order PostgreSQL then locks the
/// summary rows in: two instances' ingest transactions never wait on each other in a cycle.
#[derive(Debug, Default)]
pub(crate) struct Added {
    pub days: BTreeMap<(String, String, i64, String), Cell>,
    pub builds: BTreeMap<(String, String, String), Cell>,
    pub machines: BTreeMap<(String, String, String), Cell>,
    /// Records per group and day (`crash_group_days`; its machines follow from the pairs).
    pub group_days: BTreeMap<(String, String, i64), Cell>,
}

impl Added {
    pub fn record(&mut self, r: &NewRecord) {
        let Some(c) = &r.crash else {
            return;
        };
        let cell = Cell::one(r.ts_reception);
        let k = (
            c.function.clone(),
            c.module.clone(),
            day(r.ts_reception),
            r.build.clone(),
        );
        self.days
            .entry(k)
            .and_modify(|e| e.add(cell))
            .or_insert(cell);
        let k = (c.function.clone(), c.module.clone(), r.build.clone());
        self.builds
            .entry(k)
            .and_modify(|e| e.add(cell))
            .or_insert(cell);
        let k = (c.function.clone(), c.module.clone(), day(r.ts_reception));
        self.group_days
            .entry(k)
            .and_modify(|e| e.add(cell))
            .or_insert(cell);
        let k = (c.function.clone(), c.module.clone(), r.machine_id.clone());
        self.machines
            .entry(k)
            .and_modify(|e| e.add(cell))
            .or_insert(cell);
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }
}

/// The days and (group, machine) pairs that rows left or moved between: what purge and regroup
/// recompute from the rows.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub days: BTreeSet<i64>,
    pub machines: BTreeSet<(String, String, String)>,
}

impl Touched {
    pub fn add(&mut self, function: String, module: String, machine: String, ts: i64) {
        self.days.insert(day(ts));
        self.machines.insert((function, module, machine));
    }

    /// The groups whose totals (builds, machines) follow.
    pub fn groups(&self) -> BTreeSet<Key> {
        self.machines
            .iter()
            .map(|(f, m, _)| (f.clone(), m.clone()))
            .collect()
    }
}

/// `Some(since)` when the summaries answer `f`: no filter but a positive `since` (the paging
/// fields aside); `None` when the rows must.
pub(crate) fn served(f: &Filter) -> Option<Option<i64>> {
    let plain = Filter {
        since: f.since,
        limit: f.limit,
        before_id: f.before_id,
        ..Filter::default()
    };
    (plain == *f && f.since.is_none_or(|s| s > 0)).then_some(f.since)
}

/// Whether `f` selects every record.
pub(crate) fn unfiltered(f: &Filter) -> bool {
    served(f) == Some(None)
}

/// The first whole day at or after `since`, and the reception range of the partial day before
/// it that the rows answer.
pub(crate) fn split(since: Option<i64>) -> (i64, Option<(i64, i64)>) {
    match since {
        None => (i64::MIN, None),
        Some(s) if s % DAY == 0 => (day(s), None),
        Some(s) => (day(s) + 1, Some((s, (day(s) + 1) * DAY))),
    }
}

/// Crash groups being summed up: records, first and last reception, builds.
#[derive(Debug, Default)]
pub(crate) struct Groups(BTreeMap<Key, (Cell, BTreeSet<String>)>);

impl Groups {
    pub fn add(&mut self, key: Key, build: String, c: Cell) {
        let e = self.0.entry(key).or_insert((
            Cell {
                n: 0,
                lo: i64::MAX,
                hi: i64::MIN,
            },
            BTreeSet::new(),
        ));
        e.0.add(c);
        e.1.insert(build);
    }

    /// Adds records without their builds.
    pub fn count(&mut self, key: Key, c: Cell) {
        self.0
            .entry(key)
            .or_insert((
                Cell {
                    n: 0,
                    lo: i64::MAX,
                    hi: i64::MIN,
                },
                BTreeSet::new(),
            ))
            .0
            .add(c);
    }

    /// Adds a build to a group counted already (a build of another group is ignored).
    pub fn build(&mut self, key: Key, build: String) {
        if let Some(e) = self.0.get_mut(&key) {
            e.1.insert(build);
        }
    }

    /// The groups largest first, ties in byte order, at most `limit`.
    pub fn rank(self, machines: &HashMap<Key, i64>, limit: i64) -> Vec<CrashGroup> {
        let mut out: Vec<CrashGroup> = self
            .0
            .into_iter()
            .map(|(key, (c, builds))| CrashGroup {
                machines: machines.get(&key).copied().unwrap_or(0),
                function: key.0,
                module: key.1,
                count: c.n,
                builds: builds.into_iter().collect(),
                first_seen: c.lo,
                last_seen: c.hi,
            })
            .collect();
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.function.cmp(&b.function))
                .then_with(|| a.module.cmp(&b.module))
        });
        out.truncate(usize::try_from(limit).unwrap_or(0));
        out
    }
}

/// A multi-row upsert of `rows` summary rows into `table`, keyed by `keys`, each row binding
/// the keys then `n`, `first_seen`, `last_seen`.
pub(crate) fn upsert_sql(table: &str, keys: &[&str], rows: usize) -> String {
    upsert_sql_with(table, keys, rows, "")
}

/// [`upsert_sql`] with `set` (ending in a comma) first in the update's assignments, which see
/// the stored row's old values.
pub(crate) fn upsert_sql_with(table: &str, keys: &[&str], rows: usize, set: &str) -> String {
    let width = keys.len() + 3;
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=width).map(|i| format!("${}", r * width + i)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let keys = keys.join(", ");
    format!(
        "INSERT INTO {table} ({keys}, n, first_seen, last_seen) VALUES {} \
         ON CONFLICT ({keys}) DO UPDATE SET {set} n = {table}.n + excluded.n, \
         first_seen = CASE WHEN excluded.first_seen < {table}.first_seen \
         THEN excluded.first_seen ELSE {table}.first_seen END, \
         last_seen = CASE WHEN excluded.last_seen > {table}.last_seen \
         THEN excluded.last_seen ELSE {table}.last_seen END",
        values.join(", ")
    )
}

/// One day's cells, from the rows (`$1` the day, `[$2, $3)` its receptions).
pub(crate) const DAY_FROM_ROWS: &str = "INSERT INTO crash_days (crash_function, crash_module, \
    day, build, n, first_seen, last_seen) SELECT crash_function, crash_module, $1, build, \
    COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records WHERE crash_function IS NOT NULL \
    AND ts_reception >= $2 AND ts_reception < $3 GROUP BY crash_function, crash_module, build";

/// One (group, machine) pair, from the rows.
pub(crate) const MACHINE_FROM_ROWS: &str = "INSERT INTO crash_machines (crash_function, \
    crash_module, machine_id, n, first_seen, last_seen) SELECT crash_function, crash_module, \
    machine_id, COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records \
    WHERE crash_function = $1 AND crash_module = $2 AND machine_id = $3 \
    GROUP BY crash_function, crash_module, machine_id";

/// One group's builds, from its cells.
pub(crate) const BUILDS_FROM_DAYS: &str = "INSERT INTO crash_builds (crash_function, \
    crash_module, build, n, first_seen, last_seen) SELECT crash_function, crash_module, build, \
    SUM(n), MIN(first_seen), MAX(last_seen) FROM crash_days \
    WHERE crash_function = $1 AND crash_module = $2 GROUP BY crash_function, crash_module, build";

/// One group's distinct machines, from its pairs.
pub(crate) const MACHINES_OF_GROUP: &str = "INSERT INTO crash_group_machines (crash_function, \
    crash_module, machines) SELECT crash_function, crash_module, COUNT(*) FROM crash_machines \
    WHERE crash_function = $1 AND crash_module = $2 GROUP BY crash_function, crash_module";

/// Every group's builds and distinct machines, from the cells and pairs.
pub(crate) const ALL_TOTALS: [&str; 2] = [
    "INSERT INTO crash_builds (crash_function, crash_module, build, n, first_seen, last_seen) \
     SELECT crash_function, crash_module, build, SUM(n), MIN(first_seen), MAX(last_seen) \
     FROM crash_days GROUP BY crash_function, crash_module, build",
    "INSERT INTO crash_group_machines (crash_function, crash_module, machines) \
     SELECT crash_function, crash_module, COUNT(*) FROM crash_machines \
     GROUP BY crash_function, crash_module",
];

/// Every cell, from the rows.
pub(crate) const ALL_DAYS: &str = "INSERT INTO crash_days (crash_function, crash_module, day, \
    build, n, first_seen, last_seen) SELECT crash_function, crash_module, ts_reception / 86400, \
    build, COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records \
    WHERE crash_function IS NOT NULL \
    GROUP BY crash_function, crash_module, ts_reception / 86400, build";

/// Every (group, machine) pair, from the rows.
pub(crate) const ALL_MACHINES: &str = "INSERT INTO crash_machines (crash_function, \
    crash_module, machine_id, n, first_seen, last_seen) SELECT crash_function, crash_module, \
    machine_id, COUNT(*), MIN(ts_reception), MAX(ts_reception) FROM records \
    WHERE crash_function IS NOT NULL GROUP BY crash_function, crash_module, machine_id";

impl Store {
    /// Recomputes the crash summaries from every stored record, in one transaction (ingest on
    /// any instance waits for it). Needed only after rows were written around the server.
    pub async fn rebuild_crash_summaries(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.summary_rebuild().await,
            Store::Postgres(s) => s.summary_rebuild().await,
        }
    }
}

/// The engine methods of the summaries: `$conn` the engine's connection type, `$begin` its
/// write transaction, `$dialect` its SQL.
macro_rules! summary_methods {
    ($conn:ty, $begin:expr, $dialect:expr) => {
        /// Adds new rows (see [`Added`](crate::store::crash_summary::Added)) inside the
        /// transaction that stores them.
        pub(crate) async fn summary_add(
            conn: &mut $conn,
            a: &$crate::store::crash_summary::Added,
        ) -> Result<(), $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::crash_summary as cs;
            let days: Vec<_> = a.days.iter().collect();
            for chunk in days.chunks(cs::ROWS) {
                let sql = cs::upsert_sql(
                    "crash_days",
                    &["crash_function", "crash_module", "day", "build"],
                    chunk.len(),
                );
                let mut q = sqlx::query(&sql);
                for ((f, m, d, b), c) in chunk {
                    q = q.bind(f).bind(m).bind(*d).bind(b).bind(c.n).bind(c.lo).bind(c.hi);
                }
                q.execute(&mut *conn).await?;
            }
            let builds: Vec<_> = a.builds.iter().collect();
            for chunk in builds.chunks(cs::ROWS) {
                let sql = cs::upsert_sql(
                    "crash_builds",
                    &["crash_function", "crash_module", "build"],
                    chunk.len(),
                );
                let mut q = sqlx::query(&sql);
                for ((f, m, b), c) in chunk {
                    q = q.bind(f).bind(m).bind(b).bind(c.n).bind(c.lo).bind(c.hi);
                }
                q.execute(&mut *conn).await?;
            }
            // A pair without a previous newest reception is new: its group has one more
            // distinct machine. One whose newest reception changed day moves its machine
            // between the days of `crash_group_days`.
            let mut new_machines: std::collections::BTreeMap<cs::Key, i64> = Default::default();
            let mut deltas: $crate::store::group_days::Deltas = a
                .group_days
                .iter()
                .map(|(k, c)| (k.clone(), (*c, 0)))
                .collect();
            let machines: Vec<_> = a.machines.iter().collect();
            for chunk in machines.chunks(cs::ROWS) {
                let sql = cs::upsert_sql_with(
                    "crash_machines",
                    &["crash_function", "crash_module", "machine_id"],
                    chunk.len(),
                    "prev_last_seen = crash_machines.last_seen,",
                ) + " RETURNING crash_function, crash_module, prev_last_seen, last_seen";
                let mut q = sqlx::query(&sql);
                for ((f, m, id), c) in chunk {
                    q = q.bind(f).bind(m).bind(id).bind(c.n).bind(c.lo).bind(c.hi);
                }
                for r in &q.fetch_all(&mut *conn).await? {
                    let f: String = r.try_get("crash_function")?;
                    let m: String = r.try_get("crash_module")?;
                    let prev: Option<i64> = r.try_get("prev_last_seen")?;
                    let last: i64 = r.try_get("last_seen")?;
                    $crate::store::group_days::move_machine(&mut deltas, &f, &m, prev, last);
                    if prev.is_none() {
                        *new_machines.entry((f, m)).or_insert(0) += 1;
                    }
                }
            }
            for ((f, m), k) in &new_machines {
                sqlx::query(
                    "INSERT INTO crash_group_machines (crash_function, crash_module, machines) \
                     VALUES ($1, $2, $3) ON CONFLICT (crash_function, crash_module) DO UPDATE \
                     SET machines = crash_group_machines.machines + excluded.machines",
                )
                .bind(f)
                .bind(m)
                .bind(*k)
                .execute(&mut *conn)
                .await?;
            }
            let deltas: Vec<_> = deltas.iter().collect();
            for chunk in deltas.chunks(cs::ROWS) {
                let sql = $crate::store::group_days::upsert_sql(chunk.len());
                let mut q = sqlx::query(&sql);
                for ((f, m, d), (c, k)) in chunk {
                    q = q.bind(f).bind(m).bind(*d).bind(c.n).bind(c.lo).bind(c.hi).bind(*k);
                }
                q.execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Keeps every other transaction from adding to the summaries until this one ends
        /// (SQLite's write transaction already does).
        pub(crate) async fn summary_lock(conn: &mut $conn) -> Result<(), $crate::store::StoreError> {
            if matches!($dialect, $crate::store::filter::Dialect::Postgres) {
                sqlx::query("LOCK TABLE crash_days, crash_builds, crash_machines, crash_group_machines, \
                     crash_group_days IN EXCLUSIVE MODE")
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(())
        }

        /// Recomputes the touched days and pairs from the rows; the caller holds the lock.
        pub(crate) async fn summary_recompute(
            conn: &mut $conn,
            t: &$crate::store::crash_summary::Touched,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::crash_summary as cs;
            for d in &t.days {
                sqlx::query("DELETE FROM crash_days WHERE day = $1")
                    .bind(*d)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(cs::DAY_FROM_ROWS)
                    .bind(*d)
                    .bind(d * 86_400)
                    .bind((d + 1) * 86_400)
                    .execute(&mut *conn)
                    .await?;
            }
            for (f, m, id) in &t.machines {
                sqlx::query(
                    "DELETE FROM crash_machines WHERE crash_function = $1 AND crash_module = $2 \
                     AND machine_id = $3",
                )
                .bind(f)
                .bind(m)
                .bind(id)
                .execute(&mut *conn)
                .await?;
                sqlx::query(cs::MACHINE_FROM_ROWS)
                    .bind(f)
                    .bind(m)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            for (f, m) in &t.groups() {
                for sql in [
                    "DELETE FROM crash_builds WHERE crash_function = $1 AND crash_module = $2",
                    cs::BUILDS_FROM_DAYS,
                    "DELETE FROM crash_group_machines WHERE crash_function = $1 \
                     AND crash_module = $2",
                    cs::MACHINES_OF_GROUP,
                ] {
                    sqlx::query(sql).bind(f).bind(m).execute(&mut *conn).await?;
                }
            }
            // The groups per day: the touched days' records from their cells, the touched
            // groups' machines from their pairs, then the rows left with neither.
            use $crate::store::group_days as gd;
            for d in &t.days {
                sqlx::query("UPDATE crash_group_days SET n = 0 WHERE day = $1")
                    .bind(*d)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(gd::DAY_FROM_CELLS)
                    .bind(*d)
                    .execute(&mut *conn)
                    .await?;
            }
            for (f, m) in &t.groups() {
                for sql in [
                    "UPDATE crash_group_days SET machines = 0 WHERE crash_function = $1 \
                     AND crash_module = $2",
                    gd::MACHINES_OF_GROUP,
                ] {
                    sqlx::query(sql).bind(f).bind(m).execute(&mut *conn).await?;
                }
            }
            sqlx::query("DELETE FROM crash_group_days WHERE n = 0 AND machines = 0")
                .execute(&mut *conn)
                .await?;
            Ok(())
        }

        pub(crate) async fn summary_rebuild(&self) -> Result<(), $crate::store::StoreError> {
            use $crate::store::crash_summary as cs;
            let mut tx = self.pool.begin_with($begin).await?;
            Self::summary_lock(&mut tx).await?;
            for sql in [
                "DELETE FROM crash_days",
                "DELETE FROM crash_builds",
                "DELETE FROM crash_machines",
                "DELETE FROM crash_group_machines",
                "DELETE FROM crash_group_days",
                cs::ALL_DAYS,
                cs::ALL_MACHINES,
                cs::ALL_TOTALS[0],
                cs::ALL_TOTALS[1],
                $crate::store::group_days::ALL_DAYS,
                $crate::store::group_days::ALL_MACHINES,
            ] {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// The crash groups of the records received at or after `since` (all without).
        pub(crate) async fn summary_crash_groups(
            &self,
            since: Option<i64>,
            limit: i64,
        ) -> Result<Vec<$crate::store::CrashGroup>, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::crash_summary as cs;
            let mut groups = cs::Groups::default();
            if since.is_none() {
                // Everything: the totals (a row per group and build, a row per group).
                let rows = sqlx::query(
                    "SELECT crash_function AS f, crash_module AS m, build AS b, n, \
                     first_seen AS lo, last_seen AS hi FROM crash_builds",
                )
                .fetch_all(&self.pool)
                .await?;
                for r in &rows {
                    groups.add(
                        (r.try_get("f")?, r.try_get("m")?),
                        r.try_get("b")?,
                        cs::Cell {
                            n: r.try_get("n")?,
                            lo: r.try_get("lo")?,
                            hi: r.try_get("hi")?,
                        },
                    );
                }
                let rows = sqlx::query(
                    "SELECT crash_function AS f, crash_module AS m, machines AS n \
                     FROM crash_group_machines",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut machines = $crate::store::groups::ByGroup::new();
                for r in &rows {
                    machines.insert((r.try_get("f")?, r.try_get("m")?), r.try_get("n")?);
                }
                return Ok(groups.rank(&machines, limit));
            }
            let (from_day, partial) = cs::split(since);
            // Whole days: records, first and last reception per group from the groups per
            // day; the builds with a record since are those whose newest is.
            let rows = sqlx::query(
                "SELECT crash_function AS f, crash_module AS m, CAST(SUM(n) AS BIGINT) AS n, \
                 MIN(first_seen) AS lo, MAX(last_seen) AS hi FROM crash_group_days \
                 WHERE day >= $1 AND n > 0 GROUP BY crash_function, crash_module",
            )
            .bind(from_day)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                groups.count(
                    (r.try_get("f")?, r.try_get("m")?),
                    cs::Cell {
                        n: r.try_get("n")?,
                        lo: r.try_get("lo")?,
                        hi: r.try_get("hi")?,
                    },
                );
            }
            if let Some((lo, hi)) = partial {
                let rows = sqlx::query(
                    "SELECT crash_function AS f, crash_module AS m, COUNT(*) AS n, \
                     MIN(ts_reception) AS lo, MAX(ts_reception) AS hi FROM records \
                     WHERE crash_function IS NOT NULL AND ts_reception >= $1 \
                     AND ts_reception < $2 GROUP BY crash_function, crash_module",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.pool)
                .await?;
                for r in &rows {
                    groups.count(
                        (r.try_get("f")?, r.try_get("m")?),
                        cs::Cell {
                            n: r.try_get("n")?,
                            lo: r.try_get("lo")?,
                            hi: r.try_get("hi")?,
                        },
                    );
                }
            }
            let rows = sqlx::query(
                "SELECT crash_function AS f, crash_module AS m, build AS b FROM crash_builds \
                 WHERE last_seen >= $1",
            )
            .bind(since.unwrap_or(i64::MIN))
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                groups.build((r.try_get("f")?, r.try_get("m")?), r.try_get("b")?);
            }
            let machines = self.summary_machines(since.unwrap_or(i64::MIN)).await?;
            Ok(groups.rank(&machines, limit))
        }

        /// Distinct machines per group with a record received at or after `since`: the
        /// machines whose newest record is on a whole day from it, and those of the partial
        /// day before from the pairs.
        pub(crate) async fn summary_machines(
            &self,
            since: i64,
        ) -> Result<$crate::store::groups::ByGroup<i64>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let (from_day, partial) = $crate::store::crash_summary::split(Some(since));
            let rows = sqlx::query(
                "SELECT crash_function AS f, crash_module AS m, \
                 CAST(SUM(machines) AS BIGINT) AS n FROM crash_group_days WHERE day >= $1 \
                 GROUP BY crash_function, crash_module",
            )
            .bind(from_day)
            .fetch_all(&self.pool)
            .await?;
            let mut out = $crate::store::groups::ByGroup::new();
            for r in &rows {
                out.insert((r.try_get("f")?, r.try_get("m")?), r.try_get("n")?);
            }
            if let Some((lo, hi)) = partial {
                let rows = sqlx::query(
                    "SELECT crash_function AS f, crash_module AS m, COUNT(*) AS n \
                     FROM crash_machines WHERE last_seen >= $1 AND last_seen < $2 \
                     GROUP BY crash_function, crash_module",
                )
                .bind(lo)
                .bind(hi)
                .fetch_all(&self.pool)
                .await?;
                for r in &rows {
                    let n: i64 = r.try_get("n")?;
                    *out.entry((r.try_get("f")?, r.try_get("m")?)).or_insert(0) += n;
                }
            }
            out.retain(|_, n| *n > 0);
            Ok(out)
        }

        /// Records per (group, day) for the days `[from, to)`, day `from` numbered 0: the top
        /// crashers' trend over whole days. One row per group with its days as text
        /// (`k:n,k:n,…`): fetching a row per group and day cost more than the query itself.
        pub(crate) async fn summary_day_counts_of_groups(
            &self,
            from: i64,
            to: i64,
        ) -> Result<Vec<((String, String), i64, i64)>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let agg = match $dialect {
                $crate::store::filter::Dialect::Postgres => {
                    "string_agg(CAST(day - $1 AS TEXT) || ':' || CAST(n AS TEXT), ',')"
                }
                $crate::store::filter::Dialect::Sqlite => {
                    "group_concat(CAST(day - $1 AS TEXT) || ':' || CAST(n AS TEXT), ',')"
                }
            };
            let rows = sqlx::query(&format!(
                "SELECT crash_function AS f, crash_module AS m, {agg} AS days \
                 FROM crash_group_days WHERE day >= $1 AND day < $2 AND n > 0 \
                 GROUP BY crash_function, crash_module"
            ))
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::new();
            for r in &rows {
                let key: (String, String) = (r.try_get("f")?, r.try_get("m")?);
                let days: String = r.try_get("days")?;
                for cell in days.split(',') {
                    let parsed = cell
                        .split_once(':')
                        .and_then(|(k, n)| Some((k.parse().ok()?, n.parse().ok()?)));
                    let Some((k, n)) = parsed else {
                        return Err($crate::store::StoreError::BadFilter(format!(
                            "unreadable day counts {days:?}"
                        )));
                    };
                    out.push((key.clone(), k, n));
                }
            }
            Ok(out)
        }

        /// One group's records per UTC day received at or after `since` (the partial first
        /// day from the rows), and per build over every record.
        pub(crate) async fn summary_group_days(
            &self,
            function: &str,
            module: &str,
            since: i64,
        ) -> Result<(Vec<$crate::store::Count>, Vec<$crate::store::Count>), $crate::store::StoreError>
        {
            use sqlx::Row as _;
            use $crate::store::day_summary::day_label;
            let (from_day, partial) = $crate::store::crash_summary::split(Some(since));
            let mut per_day = Vec::new();
            if let Some((lo, hi)) = partial {
                let n: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM records WHERE crash_function = $1 \
                     AND crash_module = $2 AND ts_reception >= $3 AND ts_reception < $4",
                )
                .bind(function)
                .bind(module)
                .bind(lo)
                .bind(hi)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
                if n > 0 {
                    per_day.push($crate::store::Count {
                        key: day_label(from_day - 1),
                        count: n,
                    });
                }
            }
            let rows = sqlx::query(&format!(
                "SELECT day, n FROM crash_group_days WHERE crash_function = $1 \
                 AND crash_module = $2 AND day >= $3 AND n > 0 ORDER BY day LIMIT {}",
                $crate::store::filter::MAX_GROUPS
            ))
            .bind(function)
            .bind(module)
            .bind(from_day)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                per_day.push($crate::store::Count {
                    key: day_label(r.try_get("day")?),
                    count: r.try_get("n")?,
                });
            }
            per_day.truncate($crate::store::filter::MAX_GROUPS);
            let rows = sqlx::query(&format!(
                "SELECT build AS k, n FROM crash_builds WHERE crash_function = $1 \
                 AND crash_module = $2 ORDER BY n DESC, k LIMIT {}",
                $crate::store::filter::MAX_GROUPS
            ))
            .bind(function)
            .bind(module)
            .fetch_all(&self.pool)
            .await?;
            let mut per_build = Vec::with_capacity(rows.len());
            for r in &rows {
                per_build.push($crate::store::Count {
                    key: r.try_get("k")?,
                    count: r.try_get("n")?,
                });
            }
            Ok((per_day, per_build))
        }

        /// Distinct machines per group in `[since, until)`; `None` when a record was received
        /// at or after `until` (the summaries cannot tell then).
        pub(crate) async fn summary_window_machines(
            &self,
            since: i64,
            until: i64,
        ) -> Result<Option<$crate::store::groups::ByGroup<i64>>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let later: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM crash_machines WHERE last_seen >= $1")
                    .bind(until)
                    .fetch_one(&self.pool)
                    .await?
                    .try_get("n")?;
            if later > 0 {
                return Ok(None);
            }
            Ok(Some(self.summary_machines(since).await?))
        }

        /// First and last reception per group over every record.
        pub(crate) async fn summary_seen(
            &self,
        ) -> Result<$crate::store::groups::ByGroup<(i64, i64)>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let rows = sqlx::query(
                "SELECT crash_function AS f, crash_module AS m, MIN(first_seen) AS lo, \
                 MAX(last_seen) AS hi FROM crash_builds GROUP BY crash_function, crash_module",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut out = $crate::store::groups::ByGroup::new();
            for r in &rows {
                out.insert(
                    (r.try_get("f")?, r.try_get("m")?),
                    (r.try_get("lo")?, r.try_get("hi")?),
                );
            }
            Ok(out)
        }
    };
}
pub(crate) use summary_methods;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn since_splits_into_whole_days_and_the_partial_one() {
        assert_eq!(split(None), (i64::MIN, None));
        assert_eq!(split(Some(3 * DAY)), (3, None));
        assert_eq!(split(Some(3 * DAY + 5)), (4, Some((3 * DAY + 5, 4 * DAY))));
    }

    #[test]
    fn only_since_is_served() {
        assert_eq!(served(&Filter::default()), Some(None));
        let f = Filter {
            since: Some(10),
            limit: Some(5),
            ..Filter::default()
        };
        assert_eq!(served(&f), Some(Some(10)));
        let f = Filter {
            build: Some("1".into()),
            ..Filter::default()
        };
        assert_eq!(served(&f), None);
        let f = Filter {
            since: Some(0),
            ..Filter::default()
        };
        assert_eq!(served(&f), None);
    }

    #[test]
    fn upserts_number_their_parameters_per_row() {
        let sql = upsert_sql("t", &["a"], 2);
        assert!(
            sql.contains("VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)"),
            "{sql}"
        );
    }
}
