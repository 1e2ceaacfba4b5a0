//! `/crashes/group`: one crash group: records per day (chart and numbers), per build, per
//! system, the machines, the newest sample backtraces with the deciding frame marked, and the
//! forms to hide or show it, comment on it and skip its frame.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{CsrfForm, Session};
use super::chart::{bar_chart, Bars, Series, Svg};
use super::crashes::group_link;
use super::layout::{render, time, Layout};
use super::{error_page, store_error_page, Web};
use crate::api::crash_groups::{check_comment, group_view, GroupQuery};
use crate::store::schema::unix_now;
use crate::store::Count;

/// A sample backtrace split around its deciding line, each part escaped by the template.
pub struct Sample {
    pub id: i64,
    pub received: String,
    pub build: String,
    pub machine_id: String,
    pub before: String,
    pub deciding: String,
    pub after: String,
    pub marked: bool,
}

/// A comment as shown.
pub struct CommentRow {
    pub author: String,
    pub time: String,
    pub text: String,
}

/// A machine row.
pub struct MachineRow {
    pub machine_id: String,
    pub count: i64,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    layout: Layout,
    function: String,
    module: String,
    hidden: bool,
    count: i64,
    machines_total: i64,
    first_seen: String,
    last_seen: String,
    days: i64,
    chart: Svg,
    per_day: Vec<Count>,
    per_build: Vec<Count>,
    per_system: Vec<Count>,
    machines: Vec<MachineRow>,
    samples: Vec<Sample>,
    comments: Vec<CommentRow>,
    skip_entry: String,
    json_link: String,
}

/// `payload` split into the text before line `n`, line `n` and the rest.
fn split_at_line(payload: &str, n: Option<usize>) -> (String, String, String, bool) {
    let Some(n) = n else {
        return (payload.to_string(), String::new(), String::new(), false);
    };
    let mut before = String::new();
    let mut line = String::new();
    let mut after = String::new();
    for (i, l) in payload.split_inclusive('\n').enumerate() {
        match i.cmp(&n) {
            std::cmp::Ordering::Less => before.push_str(l),
            std::cmp::Ordering::Equal => line.push_str(l.trim_end_matches('\n')),
            std::cmp::Ordering::Greater => after.push_str(l),
        }
    }
    if line.is_empty() {
        return (payload.to_string(), String::new(), String::new(), false);
    }
    // The line break stays outside the mark.
    if payload
        .split_inclusive('\n')
        .nth(n)
        .is_some_and(|l| l.ends_with('\n'))
    {
        after.insert(0, '\n');
    }
    (before, line, after, true)
}

/// The skip-list entry that would stop blaming this group's frame: `function [module file]`.
fn skip_entry(function: &str, module: &str) -> String {
    let base = module.rsplit('/').next().unwrap_or(module);
    if base.is_empty() {
        function.to_string()
    } else {
        format!("{function} [{base}]")
    }
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    q: Result<Query<GroupQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(r) => return error_page(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    let view = match group_view(&web.app, &q).await {
        Ok(Some(v)) => v,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "No such crash group."),
        Err(e) => return store_error_page(e),
    };
    let d = view.detail;
    let labels: Vec<String> = d.per_day.iter().map(|c| c.key.clone()).collect();
    let chart = bar_chart(
        "per-day",
        "Records per day",
        &labels,
        &[Series {
            name: "records".into(),
            values: d.per_day.iter().map(|c| c.count).collect(),
        }],
        Bars::Stacked,
    );
    let samples = view
        .samples
        .into_iter()
        .map(|s| {
            let (before, deciding, after, marked) = split_at_line(&s.payload, s.deciding_line);
            Sample {
                id: s.id,
                received: time(s.ts_reception),
                build: s.build,
                machine_id: s.machine_id,
                before,
                deciding,
                after,
                marked,
            }
        })
        .collect();
    let json_link = format!("/api/v1{}", &group_link(&d.function, &d.module));
    render(&GroupPage {
        layout: Layout::page(format!("Crash group {}", d.function), "crashes", &session),
        skip_entry: skip_entry(&d.function, &d.module),
        hidden: d.hidden,
        count: d.count,
        machines_total: d.machines_total,
        first_seen: d.first_seen.map(time).unwrap_or_default(),
        last_seen: d.last_seen.map(time).unwrap_or_default(),
        days: d.days,
        chart,
        per_day: d.per_day,
        per_build: d.per_build,
        per_system: d.per_system,
        machines: d
            .machines
            .into_iter()
            .map(|m| MachineRow {
                machine_id: m.machine_id,
                count: m.count,
                last_seen: time(m.last_seen),
            })
            .collect(),
        samples,
        comments: d
            .comments
            .into_iter()
            .map(|c| CommentRow {
                author: c.author,
                time: time(c.created_at),
                text: c.text,
            })
            .collect(),
        json_link,
        function: d.function,
        module: d.module,
    })
}

/// 303 back to the group's page.
fn back_to(function: &str, module: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&group_link(function, module)) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

#[derive(Debug, Deserialize)]
pub(super) struct HideForm {
    function: String,
    module: String,
    /// `true` to hide, `false` to show again.
    hidden: String,
}

pub(super) async fn hide(State(web): State<Web>, CsrfForm(f): CsrfForm<HideForm>) -> Response {
    let hidden = match f.hidden.as_str() {
        "true" => true,
        "false" => false,
        _ => return error_page(StatusCode::BAD_REQUEST, "hidden is true or false"),
    };
    if f.function.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "no crash group named");
    }
    match web
        .app
        .store
        .set_hidden(&f.function, &f.module, hidden, unix_now())
        .await
    {
        Ok(()) => back_to(&f.function, &f.module),
        Err(e) => store_error_page(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CommentForm {
    function: String,
    module: String,
    comment: String,
}

pub(super) async fn comment(
    State(web): State<Web>,
    CsrfForm(f): CsrfForm<CommentForm>,
) -> Response {
    if f.function.is_empty() {
        return error_page(StatusCode::BAD_REQUEST, "no crash group named");
    }
    let text = match check_comment(&f.comment) {
        Ok(t) => t,
        Err(m) => return error_page(StatusCode::BAD_REQUEST, &m),
    };
    match web
        .app
        .store
        .add_comment(&f.function, &f.module, "web", text, unix_now())
        .await
    {
        Ok(_) => back_to(&f.function, &f.module),
        Err(e) => store_error_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deciding_line_is_cut_out_without_its_line_break() {
        let (b, l, a, m) = split_at_line("x\n#1 f()\n#2 g()\n", Some(1));
        assert_eq!(
            (b.as_str(), l.as_str(), a.as_str(), m),
            ("x\n", "#1 f()", "\n#2 g()\n", true)
        );
        let (b, _, _, m) = split_at_line("x\n", Some(5));
        assert_eq!((b.as_str(), m), ("x\n", false));
        assert_eq!(skip_entry("f", "/usr/bin/app"), "f [app]");
        assert_eq!(skip_entry("f", "kernel"), "f [kernel]");
    }
}
