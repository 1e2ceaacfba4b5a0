//! Crash groups over time and what people said about them: the top crashers of a window
//! against the window before it, one group's detail, hidden groups, comments, and the stored
//! skip-list edits.

use serde::Serialize;

use super::{Count, Filter, Store, StoreError};
use crate::crash::{effective_entries, SkipEdit, SkipList};

/// Longest comment, in bytes.
pub const MAX_COMMENT: usize = 4096;

/// Most groups the top crashers keep in memory while ranking (one window's distinct groups).
pub const MAX_WINDOW_GROUPS: usize = 100_000;

/// One group of the top crashers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopCrasher {
    pub function: String,
    pub module: String,
    /// Records in the window.
    pub count: i64,
    /// Records in the window before it, of the same length.
    pub previous: i64,
    /// `count` over all crash records in the window (hidden groups included), 0–1.
    pub share: f64,
    /// Distinct machines in the window.
    pub machines: i64,
    /// Reception times of the group's oldest and newest record, over all stored records.
    pub first_seen: i64,
    pub last_seen: i64,
    /// Records per bucket over both windows, oldest first (the sparkline).
    pub trend: Vec<i64>,
    /// `new` (none in the previous window), `rising`, `falling` or `steady`.
    pub change: &'static str,
    pub hidden: bool,
}

/// The top crashers of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopCrashers {
    pub window_days: i64,
    /// Length of one trend bucket: an hour for a one-day window, else a day.
    pub bucket_seconds: i64,
    /// Start of the previous window (the first trend bucket), unix seconds.
    pub since: i64,
    /// End of the window (exclusive): the end of the hour (one-day window) or of the UTC day
    /// (longer ones) of the time asked for, so every bucket is whole.
    pub until: i64,
    /// Crash records in the window and in the previous one.
    pub total: i64,
    pub previous_total: i64,
    /// Groups with records in the window and left out because hidden.
    pub hidden_groups: i64,
    pub groups: Vec<TopCrasher>,
}

/// A comment on a crash group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub id: i64,
    /// `web` or `api`: where it was written.
    pub author: String,
    pub created_at: i64,
    pub text: String,
}

/// Records of one machine in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineCount {
    pub machine_id: String,
    pub count: i64,
    pub last_seen: i64,
}

/// One crash group in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDetail {
    pub function: String,
    pub module: String,
    pub hidden: bool,
    /// Records and distinct machines, over all stored records.
    pub count: i64,
    pub machines_total: i64,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Per UTC day (`YYYY-MM-DD`) over the last `days` days, days without records left out.
    pub days: i64,
    pub per_day: Vec<Count>,
    pub per_build: Vec<Count>,
    pub per_system: Vec<Count>,
    /// The machines with most records, at most [`MAX_MACHINES`].
    pub machines: Vec<MachineCount>,
    pub comments: Vec<Comment>,
}

/// Most machines a group detail lists.
pub const MAX_MACHINES: i64 = 200;

/// `new`, `rising`, `falling` or `steady`: this window against the previous one.
pub fn change(count: i64, previous: i64) -> &'static str {
    if previous == 0 && count > 0 {
        "new"
    } else if count > previous {
        "rising"
    } else if count < previous {
        "falling"
    } else {
        "steady"
    }
}

impl Store {
    /// Hides or shows the group (`function`, `module`) in the top crashers.
    pub async fn set_hidden(
        &self,
        function: &str,
        module: &str,
        hidden: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        dispatch_groups!(self, s => s.set_hidden(function, module, hidden, now).await)
    }

    /// The hidden groups.
    pub async fn hidden_groups(&self) -> Result<Vec<(String, String)>, StoreError> {
        dispatch_groups!(self, s => s.hidden_groups().await)
    }

    /// Adds a comment to a group.
    pub async fn add_comment(
        &self,
        function: &str,
        module: &str,
        author: &str,
        text: &str,
        now: i64,
    ) -> Result<Comment, StoreError> {
        if text.len() > MAX_COMMENT {
            return Err(StoreError::BadFilter(format!(
                "a comment has at most {MAX_COMMENT} bytes"
            )));
        }
        dispatch_groups!(self, s => s.add_comment(function, module, author, text, now).await)
    }

