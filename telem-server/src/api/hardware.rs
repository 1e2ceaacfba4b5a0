//! `GET /api/v1/hardware`: machine-check, memory and PCIe error records and thermal events.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::http::{message, query_denied, store_error, Shared};
use crate::store::schema::unix_now;

/// Weeks shown when the query does not say: a year, as the original's MCE page.
pub const DEFAULT_WEEKS: i64 = 52;

pub fn routes() -> Router<Shared> {
    Router::new().route("/api/v1/hardware", get(hardware))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareQuery {
    pub weeks: Option<i64>,
}

async fn hardware(
    State(st): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<HardwareQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = query_denied(&st, &headers) {
        return r;
    }
    let weeks = match q {
        Ok(Query(q)) => q.weeks.unwrap_or(DEFAULT_WEEKS),
        Err(r) => return message(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    match st.store.hardware(weeks, unix_now()).await {
        Ok(h) => Json(h).into_response(),
        Err(e) => store_error(e),
    }
}
