//! HTTP routes: the collector endpoints, the query API, `/healthz` and `/metrics`; the web pages
//! (`crate::web`) are merged in.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use telemetry::collector_protocol::{
    check_request, header_fields, Echo, Fields, Form, HeaderText, Rejection,
};
use telemetry::timefmt::utc_string;
use tracing::{debug, warn};

use crate::crash::Grouping;
use crate::ingest::{Ingest, IngestError};
use crate::metrics::Metrics;
use crate::store::schema::unix_now;
use crate::store::{CountBy, Filter, Inserted, NewRecord, Store, StoreError, StoredRecord};

/// Default and largest page of `GET /api/v1/records`.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// What every handler shares.
pub struct AppState {
    pub tid: String,
    pub fleet_token: Option<String>,
    pub query_token: Option<String>,
    pub ingest: Ingest,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The skip list in force (configured, with the stored edits) and its regroup job.
    pub skip: Grouping,
}

pub(crate) type Shared = Arc<AppState>;

/// The router of one server.
pub fn router(state: Shared, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", post(collect_headers))
        .route("/v2/collector", post(collect_headers))
        .route("/v3/collector", post(collect_json))
        .route("/api/v1/records", get(list_records))
        .route("/api/v1/records/{id}", get(one_record))
        .route("/api/v1/counts/{by}", get(counts))
        .route("/api/v1/population", get(population))
        .route("/api/v1/export.csv", get(export_csv))
        .route("/api/v1/export.jsonl", get(export_jsonl))
        .merge(crate::api::crash_groups::routes())
        .merge(crate::api::hardware::routes())
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state.clone())
        .merge(crate::web::router(state))
}

pub(crate) fn message(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "message": msg }))).into_response()
}

/// `a == b` in time that depends only on the lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub(crate) fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| same_secret(given, token.as_bytes()))
}

pub(crate) fn unauthorized() -> Response {
    let mut r = message(StatusCode::UNAUTHORIZED, "credential missing or wrong");
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn collect_headers(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    collect(&st, Form::Headers, &headers, &body).await
}

async fn collect_json(State(st): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    collect(&st, Form::Json, &headers, &body).await
}

/// The request's fields, values kept as UTF-8 when they are (the backend read them as Latin-1
/// and stored non-ASCII text garbled).
fn fields(headers: &HeaderMap) -> Fields {
    header_fields(
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        HeaderText::Utf8OrLatin1,
    )
}

/// A bounded metric label for a rejection: the message, without the echo of a client's value.
fn reason(msg: &str) -> &str {
    match msg.split_once(", invalid literal") {
        Some((head, _)) => head,
        None => msg.split_once(", int() argument").map_or(msg, |(h, _)| h),
    }
}

async fn collect(st: &AppState, form: Form, headers: &HeaderMap, body: &[u8]) -> Response {
    let started = Instant::now();
    let resp = collect_inner(st, form, headers, body).await;
    st.metrics.latency(started.elapsed());
    resp
}

async fn collect_inner(st: &AppState, form: Form, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(token) = &st.fleet_token {
        if !bearer_ok(headers, token) {
            st.metrics.rejected("fleet token");
            return unauthorized();
        }
    }
    let sub = match check_request(form, &fields(headers), body, &st.tid) {
        Ok(s) => s,
        Err(Rejection::BadRequest(msg)) => {
            st.metrics.rejected(reason(&msg));
            debug!(%msg, "record refused");
            return message(StatusCode::BAD_REQUEST, &msg);
        }
        Err(Rejection::ServerError(why)) => {
            // The backend answered these with a 500; a client retries them, as it should.
            st.metrics.rejected("server error");
            debug!(why, "record refused with 500 as the backend did");
            return message(StatusCode::INTERNAL_SERVER_ERROR, &why);
        }
    };
    let Ok(ts_capture) = i64::try_from(sub.accepted.ts_capture) else {
        st.metrics.rejected("server error");
        return message(StatusCode::INTERNAL_SERVER_ERROR, "timestamp out of range");
    };
    let crash = st.skip.signature(&sub.payload);
    let record = NewRecord::from_submission(sub, form, ts_capture, unix_now(), crash);
    match st.ingest.submit(record.clone()).await {
        Ok(Inserted::New(id)) => {
            st.metrics.ingested();
            let stored = StoredRecord { id, record };
            (StatusCode::CREATED, Json(Echo::from(&stored))).into_response()
        }
        Ok(Inserted::Duplicate(id)) => {
            st.metrics.duplicate();
            debug!(id, "record already stored");
            // The stored row, not this request's copy: its reception time is the first one.
            let stored = match st.store.get(id).await {
                Ok(Some(s)) => s,
                _ => StoredRecord { id, record },
            };
            (StatusCode::OK, Json(Echo::from(&stored))).into_response()
        }
        Err(IngestError::Store(e)) if e.is_data_error() => {
            // A retry would fail the same way: refuse the record so the client drops it.
            st.metrics.rejected("unstorable");
            debug!(error = %e, "record refused by the database");
            message(
                StatusCode::BAD_REQUEST,
                &format!("Record cannot be stored: {e}"),
            )
        }
        Err(e) => {
            warn!(error = %e, "record not stored");
            let mut r = message(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable");
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(5u32));
            r
        }
    }
}

fn unix_string(secs: i64) -> String {
    utc_string(u64::try_from(secs).unwrap_or(0))
}

/// The 201 body of a stored row (the shared definition in `collector_protocol`).
impl<'a> From<&'a StoredRecord> for Echo<'a> {
    fn from(s: &'a StoredRecord) -> Self {
        let r = &s.record;
        Echo {
            arch: &r.arch,
            bios_version: &r.bios_version,
            board_name: &r.board_name,
            build: &r.build,
            classification: &r.classification,
            cpu_model: &r.cpu_model,
            event_id: &r.event_id,
            external: r.external,
            id: s.id,
            kernel_version: &r.kernel_version,
            machine_id: &r.machine_id,
            machine_type: &r.host_type,
            payload: &r.payload,
            record_version: r.record_version,
            severity: r.severity,
            ts_capture: unix_string(r.ts_capture),
            ts_reception: unix_string(r.ts_reception),
        }
    }
}

