//! Query filters and the SQL they become, per engine.

use serde::Deserialize;

use super::StoreError;

/// Most groups a count answers.
pub const MAX_GROUPS: usize = 10_000;

/// Which engine's SQL to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// A `WHERE …` clause (empty when nothing filters) with its parameters, numbered from `$1`.
#[derive(Debug, Clone, Default)]
pub struct Where {
    pub sql: String,
    pub params: Vec<Param>,
}

/// Record filters, as query-string parameters of the query API. All given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Exact classification, or a pattern where `*` matches any text (`org.clearlinux/crash/*`).
    pub classification: Option<String>,
    pub severity: Option<i64>,
    pub machine_id: Option<String>,
    pub build: Option<String>,
    pub system_name: Option<String>,
    /// Host type (the original's "platform").
    pub platform: Option<String>,
    pub external: Option<bool>,
    /// The payload contains this text.
    pub payload: Option<String>,
    /// The payload does not contain this text.
    pub not_payload: Option<String>,
    /// The payload matches this regular expression.
    pub payload_regex: Option<String>,
    /// The payload does not match this regular expression.
    pub not_payload_regex: Option<String>,
    /// Received at or after this time (unix seconds).
    pub since: Option<i64>,
    /// Received before this time (unix seconds).
    pub until: Option<i64>,
    /// The crash signature's function (exact).
    pub crash_function: Option<String>,
    /// The crash signature's module (exact).
    pub crash_module: Option<String>,
    /// Only records with a larger id (newer than a record already seen: what the records page
    /// polls for).
    pub after_id: Option<i64>,
    /// Keyset cursor: only records with a smaller id (the `next` of the previous page).
    pub before_id: Option<i64>,
    /// Page size for listings.
    pub limit: Option<i64>,
}

/// How counts are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CountBy {
    Classification,
    Build,
    Platform,
    Severity,
    /// UTC day of reception, `YYYY-MM-DD`.
    Day,
}

impl CountBy {
    pub(crate) fn key_sql(self, d: Dialect) -> &'static str {
        match (self, d) {
            (CountBy::Classification, _) => "classification",
            (CountBy::Build, _) => "build",
            (CountBy::Platform, _) => "host_type",
            (CountBy::Severity, _) => "CAST(severity AS TEXT)",
            (CountBy::Day, Dialect::Sqlite) => "strftime('%Y-%m-%d', ts_reception, 'unixepoch')",
            (CountBy::Day, Dialect::Postgres) => {
                "to_char(to_timestamp(ts_reception) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        }
    }

    /// Days in calendar order, other groups largest first.
    pub(crate) fn order_sql(self) -> &'static str {
        match self {
            CountBy::Day => "k",
            // Severity 1 to 4 in order: one digit each, so text order is number order.
            CountBy::Severity => "k",
            _ => "n DESC, k",
        }
    }
}

