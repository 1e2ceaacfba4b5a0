//! Crash groups in the query API: the top crashers of a window, one group in detail, hiding
//! and commenting a group, the skip-list edits and the background regroup.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, warn};

use crate::crash::{RegroupStatus, MAX_SKIP_ENTRY};
use crate::http::{
    bearer_ok, filter_with_limit, message, query_denied, store_error, unauthorized, AppState,
    Shared,
};
use crate::store::groups::{GroupDetail, MAX_COMMENT};
use crate::store::schema::unix_now;
use crate::store::{Filter, StoreError, StoredRecord, MAX_CRASH_GROUPS};

/// How often a server reads the stored skip-list edits again, so an edit made through another
/// instance sharing the database is applied here too.
pub const SKIP_RELOAD: Duration = Duration::from_secs(30);

/// How long `POST /api/v1/regroup` waits for the regroup before answering "running".
pub const REGROUP_WAIT: Duration = Duration::from_secs(2);

/// Sample records a group detail carries by default, and at most.
pub const DEFAULT_SAMPLES: i64 = 5;
pub const MAX_SAMPLES: i64 = 50;

/// Longest function or module name accepted in a hide or comment request.
const MAX_NAME: usize = 4096;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/crashes", get(crashes))
        .route("/api/v1/crashes/group", get(group))
        .route("/api/v1/crashes/hide", post(hide))
        .route("/api/v1/crashes/unhide", post(unhide))
        .route("/api/v1/crashes/comment", post(comment))
        .route("/api/v1/crashes/skip", get(skip_list).post(skip_edit))
        .route("/api/v1/regroup", get(regroup_status).post(regroup))
}

/// Checks the credential of a change: only the bearer token, never the pages' session cookie
/// (the pages change things through their own forms, which carry a CSRF token).
fn change_denied(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    match &st.query_token {
        Some(t) if !bearer_ok(headers, t) => Some(unauthorized()),
        _ => None,
    }
}

/// Re-reads the stored skip-list edits every [`SKIP_RELOAD`] while the server runs.
pub async fn reload_skip_edits(st: Weak<AppState>) {
    loop {
        tokio::time::sleep(SKIP_RELOAD).await;
        let Some(st) = st.upgrade() else {
            return;
        };
        match st.store.skip_edits().await {
            Ok(edits) => st.skip.set_edits(&edits),
            Err(e) => warn!(error = %e, "reading the skip-list edits failed"),
        }
    }
}

/// The query parameters of `GET /api/v1/crashes` beyond the record filters.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CrashOptions {
    /// Days of the top-crashers window; `None` for the plain ranking over all records.
    pub window: Option<i64>,
    pub include_hidden: bool,
}

/// Splits a raw query string into the crash options and the record filter.
pub fn crash_query(raw: Option<&str>) -> Result<(CrashOptions, Filter), String> {
    let mut opts = CrashOptions::default();
    let mut rest = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "window" => {
                let days = v
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (1..=366).contains(d))
                    .ok_or("window must be a number of days between 1 and 366")?;
                opts.window = Some(days);
            }
            "include_hidden" => {
                opts.include_hidden = match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err("include_hidden must be true or false".into()),
                }
            }
            _ => rest.push(pair),
        }
    }
    let uri: Uri = format!("/?{}", rest.join("&"))
        .parse()
        .map_err(|_| "bad query string".to_string())?;
    let Query(f) = Query::<Filter>::try_from_uri(&uri).map_err(|r| r.body_text())?;
    Ok((opts, f))
}

async fn crashes(
    State(st): State<Shared>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let (opts, f) = match crash_query(raw.as_deref()) {
        Ok(v) => v,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    let (f, limit) = match filter_with_limit(Ok(Query(f)), MAX_CRASH_GROUPS) {
        Ok(v) => v,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    if let Some(days) = opts.window {
        let limit = usize::try_from(limit).unwrap_or(0);
        return match st
            .store
            .top_crashers(&f, days, unix_now(), opts.include_hidden, limit)
            .await
        {
            Ok(top) => Json(top).into_response(),
            Err(e) => store_error(e),
        };
    }
    match ranked(&st, &f, limit, opts.include_hidden).await {
        Ok(groups) => Json(json!({ "groups": groups })).into_response(),
        Err(e) => store_error(e),
    }
}

/// The crash groups over all records `f` selects, hidden ones left out unless asked for.
async fn ranked(
    st: &AppState,
    f: &Filter,
    limit: i64,
    include_hidden: bool,
) -> Result<Vec<crate::store::CrashGroup>, StoreError> {
    if include_hidden {
        return st.store.crash_groups(f, limit).await;
    }
    let hidden = st.store.hidden_groups().await?;
    // Ask for as many more as there are hidden groups, so dropping them still fills the page.
    let mut groups = st
        .store
        .crash_groups(f, limit.saturating_add(hidden.len() as i64))
        .await?;
    groups.retain(|g| {
        !hidden
            .iter()
            .any(|(hf, hm)| *hf == g.function && *hm == g.module)
    });
    groups.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(groups)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    pub function: String,
    pub module: String,
    /// Days of the per-day counts (default 30).
    pub days: Option<i64>,
    /// Sample records, newest first (default [`DEFAULT_SAMPLES`]).
    pub samples: Option<i64>,
}

/// A sample record of a group, with the line of its payload that decided the signature.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub id: i64,
    pub ts_reception: i64,
    pub build: String,
    pub machine_id: String,
    pub classification: String,
    pub payload: String,
    /// Index of the deciding frame in the payload's lines, under the skip list in force.
    pub deciding_line: Option<usize>,
}

/// One group: its detail and its sample records.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    #[serde(flatten)]
    pub detail: GroupDetail,
    pub samples: Vec<Sample>,
}