    /// The comments on a group, oldest first.
    pub async fn comments(&self, function: &str, module: &str) -> Result<Vec<Comment>, StoreError> {
        dispatch_groups!(self, s => s.comments(function, module).await)
    }

    /// The stored skip-list edits, by entry.
    pub async fn skip_edits(&self) -> Result<Vec<SkipEdit>, StoreError> {
        dispatch_groups!(self, s => s.skip_edits().await)
    }

    /// Records that `entry` is added to (or removed from) the skip list.
    pub async fn edit_skip(&self, entry: &str, added: bool, now: i64) -> Result<(), StoreError> {
        dispatch_groups!(self, s => s.edit_skip(entry, added, now).await)
    }

    /// The skip list in force: `configured` with the stored edits.
    pub async fn effective_skip(&self, configured: &[String]) -> Result<SkipList, StoreError> {
        let entries = effective_entries(configured, &self.skip_edits().await?);
        Ok(SkipList::new(entries.iter().map(String::as_str)))
    }

    /// Forgets every skip-list edit: the configured list is in force again.
    pub async fn reset_skip(&self) -> Result<(), StoreError> {
        dispatch_groups!(self, s => s.reset_skip().await)
    }

    /// The top crashers among the records `f` selects, in the `window_days` days before `now`,
    /// against the same length before that; at most `limit` groups, hidden ones only with
    /// `include_hidden`.
    pub async fn top_crashers(
        &self,
        f: &Filter,
        window_days: i64,
        now: i64,
        include_hidden: bool,
        limit: usize,
    ) -> Result<TopCrashers, StoreError> {
        if !(1..=366).contains(&window_days) {
            return Err(StoreError::BadFilter(
                "window must be between 1 and 366 days".into(),
            ));
        }
        let bucket = if window_days == 1 { 3600 } else { 86_400 };
        let window = window_days * 86_400;
        // Windows end at the end of `now`'s bucket, so every bucket is whole: whole days are
        // what the crash groups per day hold.
        let until = (now.div_euclid(bucket) + 1) * bucket;
        let since = until - 2 * window;
        let buckets = usize::try_from(2 * window / bucket).unwrap_or(0);
        let half = buckets / 2;
        // Without a filter the crash summaries know counts per day, machines and first and
        // last receptions.
        let summed = super::crash_summary::unfiltered(f);
        let raw = if summed && bucket == 86_400 {
            dispatch_groups!(self, s => s.summary_day_counts_of_groups(
                since / 86_400, until / 86_400).await)?
        } else {
            dispatch_groups!(self, s => s.window_counts(f, since, until, bucket).await)?
        };
        let machines = if summed {
            dispatch_groups!(self, s => s.summary_window_machines(until - window, until).await)?
        } else {
            None
        };
        let machines = match machines {
            Some(m) => m,
            None => dispatch_groups!(self, s => s.window_machines(f, until - window, until).await)?,
        };
        let seen = if summed {
            dispatch_groups!(self, s => s.summary_seen().await)?
        } else {
            dispatch_groups!(self, s => s.seen(f).await)?
        };
        let hidden: std::collections::HashSet<(String, String)> =
            self.hidden_groups().await?.into_iter().collect();

        let mut by_group: std::collections::BTreeMap<(String, String), Vec<i64>> =
            std::collections::BTreeMap::new();
        for (key, k, n) in raw {
            let trend = by_group.entry(key).or_insert_with(|| vec![0; buckets]);
            if let Some(slot) = usize::try_from(k).ok().and_then(|k| trend.get_mut(k)) {
                *slot += n;
            }
        }
        let mut out = TopCrashers {
            window_days,
            bucket_seconds: bucket,
            since,
            until,
            total: 0,
            previous_total: 0,
            hidden_groups: 0,
            groups: Vec::new(),
        };
        for ((function, module), trend) in by_group {
            let count: i64 = trend[half..].iter().sum();
            let previous: i64 = trend[..half].iter().sum();
            out.total += count;
            out.previous_total += previous;
            if count == 0 {
                continue;
            }
            let key = (function, module);
            let is_hidden = hidden.contains(&key);
            if is_hidden {
                out.hidden_groups += 1;
                if !include_hidden {
                    continue;
                }
            }
            let (first_seen, last_seen) = seen.get(&key).copied().unwrap_or((0, 0));
            let (function, module) = key;
            let machines = machines
                .get(&(function.clone(), module.clone()))
                .copied()
                .unwrap_or(0);
            out.groups.push(TopCrasher {
                change: change(count, previous),
                function,
                module,
                count,
                previous,
                share: 0.0,
                machines,
                first_seen,
                last_seen,
                trend,
                hidden: is_hidden,
            });
        }
        let total = out.total.max(1) as f64;
        for g in &mut out.groups {
            g.share = g.count as f64 / total;
        }
        // Largest first; ties in byte order whatever the database's collation.
        out.groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.function.cmp(&b.function))
                .then_with(|| a.module.cmp(&b.module))
        });
        out.groups.truncate(limit);
        Ok(out)
    }

    /// One group in detail, per day over the `days` days before `now`.
    pub async fn group_detail(
        &self,
        function: &str,
        module: &str,
        days: i64,
        now: i64,
    ) -> Result<GroupDetail, StoreError> {
        // Per day from the crash groups per day, per build from the builds' totals.
        let (per_day, per_build) = dispatch_groups!(self, s => s.summary_group_days(
            function, module, now - days * 86_400).await)?;
        let (count, machines_total, first_seen, last_seen, per_system, machines) =
            dispatch_groups!(self, s => s.group_facts(function, module).await)?;
        let hidden = self
            .hidden_groups()
            .await?
            .iter()
            .any(|(f, m)| f == function && m == module);
        Ok(GroupDetail {
            function: function.to_string(),
            module: module.to_string(),
            hidden,
            count,
            machines_total,
            first_seen,
            last_seen,
            days,
            per_day,
            per_build,
            per_system,
            machines,
            comments: self.comments(function, module).await?,
        })
    }
}

