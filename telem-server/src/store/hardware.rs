//! The hardware view: machine-check, memory (EDAC) and PCIe error records (rasprobe's
//! `org.clearlinux/mce/*`, `memory/*`, `pcie/*`) per class, build, week and machine, and
//! thermal throttling records (`org.clearlinux/mce/thermal`) per week.

use serde::Serialize;
use telemetry::timefmt::utc_string;

use super::{Count, Store, StoreError};

/// Classification of rasprobe's thermal throttling record.
pub const THERMAL: &str = "org.clearlinux/mce/thermal";

/// Most machines the view lists.
pub const MAX_HW_MACHINES: i64 = 50;

/// Most machines the view ranks by their totals before it ranks every machine.
pub const MAX_CANDIDATES: i64 = 3_200;

/// The first [`MAX_HW_MACHINES`] of `machines`, most records first, ties in byte order of the
/// machine id whatever the database's collation.
pub fn rank_machines(mut machines: Vec<HwMachine>) -> Vec<HwMachine> {
    machines.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.machine_id.cmp(&b.machine_id))
    });
    machines.truncate(usize::try_from(MAX_HW_MACHINES).unwrap_or(usize::MAX));
    machines
}

/// Seconds in a week; weeks start on Monday 00:00 UTC (1970-01-05 was a Monday, 4 days after
/// the epoch).
const WEEK: i64 = 7 * 86_400;
const MONDAY: i64 = 4 * 86_400;

/// The error records: the three classification trees, without the thermal record, compared
/// by prefix with `substr` so the test is the same exact comparison on both engines (the
/// partial index of schema version 5, dropped by version 7).
macro_rules! errors_sql {
    () => {
        "(substr(classification, 1, 19) = 'org.clearlinux/mce/' \
    OR substr(classification, 1, 22) = 'org.clearlinux/memory/' \
    OR substr(classification, 1, 20) = 'org.clearlinux/pcie/') \
    AND classification <> 'org.clearlinux/mce/thermal'"
    };
}
pub(crate) use errors_sql;

/// Records of one class and build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassBuild {
    pub classification: String,
    pub build: String,
    pub count: i64,
}

/// Records of one class in one week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassWeek {
    /// The Monday the week starts on, `YYYY-MM-DD`.
    pub week: String,
    pub classification: String,
    pub count: i64,
}

/// Thermal records in one week.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThermalWeek {
    pub week: String,
    pub count: i64,
    pub machines: i64,
}

/// Error records of one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HwMachine {
    pub machine_id: String,
    pub count: i64,
    /// Its distinct error classes.
    pub classes: i64,
    pub last_seen: i64,
}

/// The hardware view over the weeks since `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hardware {
    pub weeks: i64,
    /// Start of the first week, unix seconds.
    pub since: i64,
    pub classes: Vec<Count>,
    pub builds: Vec<ClassBuild>,
    pub weekly: Vec<ClassWeek>,
    pub machines: Vec<HwMachine>,
    pub thermal_weekly: Vec<ThermalWeek>,
}

/// The Monday (00:00 UTC) of the week holding `t`.
pub fn week_start(t: i64) -> i64 {
    (t - MONDAY).div_euclid(WEEK) * WEEK + MONDAY
}

/// `YYYY-MM-DD` of unix seconds.
pub fn day_string(t: i64) -> String {
    let s = utc_string(u64::try_from(t).unwrap_or(0));
    s.get(..10).unwrap_or_default().to_string()
}

impl Store {
    /// The hardware view of the `weeks` weeks up to `now` (the current week included).
    pub async fn hardware(&self, weeks: i64, now: i64) -> Result<Hardware, StoreError> {
        if !(1..=520).contains(&weeks) {
            return Err(StoreError::BadFilter(
                "weeks must be between 1 and 520".into(),
            ));
        }
        let since = week_start(now) - (weeks - 1) * WEEK;
        match self {
            Store::Sqlite(s) => s.hardware(since, weeks).await,
            Store::Postgres(s) => s.hardware(since, weeks).await,
        }
    }
}

