//! The web pages: server-rendered HTML over the same store and filters as the query API.
//!
//! - [`auth`]: login, the signed session cookie, the [`auth::Session`] and [`auth::CsrfForm`]
//!   extractors every page and form uses.
//! - [`layout`]: the base template's data and rendering; [`chart`]: SVG charts drawn on the
//!   server; `static_files`: the one stylesheet and the one script.
//! - one module per page: `overview` (`/`), `records` (`/records`, `/records/poll`), `record`
//!   (`/records/{id}`), `population`, `crashes` (`/crashes`, and the routes of `group`,
//!   `skip` and `hardware`).
//!
//! Every value a machine sent is attacker-controlled: templates escape by default (askama) and
//! the chart code escapes its labels; the Content-Security-Policy allows no inline script.

pub mod auth;
pub mod chart;
mod crashes;
mod group;
mod hardware;
pub mod layout;
mod overview;
mod population;
mod record;
mod records;
mod skip;
mod static_files;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::map_response;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;
use crate::store::{Filter, StoreError};
use layout::{render, Layout};

/// What the page handlers share: the server's state and the signing key.
pub struct WebState {
    pub app: Arc<AppState>,
    pub keys: auth::Keys,
}

/// The state of the web router.
pub type Web = Arc<WebState>;

/// The policy on every answer: no inline script or style, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
    script-src 'self'; frame-ancestors 'none'; form-action 'self'";

/// Largest form body a page accepts.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The pages' routes, to be merged into the server's router.
pub fn router(app: Arc<AppState>) -> Router {
    let web = Arc::new(WebState {
        keys: auth::Keys::new(app.query_token.as_deref()),
        app,
    });
    Router::new()
        .route("/", get(overview::page))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/records", get(records::page))
        .route("/records/poll", get(records::poll))
        .route("/records/{id}", get(record::page))
        .route("/population", get(population::page))
        .merge(crashes::routes())
        .route("/static/style.css", get(static_files::style))
        .route("/static/app.js", get(static_files::app))
        .route("/static/favicon.svg", get(static_files::icon))
        // Browsers ask for it whatever the page links.
        .route("/favicon.ico", get(static_files::icon))
        .layer(map_response(security_headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(web)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    message: &'a str,
}

/// A plain error page with `status`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        layout: Layout::new(
            status.canonical_reason().unwrap_or("Error"),
            "",
            String::new(),
            false,
        ),
        message,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

/// The page for a failed store query: a bad filter is the visitor's 400, anything else a 503.
pub fn store_error_page(e: StoreError) -> Response {
    match e {
        StoreError::BadFilter(m) => error_page(StatusCode::BAD_REQUEST, &m),
        e => {
            tracing::warn!(error = %e, "page query failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is unavailable.",
            )
        }
    }
}

/// A list page's query string read with the query API's [`Filter`]: empty fields (a submitted
/// form sends every input) are dropped, and the page's own parameters (`own`) are taken out
/// before the rest is read as the filter.
#[derive(Debug, Clone, Default)]
pub struct FilterQuery {
    pub filter: Filter,
    /// The filter's parameters as given (non-empty), to build links that keep the view.
    pub pairs: Vec<(String, String)>,
    /// The page's own parameters, as given.
    pub own: Vec<(String, String)>,
}

impl FilterQuery {
    /// Reads `raw` (the query string without `?`); the error is the 400's message.
    pub fn read(raw: Option<&str>, own: &[&str]) -> Result<FilterQuery, String> {
        let all: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| e.to_string())?;
        let mut out = FilterQuery::default();
        for (k, v) in all {
            if v.is_empty() {
                continue;
            }
            if own.contains(&k.as_str()) {
                out.own.push((k, v));
            } else {
                out.pairs.push((k, v));
            }
        }
        let encoded = query_string(&out.pairs);
        out.filter = serde_urlencoded::from_str(&encoded).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// The value of the filter parameter `name` as given, or "".
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The value of the page's own parameter `name`, if given.
    pub fn own(&self, name: &str) -> Option<&str> {
        self.own
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The filter's query string without the parameters in `drop`, plus `extra`.
    pub fn with(&self, drop: &[&str], extra: &[(&str, String)]) -> String {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .cloned()
            .collect();
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        query_string(&pairs)
    }
}

/// `pairs` URL-encoded as a query string.
pub fn query_string(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn empty_fields_are_dropped_and_own_parameters_kept_apart() {
        let q = FilterQuery::read(
            Some("classification=org%2F*&severity=&build=40&after_id=7&machine_id="),
            &["after_id"],
        )
        .unwrap();
        assert_eq!(q.filter.classification.as_deref(), Some("org/*"));
        assert_eq!(q.filter.build.as_deref(), Some("40"));
        assert_eq!(q.filter.severity, None);
        assert_eq!(q.own("after_id"), Some("7"));
        assert_eq!(
            q.with(&["build"], &[("before_id", "3".into())]),
            "classification=org%2F*&before_id=3"
        );
    }

    #[test]
    fn unknown_and_malformed_filters_are_refused() {
        assert!(FilterQuery::read(Some("nonsense=1"), &[]).is_err());
        assert!(FilterQuery::read(Some("severity=high"), &[]).is_err());
    }
}
