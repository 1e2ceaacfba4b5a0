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

/// Seconds in a week; weeks start on Monday 00:00 UTC (1970-01-05 was a Monday, 4 days after
/// the epoch).
const WEEK: i64 = 7 * 86_400;
const MONDAY: i64 = 4 * 86_400;

/// The error records: the three classification trees, without the thermal record, compared
/// by prefix with `substr` so the test is the same exact comparison on both engines.
macro_rules! errors_sql {
    () => {
        "(substr(classification, 1, 19) = 'org.clearlinux/mce/' \
    OR substr(classification, 1, 22) = 'org.clearlinux/memory/' \
    OR substr(classification, 1, 20) = 'org.clearlinux/pcie/') \
    AND classification <> 'org.clearlinux/mce/thermal'"
    };
}
pub(crate) use errors_sql;
pub(crate) const ERRORS: &str = errors_sql!();

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

/// The engine method behind [`Store::hardware`].
macro_rules! hardware_methods {
    () => {
        pub(crate) async fn hardware(
            &self,
            since: i64,
            weeks: i64,
        ) -> Result<$crate::store::hardware::Hardware, $crate::store::StoreError> {
            use sqlx::Row as _;
            use $crate::store::hardware::{
                day_string, ClassBuild, ClassWeek, Hardware, HwMachine, ThermalWeek, ERRORS,
                MAX_HW_MACHINES, THERMAL,
            };
            // Week index from `since` ($1), in whole weeks.
            const WEEK_OF: &str = "(ts_reception - $1) / 604800";
            let limit = $crate::store::filter::MAX_GROUPS;
            let week = |k: i64| day_string(since + k * 604_800);

            let rows = sqlx::query(&format!(
                "SELECT classification AS k, COUNT(*) AS n FROM records \
                 WHERE ts_reception >= $1 AND {ERRORS} GROUP BY classification \
                 ORDER BY n DESC, k LIMIT {limit}"
            ))
            .bind(since)
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
                "SELECT classification AS c, build AS b, COUNT(*) AS n FROM records \
                 WHERE ts_reception >= $1 AND {ERRORS} GROUP BY classification, build \
                 ORDER BY n DESC, b, c LIMIT {limit}"
            ))
            .bind(since)
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
                "SELECT {WEEK_OF} AS w, classification AS c, COUNT(*) AS n FROM records \
                 WHERE ts_reception >= $1 AND {ERRORS} GROUP BY 1, 2 ORDER BY 1, 2 LIMIT {limit}"
            ))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let mut weekly = Vec::with_capacity(rows.len());
            for r in &rows {
                weekly.push(ClassWeek {
                    week: week(r.try_get("w")?),
                    classification: r.try_get("c")?,
                    count: r.try_get("n")?,
                });
            }

            let rows = sqlx::query(&format!(
                "SELECT machine_id AS m, COUNT(*) AS n, COUNT(DISTINCT classification) AS c, \
                 MAX(ts_reception) AS hi FROM records WHERE ts_reception >= $1 AND {ERRORS} \
                 GROUP BY machine_id ORDER BY n DESC, m LIMIT {MAX_HW_MACHINES}"
            ))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let mut machines = Vec::with_capacity(rows.len());
            for r in &rows {
                machines.push(HwMachine {
                    machine_id: r.try_get("m")?,
                    count: r.try_get("n")?,
                    classes: r.try_get("c")?,
                    last_seen: r.try_get("hi")?,
                });
            }

            let rows = sqlx::query(&format!(
                "SELECT {WEEK_OF} AS w, COUNT(*) AS n, COUNT(DISTINCT machine_id) AS m \
                 FROM records WHERE ts_reception >= $1 AND classification = $2 \
                 GROUP BY 1 ORDER BY 1"
            ))
            .bind(since)
            .bind(THERMAL)
            .fetch_all(&self.pool)
            .await?;
            let mut thermal_weekly = Vec::with_capacity(rows.len());
            for r in &rows {
                thermal_weekly.push(ThermalWeek {
                    week: week(r.try_get("w")?),
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
