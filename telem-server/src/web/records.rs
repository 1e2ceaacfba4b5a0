//! `/records`: the records, newest first, in keyset pages, filtered as the query API filters;
//! `/records/poll` counts the records newer than the page's newest (`after_id`, a filter of the
//! query API; the page's script asks it).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::auth::Session;
use super::layout::{render, time, Layout};
use super::{error_page, store_error_page, FilterQuery, Web};
use crate::store::schema::unix_now;
use crate::store::{CountBy, StoredRecord};

/// Records per page, unless `limit` says otherwise (at most [`MAX_PAGE`]).
pub const PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// One table row.
pub struct Row {
    pub id: i64,
    pub received: String,
    pub classification: String,
    pub severity: i64,
    pub build: String,
    pub machine_id: String,
    pub system_name: String,
    pub crash: String,
}

impl From<&StoredRecord> for Row {
    fn from(s: &StoredRecord) -> Row {
        let r = &s.record;
        Row {
            id: s.id,
            received: time(r.ts_reception),
            classification: r.classification.clone(),
            severity: r.severity,
            build: r.build.clone(),
            machine_id: r.machine_id.clone(),
            system_name: r.system_name.clone(),
            crash: r
                .crash
                .as_ref()
                .map(|c| format!("{} ({})", c.function, c.module))
                .unwrap_or_default(),
        }
    }
}

/// A filter input of the form: its parameter name, label and current value.
pub struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub hint: &'static str,
    /// The value read for people (a time as UTC), or empty.
    pub note: String,
}

/// The filter parameters the form offers (every one the query API reads but the paging ones).
const FIELDS: &[(&str, &str, &str)] = &[
    ("classification", "Classification", "* matches any text"),
    ("severity", "Severity", "1 to 4"),
    ("build", "Build", ""),
    ("system_name", "System", ""),
    ("platform", "Platform", "host type"),
    ("machine_id", "Machine id", ""),
    ("payload", "Payload contains", ""),
    ("not_payload", "Payload lacks", ""),
    ("payload_regex", "Payload matches", "regular expression"),
    (
        "not_payload_regex",
        "Payload does not match",
        "regular expression",
    ),
    ("since", "Received since", "unix seconds"),
    ("until", "Received before", "unix seconds"),
    ("crash_function", "Crash function", ""),
    ("crash_module", "Crash module", ""),
];

#[derive(Template)]
#[template(path = "records.html")]
struct RecordsPage {
    layout: Layout,
    fields: Vec<Field>,
    rows: Vec<Row>,
    /// The next (older) page, when there is one.
    next: Option<String>,
    /// The poll URL for records newer than the first row (first page only).
    poll: Option<String>,
    /// This view from its newest record, to show the new ones.
    fresh: String,
    export: String,
    filtered: bool,
    ranges: Vec<(&'static str, String)>,
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match FilterQuery::read(raw.as_deref(), &[]) {
        Ok(q) => q,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    let limit = q.filter.limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("limit must be between 1 and {MAX_PAGE}"),
        );
    }
    // One more than shown tells whether an older page exists.
    let mut rows = match web.app.store.list(&q.filter, limit + 1).await {
        Ok(rows) => rows,
        Err(e) => return store_error_page(e),
    };
    let more = rows.len() as i64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some(format!(
            "/records?{}",
            q.with(&["before_id"], &[("before_id", last.id.to_string())])
        )),
        _ => None,
    };
    let newest = rows.first().map_or(0, |r| r.id);
    let poll = q.filter.before_id.is_none().then(|| {
        format!(
            "/records/poll?{}",
            q.with(
                &["before_id", "after_id", "limit"],
                &[("after_id", newest.to_string())],
            )
        )
    });
    let fields = FIELDS
        .iter()
        .map(|(name, label, hint)| {
            let value = q.get(name).to_string();
            let note = match (*name, value.parse::<i64>()) {
                ("since" | "until", Ok(t)) => time(t),
                _ => String::new(),
            };
            Field {
                name,
                label,
                value,
                hint,
                note,
            }
        })
        .collect();
    // Quick time ranges: the same filter received in the last hour, day, week, month.
    let now = unix_now();
    let ranges = [
        ("last hour", 3600),
        ("last day", 86_400),
        ("last 7 days", 7 * 86_400),
        ("last 30 days", 30 * 86_400),
    ]
    .iter()
    .map(|(label, secs)| {
        (
            *label,
            format!(
                "/records?{}",
                q.with(
                    &["since", "until", "before_id"],
                    &[("since", (now - secs).to_string())]
                )
            ),
        )
    })
    .collect();
    let filtered = q
        .pairs
        .iter()
        .any(|(k, _)| k != "before_id" && k != "limit");
    let page = RecordsPage {
        layout: Layout::page("Records", "records", &session),
        fields,
        rows: rows.iter().map(Row::from).collect(),
        next,
        poll,
        fresh: format!("/records?{}", q.with(&["before_id"], &[])),
        export: format!(
            "/api/v1/export.csv?{}",
            q.with(&["before_id", "limit"], &[])
        ),
        filtered,
        ranges,
    };
    render(&page)
}

pub(super) async fn poll(
    State(web): State<Web>,
    _session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, Json(json!({ "message": m }))).into_response();
    let q = match FilterQuery::read(raw.as_deref(), &[]) {
        Ok(q) => q,
        Err(m) => return bad(&m),
    };
    let mut f = q.filter;
    let Some(after) = f.after_id else {
        return bad("after_id is required");
    };
    f.before_id = None;
    f.limit = None;
    // A count over the records above `after` (an index range), not the rows themselves.
    let count: i64 = match web.app.store.counts(CountBy::Severity, &f).await {
        Ok(c) => c.iter().map(|c| c.count).sum(),
        Err(crate::store::StoreError::BadFilter(m)) => return bad(&m),
        Err(e) => {
            tracing::warn!(error = %e, "poll failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "message": "storage unavailable" })),
            )
                .into_response();
        }
    };
    // The newest of them, for the next poll.
    let newest = if count > 0 {
        match web.app.store.list(&f, 1).await {
            Ok(rows) => rows.first().map_or(after, |r| r.id.max(after)),
            Err(e) => return store_error_page(e),
        }
    } else {
        after
    };
    Json(json!({ "count": count, "newest_id": newest })).into_response()
}
