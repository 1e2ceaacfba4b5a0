//! `/`: records per day by classification (stacked), per severity, and the top
//! classifications, builds and platforms, over the last `days` days (30 unless given), for the
//! records the query API's filters select.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Session;
use super::chart::{bar_chart, Bars, Series, Svg, COLOURS};
use super::layout::{render, time, Layout};
use super::{error_page, query_string, store_error_page, FilterQuery, Web};
use crate::store::schema::unix_now;
use crate::store::{Count, CountBy, DayCount};

/// Days shown unless `days` says otherwise, and the most allowed.
pub const DEFAULT_DAYS: i64 = 30;
pub const MAX_DAYS: i64 = 366;

/// Rows of each top list.
pub const TOP: usize = 10;

/// Classifications with their own colour in the chart; the rest are "other".
const CHART_SERIES: usize = COLOURS - 1;

/// A top-list row: the value, its count and the records view of it.
pub struct Top {
    pub key: String,
    pub count: i64,
    pub href: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    days: i64,
    chart: Svg,
    per_day: Vec<DayCount>,
    per_day_json: String,
    severity: Vec<Top>,
    classifications: Vec<Top>,
    builds: Vec<Top>,
    platforms: Vec<Top>,
}

/// The days from `since` to `now` as `YYYY-MM-DD`, oldest first.
fn day_labels(since: i64, now: i64) -> Vec<String> {
    let first = since.div_euclid(86_400);
    let last = now.div_euclid(86_400);
    (first..=last)
        .map(|d| time(d * 86_400).chars().take(10).collect())
        .collect()
}

/// The chart's series: the `CHART_SERIES` largest keys, then "other" for the rest.
fn stacked_series(labels: &[String], counts: &[DayCount]) -> Vec<Series> {
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for c in counts {
        *totals.entry(c.key.as_str()).or_default() += c.count;
    }
    let mut keys: Vec<(&str, i64)> = totals.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let named: Vec<&str> = keys.iter().take(CHART_SERIES).map(|k| k.0).collect();
    let day_index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    let mut series: Vec<Series> = named
        .iter()
        .map(|k| Series {
            name: k.to_string(),
            values: vec![0; labels.len()],
        })
        .collect();
    let mut other = Series {
        name: "other".to_string(),
        values: vec![0; labels.len()],
    };
    for c in counts {
        let Some(&i) = day_index.get(c.day.as_str()) else {
            continue;
        };
        let target = match named.iter().position(|k| *k == c.key) {
            Some(k) => &mut series[k],
            None => &mut other,
        };
        if let Some(v) = target.values.get_mut(i) {
            *v += c.count;
        }
    }
    if other.values.iter().any(|v| *v > 0) {
        series.push(other);
    }
    series
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match FilterQuery::read(raw.as_deref(), &["days"]) {
        Ok(q) => q,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    let days = match q.own("days").map(str::parse::<i64>) {
        None => DEFAULT_DAYS,
        Some(Ok(d)) if (1..=MAX_DAYS).contains(&d) => d,
        Some(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &format!("days must be between 1 and {MAX_DAYS}"),
            )
        }
    };
    let now = unix_now();
    let mut f = q.filter.clone();
    // The window starts at the beginning of the UTC day `days - 1` days ago.
    let since = f
        .since
        .unwrap_or((now.div_euclid(86_400) - (days - 1)) * 86_400);
    f.since = Some(since);
    f.before_id = None;
    f.limit = None;
    let store = &web.app.store;
    // Five independent aggregates: asked at once, each on its own pooled connection.
    let (per_day, severity, classifications, builds, platforms) = tokio::join!(
        store.day_counts(CountBy::Classification, &f),
        store.counts(CountBy::Severity, &f),
        store.counts(CountBy::Classification, &f),
        store.counts(CountBy::Build, &f),
        store.counts(CountBy::Platform, &f),
    );
    let per_day = match per_day {
        Ok(c) => c,
        Err(e) => return store_error_page(e),
    };
    let mut tops = Vec::new();
    for (by, counts) in [
        (CountBy::Severity, severity),
        (CountBy::Classification, classifications),
        (CountBy::Build, builds),
        (CountBy::Platform, platforms),
    ] {
        match counts {
            Ok(c) => tops.push(top(&q, by, c)),
            Err(e) => return store_error_page(e),
        }
    }
    let labels = day_labels(since, now);
    let series = stacked_series(&labels, &per_day);
    let chart = bar_chart(
        "per-day",
        "Records per day by classification",
        &labels,
        &series,
        Bars::Stacked,
    );
    let mut tops = tops.into_iter();
    let mut next = || tops.next().unwrap_or_default();
    let page = OverviewPage {
        layout: Layout::page("Overview", "overview", &session),
        days,
        chart,
        per_day_json: format!(
            "/api/v1/counts/day?{}",
            query_string(&[("since".to_string(), since.to_string())])
        ),
        per_day,
        severity: next(),
        classifications: next(),
        builds: next(),
        platforms: next(),
    };
    render(&page)
}

/// The first [`TOP`] counts, each linked to the records it counts.
fn top(q: &FilterQuery, by: CountBy, counts: Vec<Count>) -> Vec<Top> {
    let param = match by {
        CountBy::Severity => "severity",
        CountBy::Classification => "classification",
        CountBy::Build => "build",
        CountBy::Platform => "platform",
        CountBy::Day => "",
    };
    let limit = if by == CountBy::Severity {
        usize::MAX
    } else {
        TOP
    };
    counts
        .into_iter()
        .take(limit)
        .map(|c| Top {
            href: format!(
                "/records?{}",
                q.with(&[param, "before_id", "limit"], &[(param, c.key.clone())])
            ),
            key: c.key,
            count: c.count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_run_from_the_window_start_to_today() {
        let d = day_labels(86_400 * 3 + 5, 86_400 * 5 + 100);
        assert_eq!(d, ["1970-01-04", "1970-01-05", "1970-01-06"]);
    }

    #[test]
    fn small_classifications_are_folded_into_other() {
        let labels = vec!["d1".to_string(), "d2".to_string()];
        let mut counts = Vec::new();
        for k in 0..12 {
            counts.push(DayCount {
                day: "d2".into(),
                key: format!("c{k:02}"),
                count: 100 - k,
            });
        }
        counts.push(DayCount {
            day: "d1".into(),
            key: "c00".into(),
            count: 7,
        });
        let s = stacked_series(&labels, &counts);
        assert_eq!(s.len(), CHART_SERIES + 1);
        assert_eq!(s[0].name, "c00");
        assert_eq!(s[0].values, [7, 100]);
        let other = s.last().unwrap_or_else(|| unreachable!());
        assert_eq!(other.name, "other");
        // c09, c10, c11: 91 + 90 + 89.
        assert_eq!(other.values, [0, 270]);
    }
}