/// The view of one group; `None` when nothing is known about it.
pub async fn group_view(st: &AppState, q: &GroupQuery) -> Result<Option<GroupView>, StoreError> {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(StoreError::BadFilter(
            "days must be between 1 and 366".into(),
        ));
    }
    let n = q.samples.unwrap_or(DEFAULT_SAMPLES);
    if !(0..=MAX_SAMPLES).contains(&n) {
        return Err(StoreError::BadFilter(format!(
            "samples must be between 0 and {MAX_SAMPLES}"
        )));
    }
    let detail = st
        .store
        .group_detail(&q.function, &q.module, days, unix_now())
        .await?;
    if detail.count == 0 && detail.comments.is_empty() && !detail.hidden {
        return Ok(None);
    }
    let rows = if n > 0 {
        let f = Filter {
            crash_function: Some(q.function.clone()),
            crash_module: Some(q.module.clone()),
            ..Filter::default()
        };
        st.store.list(&f, n).await?
    } else {
        Vec::new()
    };
    let skip = st.skip.list();
    let samples = rows
        .into_iter()
        .map(|StoredRecord { id, record: r }| Sample {
            id,
            ts_reception: r.ts_reception,
            deciding_line: skip.deciding_line(&r.payload),
            build: r.build,
            machine_id: r.machine_id,
            classification: r.classification,
            payload: r.payload,
        })
        .collect();
    Ok(Some(GroupView { detail, samples }))
}

async fn group(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<GroupQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return message(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    match group_view(&st, &q).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => message(StatusCode::NOT_FOUND, "no such crash group"),
        Err(e) => store_error(e),
    }
}

/// A group, as hide, unhide and comment requests name it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKey {
    pub function: String,
    pub module: String,
    /// The comment (comment requests only).
    pub text: Option<String>,
}

fn check_key(k: &GroupKey) -> Result<(), String> {
    if k.function.is_empty() || k.function.len() > MAX_NAME || k.module.len() > MAX_NAME {
        return Err(format!(
            "function must be 1 to {MAX_NAME} bytes, module at most {MAX_NAME}"
        ));
    }
    Ok(())
}

/// Checks a comment's text; the text to store.
pub fn check_comment(text: &str) -> Result<&str, String> {
    let t = text.trim();
    if t.is_empty() || t.len() > MAX_COMMENT {
        return Err(format!("a comment has 1 to {MAX_COMMENT} bytes"));
    }
    Ok(t)
}

/// The group a JSON request names, or the message of the 400 to answer.
fn json_body(b: Result<Json<GroupKey>, JsonRejection>) -> Result<GroupKey, String> {
    let Json(k) = b.map_err(|r| r.body_text())?;
    check_key(&k)?;
    Ok(k)
}

