//! What every page shares: the base template's data (title, navigation, logout form) and the
//! rendering of a template into a response.

use askama::Template;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use telemetry::timefmt::utc_string;

/// The base template's data: every page template has it as its `layout` field.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// The navigation entry to mark current: `overview`, `records`, `crashes`, `population`,
    /// `hardware`, or empty.
    pub active: &'static str,
    /// The CSRF token of the logout form (and of the page's own forms).
    pub csrf: String,
    /// Whether to show the navigation and logout button (not on the login page).
    pub nav: bool,
}

impl Layout {
    pub fn new(title: impl Into<String>, active: &'static str, csrf: String, nav: bool) -> Layout {
        Layout {
            title: title.into(),
            active,
            csrf,
            nav,
        }
    }

    /// A page's layout for a logged-in session.
    pub fn page(title: impl Into<String>, active: &'static str, s: &super::auth::Session) -> Self {
        Layout::new(title, active, s.csrf.clone(), true)
    }

    /// `aria-current` for the navigation link `name`.
    pub fn current(&self, name: &str) -> &'static str {
        if self.active == name {
            "page"
        } else {
            "false"
        }
    }
}

/// A template rendered as an HTML response (a 500 if it cannot be).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => {
            let mut r = html.into_response();
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            warn!(error = %e, "page not rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "page not rendered\n").into_response()
        }
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn time(secs: i64) -> String {
    utc_string(u64::try_from(secs).unwrap_or(0))
}