/// The engine method behind [`Store::hardware`]: reads the summaries of
/// [`super::hardware_summary`] (after folding pending changes), never the records.
macro_rules! hardware_methods {
    () => {
        pub(crate) async fn hardware(
            &self,
            since: i64,
            weeks: i64,
        ) -> Result<$crate::store::hardware::Hardware, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::hardware::{
                day_string, ClassBuild, ClassWeek, Hardware, ThermalWeek, THERMAL,
            };
            use $crate::store::hardware_summary::{week_begins, week_of};
            let limit = $crate::store::filter::MAX_GROUPS;
            let first = week_of(since);
            self.fold_summaries().await?;

            let rows = sqlx::query(&format!(
                "SELECT classification AS k, CAST(SUM(n) AS BIGINT) AS n FROM hardware_weeks \
                 WHERE week >= $1 AND classification <> $2 GROUP BY classification \
                 ORDER BY n DESC, k LIMIT {limit}"
            ))
            .bind(first)
            .bind(THERMAL)
            .fetch_all(&self.pool)
            .await?;
            let mut classes = Vec::with_capacity(rows.len());
            for r in &rows {
                classes.push($crate::store::Count {
                    key: r.try_get("k")?,
                    count: r.try_get("n")?,
                });
            }

            let rows = sqlx::query(&format!(
                "SELECT classification AS c, build AS b, CAST(SUM(n) AS BIGINT) AS n \
                 FROM hardware_weeks WHERE week >= $1 AND classification <> $2 \
                 GROUP BY classification, build ORDER BY n DESC, b, c LIMIT {limit}"
            ))
            .bind(first)
            .bind(THERMAL)
            .fetch_all(&self.pool)
            .await?;
            let mut builds = Vec::with_capacity(rows.len());
            for r in &rows {
                builds.push(ClassBuild {
                    classification: r.try_get("c")?,
                    build: r.try_get("b")?,
                    count: r.try_get("n")?,
                });
            }

            let rows = sqlx::query(&format!(
                "SELECT week AS w, classification AS c, CAST(SUM(n) AS BIGINT) AS n \
                 FROM hardware_weeks WHERE week >= $1 AND classification <> $2 \
                 GROUP BY 1, 2 ORDER BY 1, 2 LIMIT {limit}"
            ))
            .bind(first)
            .bind(THERMAL)
            .fetch_all(&self.pool)
            .await?;
            let mut weekly = Vec::with_capacity(rows.len());
            for r in &rows {
                weekly.push(ClassWeek {
                    week: day_string(week_begins(r.try_get("w")?)),
                    classification: r.try_get("c")?,
                    count: r.try_get("n")?,
                });
            }

            let machines = self.hardware_machines(first).await?;

            // One row per week and machine: the rows are the distinct machines.
            let rows = sqlx::query(
                "SELECT week AS w, CAST(SUM(n) AS BIGINT) AS n, COUNT(*) AS m \
                 FROM hardware_machines WHERE week >= $1 AND classification = $2 \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(first)
            .bind(THERMAL)
            .fetch_all(&self.pool)
            .await?;
            let mut thermal_weekly = Vec::with_capacity(rows.len());
            for r in &rows {
                thermal_weekly.push(ThermalWeek {
                    week: day_string(week_begins(r.try_get("w")?)),
                    count: r.try_get("n")?,
                    machines: r.try_get("m")?,
                });
            }

            Ok(Hardware {
                weeks,
                since,
                classes,
                builds,
                weekly,
                machines,
                thermal_weekly,
            })
        }

        /// The [`MAX_HW_MACHINES`] machines with most error records since week `first`.
        ///
        /// A machine's count in the window is at most its total over all weeks, so ranking the
        /// `k` machines with the largest totals is exact once the last of the listed machines
        /// has more records in the window than the `k`-th total: no other machine can reach
        /// it. `k` grows until then; past [`MAX_CANDIDATES`] every machine is ranked.
        async fn hardware_machines(
            &self,
            first: i64,
        ) -> Result<Vec<$crate::store::hardware::HwMachine>, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::hardware::{
                rank_machines, HwMachine, MAX_CANDIDATES, MAX_HW_MACHINES, THERMAL,
            };
            // Per machine over its classes: records, classes, newest reception.
            const PER_MACHINE: &str = "SELECT machine_id AS m, CAST(SUM(n) AS BIGINT) AS n, \
                COUNT(*) AS c, MAX(hi) AS hi FROM (SELECT machine_id, classification, \
                SUM(n) AS n, MAX(last_seen) AS hi FROM hardware_machines \
                WHERE week >= $1 AND classification <> $2";
            const PER_CLASS: &str =
                "GROUP BY machine_id, classification HAVING SUM(n) > 0) AS per_class \
                 GROUP BY machine_id";
            let read = |rows: Vec<_>| -> Result<Vec<HwMachine>, sqlx::Error> {
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let r: &_ = r;
                    out.push(HwMachine {
                        machine_id: sqlx::Row::try_get(r, "m")?,
                        count: sqlx::Row::try_get(r, "n")?,
                        classes: sqlx::Row::try_get(r, "c")?,
                        last_seen: sqlx::Row::try_get(r, "hi")?,
                    });
                }
                Ok(out)
            };
            let mut k = 4 * MAX_HW_MACHINES;
            while k <= MAX_CANDIDATES {
                let rows = sqlx::query(
                    "SELECT machine_id, n FROM hardware_machine_totals WHERE n > 0 \
                     ORDER BY n DESC, machine_id LIMIT $1",
                )
                .bind(k)
                .fetch_all(&self.pool)
                .await?;
                let mut bound = 0i64;
                let mut candidates = Vec::with_capacity(rows.len());
                for r in &rows {
                    candidates.push(r.try_get::<String, _>("machine_id")?);
                    bound = r.try_get("n")?;
                }
                if candidates.is_empty() {
                    return Ok(Vec::new());
                }
                let marks: Vec<String> = (0..candidates.len())
                    .map(|i| format!("${}", i + 3))
                    .collect();
                let sql = format!(
                    "{PER_MACHINE} AND machine_id IN ({}) {PER_CLASS}",
                    marks.join(", ")
                );
                let mut q = sqlx::query(&sql).bind(first).bind(THERMAL);
                for c in &candidates {
                    q = q.bind(c);
                }
                let ranked = rank_machines(read(q.fetch_all(&self.pool).await?)?);
                let everyone = (candidates.len() as i64) < k;
                if everyone
                    || ranked.len() as i64 == MAX_HW_MACHINES
                        && ranked.last().is_some_and(|m| m.count > bound)
                {
                    return Ok(ranked);
                }
                k *= 4;
            }
            let sql =
                format!("{PER_MACHINE} {PER_CLASS} ORDER BY n DESC, m LIMIT {MAX_HW_MACHINES}");
            let rows = sqlx::query(&sql)
                .bind(first)
                .bind(THERMAL)
                .fetch_all(&self.pool)
                .await?;
            Ok(rank_machines(read(rows)?))
        }
    };
}
pub(crate) use hardware_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2023-11-14 22:13:20 UTC was a Tuesday.
        assert_eq!(day_string(week_start(1_700_000_000)), "2023-11-13");
        assert_eq!(
            week_start(week_start(1_700_000_000)),
            week_start(1_700_000_000)
        );
    }
}