async fn set_hidden(
    st: &AppState,
    headers: &HeaderMap,
    b: Result<Json<GroupKey>, JsonRejection>,
    hidden: bool,
) -> Response {
    if let Some(r) = change_denied(st, headers) {
        return r;
    }
    let k = match json_body(b) {
        Ok(k) => k,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    match st
        .store
        .set_hidden(&k.function, &k.module, hidden, unix_now())
        .await
    {
        Ok(()) => Json(json!({ "function": k.function, "module": k.module, "hidden": hidden }))
            .into_response(),
        Err(e) => store_error(e),
    }
}

async fn hide(
    State(st): State<Shared>,
    headers: HeaderMap,
    b: Result<Json<GroupKey>, JsonRejection>,
) -> Response {
    set_hidden(&st, &headers, b, true).await
}

async fn unhide(
    State(st): State<Shared>,
    headers: HeaderMap,
    b: Result<Json<GroupKey>, JsonRejection>,
) -> Response {
    set_hidden(&st, &headers, b, false).await
}

async fn comment(
    State(st): State<Shared>,
    headers: HeaderMap,
    b: Result<Json<GroupKey>, JsonRejection>,
) -> Response {
    if let Some(r) = change_denied(&st, &headers) {
        return r;
    }
    let k = match json_body(b) {
        Ok(k) => k,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    let text = match check_comment(k.text.as_deref().unwrap_or("")) {
        Ok(t) => t,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    match st
        .store
        .add_comment(&k.function, &k.module, "api", text, unix_now())
        .await
    {
        Ok(c) => (StatusCode::CREATED, Json(c)).into_response(),
        Err(e) => store_error(e),
    }
}

/// The skip list: as configured, the stored edits, and the list in force.
#[derive(Debug, Clone, Serialize)]
pub struct SkipView {
    pub configured: Vec<String>,
    pub edits: Vec<crate::crash::SkipEdit>,
    pub entries: Vec<String>,
}

/// The skip list, read fresh from the database (and applied here).
pub async fn skip_view(st: &AppState) -> Result<SkipView, StoreError> {
    let edits = st.store.skip_edits().await?;
    st.skip.set_edits(&edits);
    Ok(SkipView {
        configured: st.skip.configured().to_vec(),
        edits,
        entries: st.skip.entries(),
    })
}

async fn skip_list(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    match skip_view(&st).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

/// A skip-list edit: `add` or `remove` an entry, or `reset` to the configured list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipEditRequest {
    pub action: String,
    #[serde(default)]
    pub entry: String,
}

/// Applies an edit, stores it and applies the new list here; the new list. A refusal is a
/// [`StoreError::BadFilter`] with the reason.
pub async fn apply_skip_edit(st: &AppState, req: &SkipEditRequest) -> Result<SkipView, StoreError> {
    let entry = req.entry.trim();
    let check = || {
        if entry.is_empty() || entry.len() > MAX_SKIP_ENTRY || entry.chars().any(char::is_control) {
            return Err(StoreError::BadFilter(format!(
                "a skip-list entry has 1 to {MAX_SKIP_ENTRY} bytes and no control characters"
            )));
        }
        Ok(())
    };
    match req.action.as_str() {
        "add" => {
            check()?;
            st.store.edit_skip(entry, true, unix_now()).await?;
        }
        "remove" => {
            check()?;
            st.store.edit_skip(entry, false, unix_now()).await?;
        }
        "reset" => st.store.reset_skip().await?,
        _ => {
            return Err(StoreError::BadFilter(
                "action must be add, remove or reset".into(),
            ))
        }
    }
    debug!(action = %req.action, entry, "skip list edited");
    skip_view(st).await
}

async fn skip_edit(
    State(st): State<Shared>,
    headers: HeaderMap,
    b: Result<Json<SkipEditRequest>, JsonRejection>,
) -> Response {
    if let Some(r) = change_denied(&st, &headers) {
        return r;
    }
    let Json(req) = match b {
        Ok(b) => b,
        Err(r) => return message(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    match apply_skip_edit(&st, &req).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => store_error(e),
    }
}

/// Starts a regroup in the background unless one runs here; whether this call started it.
/// The job reads the stored edits first (another instance may have changed the list) and
/// holds no reference to the server, so a shutdown does not wait for it.
pub fn start_regroup(st: &Shared) -> bool {
    if !st.skip.regroup_start(unix_now()) {
        return false;
    }
    let store = st.store.clone();
    let weak = Arc::downgrade(st);
    tokio::spawn(async move {
        let edits = store.skip_edits().await;
        let result = match (edits, weak.upgrade()) {
            (Ok(edits), Some(st)) => {
                st.skip.set_edits(&edits);
                let list = st.skip.list();
                drop(st);
                store.regroup(&list).await.map_err(|e| e.to_string())
            }
            (Err(e), _) => Err(e.to_string()),
            (_, None) => return,
        };
        if let Err(e) = &result {
            warn!(error = %e, "regroup failed");
        }
        if let Some(st) = weak.upgrade() {
            st.skip
                .regroup_finish(unix_now(), result.map(|r| (r.examined, r.changed)));
        }
    });
    true
}

/// Starts a regroup (or finds one running) and waits up to `wait` for it to end.
pub async fn regroup_and_wait(st: &Shared, wait: Duration) -> RegroupStatus {
    start_regroup(st);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let s = st.skip.regroup_status();
        if s.state != "running" || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_response(s: RegroupStatus) -> Response {
    let code = if s.state == "running" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (code, Json(s)).into_response()
}

async fn regroup(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = change_denied(&st, &headers) {
        return r;
    }
    // A JSON request, like the other changes: a plain cross-site form (possible when no query
    // token is configured) cannot send that content type without a preflight.
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json {
        return message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json",
        );
    }
    status_response(regroup_and_wait(&st, REGROUP_WAIT).await)
}

async fn regroup_status(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    status_response(st.skip.regroup_status())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn crash_options_are_split_from_the_filter() {
        let (o, f) = crash_query(Some("window=7&build=40000&include_hidden=true&limit=5")).unwrap();
        assert_eq!(o.window, Some(7));
        assert!(o.include_hidden);
        assert_eq!(f.build.as_deref(), Some("40000"));
        assert_eq!(f.limit, Some(5));
        assert!(crash_query(Some("window=0")).is_err());
        assert!(crash_query(Some("nonsense=1")).is_err());
        assert_eq!(crash_query(None).unwrap().0, CrashOptions::default());
    }
}