impl Filter {
    /// The clause for this filter; `cursor` adds `before_id`.
    pub(crate) fn where_clause(&self, d: Dialect, cursor: bool) -> Result<Where, StoreError> {
        let mut w = Where::default();
        let mut conds: Vec<String> = Vec::new();
        let mut add = |w: &mut Where, sql: &dyn Fn(usize) -> String, p: Param| {
            w.params.push(p);
            conds.push(sql(w.params.len()));
        };
        if let Some(c) = &self.classification {
            let (sql, p) = classification_match(d, c);
            add(&mut w, &|n| sql.replace("$?", &format!("${n}")), p);
        }
        for (col, v) in [
            ("machine_id", &self.machine_id),
            ("build", &self.build),
            ("system_name", &self.system_name),
            ("host_type", &self.platform),
            ("crash_function", &self.crash_function),
            ("crash_module", &self.crash_module),
        ] {
            if let Some(v) = v {
                add(&mut w, &|n| format!("{col} = ${n}"), Param::Text(v.clone()));
            }
        }
        if let Some(s) = self.severity {
            add(&mut w, &|n| format!("severity = ${n}"), Param::Int(s));
        }
        if let Some(e) = self.external {
            add(&mut w, &|n| format!("external = ${n}"), Param::Bool(e));
        }
        let contains = |n: usize| match d {
            Dialect::Sqlite => format!("instr(payload, ${n}) > 0"),
            Dialect::Postgres => format!("strpos(payload, ${n}) > 0"),
        };
        if let Some(p) = &self.payload {
            add(&mut w, &contains, Param::Text(p.clone()));
        }
        if let Some(p) = &self.not_payload {
            add(
                &mut w,
                &|n| format!("NOT ({})", contains(n)),
                Param::Text(p.clone()),
            );
        }
        let matches = |n: usize| match d {
            Dialect::Sqlite => format!("payload REGEXP ${n}"),
            Dialect::Postgres => format!("payload ~ ${n}"),
        };
        for (negate, re) in [
            (false, &self.payload_regex),
            (true, &self.not_payload_regex),
        ] {
            if let Some(re) = re {
                regex::Regex::new(re).map_err(|e| {
                    StoreError::BadFilter(format!("invalid regular expression: {e}"))
                })?;
                let m = |n| {
                    if negate {
                        format!("NOT ({})", matches(n))
                    } else {
                        matches(n)
                    }
                };
                add(&mut w, &m, Param::Text(re.clone()));
            }
        }
        if let Some(t) = self.since {
            add(&mut w, &|n| format!("ts_reception >= ${n}"), Param::Int(t));
        }
        if let Some(t) = self.until {
            add(&mut w, &|n| format!("ts_reception < ${n}"), Param::Int(t));
        }
        if let Some(id) = self.after_id {
            add(&mut w, &|n| format!("id > ${n}"), Param::Int(id));
        }
        if cursor {
            if let Some(id) = self.before_id {
                add(&mut w, &|n| format!("id < ${n}"), Param::Int(id));
            }
        }
        if !conds.is_empty() {
            w.sql = format!("WHERE {}", conds.join(" AND "));
        }
        Ok(w)
    }
}

/// SQL testing `classification` against `pattern` (exact, or `*` for any text), with its one
/// parameter written `$?` for the caller to number.
pub(crate) fn classification_match(d: Dialect, pattern: &str) -> (String, Param) {
    if pattern.contains('*') {
        match d {
            Dialect::Sqlite => (
                "classification GLOB $?".to_string(),
                Param::Text(glob_pattern(pattern)),
            ),
            Dialect::Postgres => (
                "classification LIKE $? ESCAPE '\\'".to_string(),
                Param::Text(like_pattern(pattern)),
            ),
        }
    } else {
        (
            "classification = $?".to_string(),
            Param::Text(pattern.to_string()),
        )
    }
}

/// `*` → any text; SQLite's other GLOB metacharacters (`?`, `[`) match only themselves.
fn glob_pattern(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for ch in c.chars() {
        match ch {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            ch => out.push(ch),
        }
    }
    out
}

/// `*` → `%`; LIKE's own `%`, `_` and the escape `\` match only themselves.
fn like_pattern(c: &str) -> String {
    let mut out = String::with_capacity(c.len());
    for ch in c.chars() {
        match ch {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ch => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn patterns_escape_their_own_metacharacters() {
        assert_eq!(glob_pattern("a?b[c]*"), "a[?]b[[]c]*");
        assert_eq!(like_pattern("a_b%c\\*"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn parameters_are_numbered_in_order() {
        let f = Filter {
            classification: Some("org/*/x".into()),
            severity: Some(2),
            before_id: Some(10),
            ..Filter::default()
        };
        let w = f.where_clause(Dialect::Postgres, true).unwrap();
        assert_eq!(
            w.sql,
            "WHERE classification LIKE $1 ESCAPE '\\' AND severity = $2 AND id < $3"
        );
        assert_eq!(w.params.len(), 3);
        let w = f.where_clause(Dialect::Sqlite, false).unwrap();
        assert_eq!(w.sql, "WHERE classification GLOB $1 AND severity = $2");
    }

    #[test]
    fn after_id_filters_counts_too() {
        let f = Filter {
            after_id: Some(7),
            before_id: Some(10),
            ..Filter::default()
        };
        let w = f.where_clause(Dialect::Sqlite, false).unwrap();
        assert_eq!(w.sql, "WHERE id > $1");
        let w = f.where_clause(Dialect::Sqlite, true).unwrap();
        assert_eq!(w.sql, "WHERE id > $1 AND id < $2");
    }

    #[test]
    fn a_bad_regex_is_a_bad_filter() {
        let f = Filter {
            payload_regex: Some("(".into()),
            ..Filter::default()
        };
        assert!(matches!(
            f.where_clause(Dialect::Sqlite, true),
            Err(StoreError::BadFilter(_))
        ));
    }
}