macro_rules! dispatch_groups {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}
use dispatch_groups;

/// Group counts keyed by signature.
pub(crate) type ByGroup<T> = std::collections::HashMap<(String, String), T>;

/// The engine methods behind [`Store`]'s group methods (the same statements on both engines).
macro_rules! group_methods {
    ($dialect:expr) => {
        pub async fn set_hidden(
            &self,
            function: &str,
            module: &str,
            hidden: bool,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO crash_group_flags (crash_function, crash_module, hidden, changed_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (crash_function, crash_module) \
                 DO UPDATE SET hidden = excluded.hidden, changed_at = excluded.changed_at",
            )
            .bind(function)
            .bind(module)
            .bind(hidden)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        pub async fn hidden_groups(
            &self,
        ) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let rows = sqlx::query(
                "SELECT crash_function, crash_module FROM crash_group_flags WHERE hidden",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push((r.try_get("crash_function")?, r.try_get("crash_module")?));
            }
            Ok(out)
        }

        pub async fn add_comment(
            &self,
            function: &str,
            module: &str,
            author: &str,
            text: &str,
            now: i64,
        ) -> Result<$crate::store::groups::Comment, $crate::store::StoreError> {
            use sqlx::Row as _;
            let row = sqlx::query(
                "INSERT INTO crash_group_comments (crash_function, crash_module, author, \
                 created_at, body) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(function)
            .bind(module)
            .bind(author)
            .bind(now)
            .bind(text)
            .fetch_one(&self.pool)
            .await?;
            Ok($crate::store::groups::Comment {
                id: row.try_get("id")?,
                author: author.to_string(),
                created_at: now,
                text: text.to_string(),
            })
        }

        pub async fn comments(
            &self,
            function: &str,
            module: &str,
        ) -> Result<Vec<$crate::store::groups::Comment>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let rows = sqlx::query(
                "SELECT id, author, created_at, body FROM crash_group_comments \
                 WHERE crash_function = $1 AND crash_module = $2 ORDER BY id LIMIT 1000",
            )
            .bind(function)
            .bind(module)
            .fetch_all(&self.pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push($crate::store::groups::Comment {
                    id: r.try_get("id")?,
                    author: r.try_get("author")?,
                    created_at: r.try_get("created_at")?,
                    text: r.try_get("body")?,
                });
            }
            Ok(out)
        }

        pub async fn skip_edits(
            &self,
        ) -> Result<Vec<$crate::crash::SkipEdit>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let rows = sqlx::query("SELECT entry, added FROM skip_edits ORDER BY changed_at, entry")
                .fetch_all(&self.pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push($crate::crash::SkipEdit {
                    entry: r.try_get("entry")?,
                    added: r.try_get("added")?,
                });
            }
            Ok(out)
        }

        pub async fn edit_skip(
            &self,
            entry: &str,
            added: bool,
            now: i64,
        ) -> Result<(), $crate::store::StoreError> {
            sqlx::query(
                "INSERT INTO skip_edits (entry, added, changed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (entry) DO UPDATE SET added = excluded.added, \
                 changed_at = excluded.changed_at",
            )
            .bind(entry)
            .bind(added)
            .bind(now)
            .execute(&self.pool)
            .await?;
            Ok(())
        }

        pub async fn reset_skip(&self) -> Result<(), $crate::store::StoreError> {
            sqlx::query("DELETE FROM skip_edits")
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        /// Crash records per (group, bucket) in `[since, until)`, bucket `(t - since) / bucket`.
        pub(crate) async fn window_counts(
            &self,
            f: &$crate::store::Filter,
            since: i64,
            until: i64,
            bucket: i64,
        ) -> Result<Vec<((String, String), i64, i64)>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let w = f.where_clause($dialect, false)?;
            let n = w.params.len();
            let cond = $crate::store::groups::crash_cond(&w.sql, n);
            let sql = format!(
                "SELECT crash_function AS f, crash_module AS m, \
                 (ts_reception - ${a}) / ${c} AS k, COUNT(*) AS n FROM records {cond} \
                 GROUP BY 1, 2, 3 LIMIT {}",
                $crate::store::groups::MAX_WINDOW_GROUPS,
                a = n + 1,
                c = n + 3,
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params)
                .bind(since)
                .bind(until)
                .bind(bucket);
            let mut out = Vec::new();
            for r in &q.fetch_all(&self.pool).await? {
                out.push(((r.try_get("f")?, r.try_get("m")?), r.try_get("k")?, r.try_get("n")?));
            }
            Ok(out)
        }

        /// Distinct machines per group in `[since, until)`.
        pub(crate) async fn window_machines(
            &self,
            f: &$crate::store::Filter,
            since: i64,
            until: i64,
        ) -> Result<$crate::store::groups::ByGroup<i64>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let w = f.where_clause($dialect, false)?;
            let n = w.params.len();
            let cond = $crate::store::groups::crash_cond(&w.sql, n);
            let sql = format!(
                "SELECT crash_function AS f, crash_module AS m, \
                 COUNT(DISTINCT machine_id) AS n FROM records {cond} \
                 GROUP BY crash_function, crash_module"
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params)
                .bind(since)
                .bind(until);
            let mut out = $crate::store::groups::ByGroup::new();
            for r in &q.fetch_all(&self.pool).await? {
                out.insert((r.try_get("f")?, r.try_get("m")?), r.try_get("n")?);
            }
            Ok(out)
        }

        /// First and last reception per group, over every record `f` selects.
        pub(crate) async fn seen(
            &self,
            f: &$crate::store::Filter,
        ) -> Result<$crate::store::groups::ByGroup<(i64, i64)>, $crate::store::StoreError> {
            use sqlx::Row as _;
            let w = f.where_clause($dialect, false)?;
            let cond = if w.sql.is_empty() {
                "WHERE crash_function IS NOT NULL".to_string()
            } else {
                format!("{} AND crash_function IS NOT NULL", w.sql)
            };
            let sql = format!(
                "SELECT crash_function AS f, crash_module AS m, MIN(ts_reception) AS lo, \
                 MAX(ts_reception) AS hi FROM records {cond} GROUP BY crash_function, crash_module"
            );
            let q = $crate::store::bind_params!(sqlx::query(&sql), &w.params);
            let mut out = $crate::store::groups::ByGroup::new();
            for r in &q.fetch_all(&self.pool).await? {
                out.insert(
                    (r.try_get("f")?, r.try_get("m")?),
                    (r.try_get("lo")?, r.try_get("hi")?),
                );
            }
            Ok(out)
        }

        /// Records, machines, first and last reception, per system and the top machines of one
        /// group.
        #[allow(clippy::type_complexity)]
        pub(crate) async fn group_facts(
            &self,
            function: &str,
            module: &str,
        ) -> Result<
            (
                i64,
                i64,
                Option<i64>,
                Option<i64>,
                Vec<$crate::store::Count>,
                Vec<$crate::store::groups::MachineCount>,
            ),
            $crate::store::StoreError,
        > {
            use sqlx::Row as _;
            const GROUP: &str = "crash_function = $1 AND crash_module = $2";
            // Totals from the group's builds and distinct machines (a few rows), the top
            // machines from its machine summary through the index by count, the systems from
            // the rows, through the covering group index.
            let r = sqlx::query(&format!(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n, \
                 MIN(first_seen) AS lo, MAX(last_seen) AS hi FROM crash_builds WHERE {GROUP}"
            ))
            .bind(function)
            .bind(module)
            .fetch_one(&self.pool)
            .await?;
            let (n, lo, hi) = (r.try_get("n")?, r.try_get("lo")?, r.try_get("hi")?);
            let machines: i64 = sqlx::query(&format!(
                "SELECT CAST(COALESCE(SUM(machines), 0) AS BIGINT) AS n \
                 FROM crash_group_machines WHERE {GROUP}"
            ))
            .bind(function)
            .bind(module)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
            let rows = sqlx::query(&format!(
                "SELECT system_name AS k, COUNT(*) AS n FROM records WHERE {GROUP} \
                 GROUP BY system_name ORDER BY n DESC, k LIMIT {}",
                $crate::store::filter::MAX_GROUPS
            ))
            .bind(function)
            .bind(module)
            .fetch_all(&self.pool)
            .await?;
            let mut systems = Vec::with_capacity(rows.len());
            for r in &rows {
                systems.push($crate::store::Count {
                    key: r.try_get("k")?,
                    count: r.try_get("n")?,
                });
            }
            let rows = sqlx::query(&format!(
                "SELECT machine_id AS k, n, last_seen AS hi FROM crash_machines \
                 WHERE {GROUP} ORDER BY n DESC, k LIMIT {}",
                $crate::store::groups::MAX_MACHINES
            ))
            .bind(function)
            .bind(module)
            .fetch_all(&self.pool)
            .await?;
            let mut top = Vec::with_capacity(rows.len());
            for r in &rows {
                top.push($crate::store::groups::MachineCount {
                    machine_id: r.try_get("k")?,
                    count: r.try_get("n")?,
                    last_seen: r.try_get("hi")?,
                });
            }
            Ok((n, machines, lo, hi, systems, top))
        }
    };
}
pub(crate) use group_methods;

/// `where_sql` (the filter's clause, `n` parameters) and a crash signature and reception in
/// `[$n+1, $n+2)`.
pub(crate) fn crash_cond(where_sql: &str, n: usize) -> String {
    let own = format!(
        "crash_function IS NOT NULL AND ts_reception >= ${} AND ts_reception < ${}",
        n + 1,
        n + 2
    );
    if where_sql.is_empty() {
        format!("WHERE {own}")
    } else {
        format!("{where_sql} AND {own}")
    }
}