/// A record in the query API: the 201 body and what it leaves out.
#[derive(Serialize)]
struct ApiRecord<'a> {
    #[serde(flatten)]
    echo: Echo<'a>,
    identity: &'a str,
    system_name: &'a str,
    payload_version: i64,
    form: &'a str,
    ts_capture_unix: i64,
    ts_reception_unix: i64,
    crash_function: Option<&'a str>,
    crash_module: Option<&'a str>,
}

impl<'a> From<&'a StoredRecord> for ApiRecord<'a> {
    fn from(s: &'a StoredRecord) -> Self {
        let r = &s.record;
        ApiRecord {
            echo: Echo::from(s),
            identity: &r.identity,
            system_name: &r.system_name,
            payload_version: r.payload_version,
            form: &r.form,
            ts_capture_unix: r.ts_capture,
            ts_reception_unix: r.ts_reception,
            crash_function: r.crash.as_ref().map(|c| c.function.as_str()),
            crash_module: r.crash.as_ref().map(|c| c.module.as_str()),
        }
    }
}

/// The export formats and the paged stream behind them.
mod export {
    use std::fmt::Write as _;

    use axum::body::Bytes;
    use futures_util::Stream;

    use super::{unix_string, ApiRecord};
    use crate::store::{Filter, Store, StoreError, StoredRecord};

    /// Records read per query while exporting.
    pub const PAGE: i64 = 1000;

    #[derive(Debug, Clone, Copy)]
    pub enum Format {
        Csv,
        JsonLines,
    }

