//! `/crashes`: the top crashers of a window (1, 7 or 30 days) and build, against the window
//! before; and the routes of the crash pages (`group`, `skip`) and `/hardware`.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

use super::auth::Session;
use super::chart::{sparkline, Svg};
use super::layout::{render, time, Layout};
use super::{error_page, group, hardware, skip, store_error_page, FilterQuery, Web};
use crate::store::schema::unix_now;

/// The windows the page offers, in days.
pub const WINDOWS: [i64; 3] = [1, 7, 30];

/// Groups the page lists.
pub const ROWS: usize = 100;

/// The routes of the crash pages and the hardware page.
pub(super) fn routes() -> Router<Web> {
    Router::new()
        .route("/crashes", get(page))
        .route("/crashes/group", get(group::page))
        .route("/crashes/group/hide", post(group::hide))
        .route("/crashes/group/comment", post(group::comment))
        .route("/crashes/skip", get(skip::page).post(skip::edit))
        .route("/crashes/regroup", post(skip::regroup))
        .route("/hardware", get(hardware::page))
}

/// One table row.
pub struct Row {
    pub function: String,
    pub module: String,
    pub link: String,
    pub count: i64,
    pub previous: i64,
    pub share: String,
    pub machines: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub trend: Svg,
    pub trend_numbers: String,
    pub change: &'static str,
    pub hidden: bool,
}

#[derive(Template)]
#[template(path = "crashes.html")]
struct CrashesPage {
    layout: Layout,
    windows: Vec<(i64, bool)>,
    build: String,
    include_hidden: bool,
    hidden_groups: i64,
    total: i64,
    previous_total: i64,
    /// End of the window: the end of the current hour (one day) or UTC day.
    until: String,
    bucket: &'static str,
    rows: Vec<Row>,
    show_hidden_link: String,
    json_link: String,
}

/// The link to one group's page.
pub fn group_link(function: &str, module: &str) -> String {
    format!(
        "/crashes/group?{}",
        super::query_string(&[
            ("function".to_string(), function.to_string()),
            ("module".to_string(), module.to_string()),
        ])
    )
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match FilterQuery::read(raw.as_deref(), &["window", "include_hidden"]) {
        Ok(q) => q,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    let window = match q.own("window").map(str::parse::<i64>) {
        None => 7,
        Some(Ok(w)) if WINDOWS.contains(&w) => w,
        Some(_) => return error_page(StatusCode::BAD_REQUEST, "window is 1, 7 or 30 days"),
    };
    let include_hidden = q.own("include_hidden") == Some("true");
    let top = match web
        .app
        .store
        .top_crashers(&q.filter, window, unix_now(), include_hidden, ROWS)
        .await
    {
        Ok(t) => t,
        Err(e) => return store_error_page(e),
    };
    let rows = top
        .groups
        .iter()
        .map(|g| Row {
            link: group_link(&g.function, &g.module),
            function: g.function.clone(),
            module: g.module.clone(),
            count: g.count,
            previous: g.previous,
            share: format!("{:.1}%", g.share * 100.0),
            machines: g.machines,
            first_seen: time(g.first_seen),
            last_seen: time(g.last_seen),
            trend: sparkline(&g.trend),
            trend_numbers: g
                .trend
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            change: g.change,
            hidden: g.hidden,
        })
        .collect();
    let mut own = vec![("window", window.to_string())];
    let toggle = if include_hidden {
        own.clone()
    } else {
        let mut o = own.clone();
        o.push(("include_hidden", "true".to_string()));
        o
    };
    if include_hidden {
        own.push(("include_hidden", "true".to_string()));
    }
    render(&CrashesPage {
        layout: Layout::page("Crashes", "crashes", &session),
        windows: WINDOWS.iter().map(|w| (*w, *w == window)).collect(),
        build: q.get("build").to_string(),
        include_hidden,
        hidden_groups: top.hidden_groups,
        total: top.total,
        previous_total: top.previous_total,
        until: time(top.until),
        bucket: if top.bucket_seconds == 3600 {
            "hour"
        } else {
            "day"
        },
        rows,
        show_hidden_link: format!("/crashes?{}", q.with(&[], &toggle)),
        json_link: format!("/api/v1/crashes?{}", q.with(&[], &own)),
    })
}