    impl Format {
        pub fn content_type(self) -> &'static str {
            match self {
                Format::Csv => "text/csv; charset=utf-8",
                Format::JsonLines => "application/jsonl",
            }
        }
    }

    /// CSV columns: the backend's export columns, then the crash signature.
    pub const CSV_HEADER: &str = "id,external,ts_reception,severity,classification,build,\
        machine_id,payload,crash_function,crash_module\r\n";

    /// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A value a
    /// spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
    /// return: any machine can send one in a build string or payload) gets a leading `'`, as
    /// OWASP advises, so opening the export never runs it; the JSON-lines export keeps values as
    /// they are.
    fn csv_field(out: &mut String, v: &str) {
        let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
        if formula || v.contains([',', '"', '\r', '\n']) {
            out.push('"');
            if formula {
                out.push('\'');
            }
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(v);
        }
    }

    pub fn render(rows: &[StoredRecord], format: Format) -> String {
        let mut out = String::new();
        for s in rows {
            match format {
                Format::Csv => {
                    let r = &s.record;
                    let _ = write!(out, "{},{},", s.id, r.external);
                    csv_field(&mut out, &unix_string(r.ts_reception));
                    let _ = write!(out, ",{},", r.severity);
                    for v in [&r.classification, &r.build, &r.machine_id, &r.payload] {
                        csv_field(&mut out, v);
                        out.push(',');
                    }
                    let crash = r.crash.as_ref();
                    csv_field(&mut out, crash.map_or("", |c| c.function.as_str()));
                    out.push(',');
                    csv_field(&mut out, crash.map_or("", |c| c.module.as_str()));
                    out.push_str("\r\n");
                }
                Format::JsonLines => {
                    if let Ok(line) = serde_json::to_string(&ApiRecord::from(s)) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    struct State {
        store: Store,
        filter: Filter,
        /// Rows left to send when `limit` was given.
        left: Option<i64>,
        pending: Option<Vec<StoredRecord>>,
        header: bool,
        done: bool,
        format: Format,
    }

    /// The export of `filter`, newest first, starting with the already read `first` page.
    pub fn stream(
        store: Store,
        filter: Filter,
        first: Vec<StoredRecord>,
        format: Format,
    ) -> impl Stream<Item = Result<Bytes, StoreError>> {
        let left = filter.limit;
        let st = State {
            store,
            filter,
            left,
            pending: Some(first),
            header: matches!(format, Format::Csv),
            done: false,
            format,
        };
        futures_util::stream::try_unfold(st, |mut st| async move {
            if st.done {
                return Ok(None);
            }
            let mut out = String::new();
            if st.header {
                st.header = false;
                out.push_str(CSV_HEADER);
            }
            let rows = match st.pending.take() {
                Some(rows) => rows,
                None => {
                    let want = st.left.map_or(PAGE, |l| l.min(PAGE));
                    st.store.list(&st.filter, want).await?
                }
            };
            if let Some(l) = st.left.as_mut() {
                *l -= rows.len() as i64;
            }
            // The next page starts below the last id sent (keyset, as the records listing).
            match rows.last() {
                Some(last) => st.filter.before_id = Some(last.id),
                None => st.done = true,
            }
            if st.left.is_some_and(|l| l <= 0) {
                st.done = true;
            }
            out.push_str(&render(&rows, st.format));
            if out.is_empty() {
                return Ok(None);
            }
            Ok(Some((Bytes::from(out), st)))
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn csv_fields_are_quoted_when_needed() {
            let mut s = String::new();
            csv_field(&mut s, "plain");
            s.push('|');
            csv_field(&mut s, "a,b");
            s.push('|');
            csv_field(&mut s, "say \"hi\"\nbye");
            assert_eq!(s, "plain|\"a,b\"|\"say \"\"hi\"\"\nbye\"");
        }

        #[test]
        fn csv_fields_a_spreadsheet_would_run_are_defused() {
            for v in ["=HYPERLINK(1)", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
                let mut s = String::new();
                csv_field(&mut s, v);
                assert_eq!(s, format!("\"'{v}\""), "{v:?}");
            }
            let mut s = String::new();
            csv_field(&mut s, "a-b");
            assert_eq!(s, "a-b");
        }
    }
}

/// Checks the query credential; `None` when the request may go on.
pub(crate) fn query_denied(st: &AppState, headers: &HeaderMap) -> Option<Response> {
    match &st.query_token {
        // A page's session also reads the API (the export and JSON links of the pages).
        Some(t) if !bearer_ok(headers, t) && !crate::web::auth::session_ok(headers, t) => {
            Some(unauthorized())
        }
        _ => None,
    }
}

pub(crate) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::BadFilter(m) => message(StatusCode::BAD_REQUEST, &m),
        e => {
            warn!(error = %e, "query failed");
            message(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
        }
    }
}

fn bad_query(r: QueryRejection) -> Response {
    message(StatusCode::BAD_REQUEST, &r.body_text())
}

/// The filter of a listing and its `limit` (default [`DEFAULT_LIMIT`], at most `max`), or the
/// message of the 400 to answer.
pub(crate) fn filter_with_limit(
    q: Result<Query<Filter>, QueryRejection>,
    max: i64,
) -> Result<(Filter, i64), String> {
    let Query(f) = q.map_err(|r| r.body_text())?;
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=max).contains(&limit) {
        return Err(format!("limit must be between 1 and {max}"));
    }
    Ok((f, limit))
}

async fn list_records(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let (f, limit) = match filter_with_limit(q, MAX_LIMIT) {
        Ok(v) => v,
        Err(m) => return message(StatusCode::BAD_REQUEST, &m),
    };
    match st.store.list(&f, limit).await {
        Ok(rows) => {
            // A full page may have more behind it: the cursor for the next one.
            let next = (rows.len() as i64 == limit)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            let records: Vec<ApiRecord> = rows.iter().map(ApiRecord::from).collect();
            Json(json!({ "records": records, "next": next })).into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn one_record(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return message(StatusCode::BAD_REQUEST, "record id must be an integer");
    };
    match st.store.get(id).await {
        Ok(Some(rec)) => Json(ApiRecord::from(&rec)).into_response(),
        Ok(None) => message(StatusCode::NOT_FOUND, "no such record"),
        Err(e) => store_error(e),
    }
}

async fn counts(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(by): Path<String>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let by = match by.as_str() {
        "classification" => CountBy::Classification,
        "build" => CountBy::Build,
        "platform" => CountBy::Platform,
        "severity" => CountBy::Severity,
        "day" => CountBy::Day,
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                "counts are by classification, build, platform, severity or day",
            )
        }
    };
    let Query(f) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(r),
    };
    match st.store.counts(by, &f).await {
        Ok(c) => Json(json!({ "counts": c })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn population(State(st): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    match st.store.population(unix_now()).await {
        Ok(builds) => Json(json!({ "builds": builds })).into_response(),
        Err(e) => store_error(e),
    }
}

async fn export_csv(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    export(st, &headers, q, export::Format::Csv).await
}

async fn export_jsonl(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    export(st, &headers, q, export::Format::JsonLines).await
}

async fn export(
    st: Shared,
    headers: &HeaderMap,
    q: Result<Query<Filter>, QueryRejection>,
    format: export::Format,
) -> Response {
    if let Some(r) = query_denied(&st, headers) {
        return r;
    }
    let Query(f) = match q {
        Ok(q) => q,
        Err(r) => return bad_query(r),
    };
    if f.limit.is_some_and(|l| l < 1) {
        return message(StatusCode::BAD_REQUEST, "limit must be at least 1");
    }
    // The first page before the answer starts: a bad filter or a dead database is still a
    // proper 400/503, not a cut stream.
    let first = match st
        .store
        .list(&f, export::PAGE.min(f.limit.unwrap_or(i64::MAX)))
        .await
    {
        Ok(rows) => rows,
        Err(e) => return store_error(e),
    };
    let body = axum::body::Body::from_stream(export::stream(st.store.clone(), f, first, format));
    let mut r = body.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

async fn healthz(State(st): State<Shared>) -> Response {
    match st.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

async fn metrics(State(st): State<Shared>) -> Response {
    let mut r = st.metrics.render().into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }

    #[test]
    fn reasons_drop_client_text() {
        assert_eq!(
            reason(
                "Error parsing payload_format_version, invalid literal for int() with base 10: 'x'"
            ),
            "Error parsing payload_format_version"
        );
        assert_eq!(reason("Telemetry ID mismatch"), "Telemetry ID mismatch");
    }
}
