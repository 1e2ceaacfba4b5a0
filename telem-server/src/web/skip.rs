//! `/crashes/skip`: the skip list in force (configured entries, added ones, removed ones),
//! the forms to add, remove and reset, and `POST /crashes/regroup`, which regroups in the
//! background and shows the result here.

use askama::Template;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{CsrfForm, Session};
use super::layout::{render, time, Layout};
use super::{store_error_page, Web};
use crate::api::crash_groups::{
    apply_skip_edit, regroup_and_wait, skip_view, SkipEditRequest, REGROUP_WAIT,
};

/// An entry in force, and whether it was added (not configured).
pub struct Entry {
    pub entry: String,
    pub added: bool,
}

#[derive(Template)]
#[template(path = "skip.html")]
struct SkipPage {
    layout: Layout,
    entries: Vec<Entry>,
    removed: Vec<String>,
    edits: usize,
    regroup_state: &'static str,
    regroup_started: String,
    regroup_finished: String,
    regroup_examined: u64,
    regroup_changed: u64,
    regroup_error: String,
}

pub(super) async fn page(State(web): State<Web>, session: Session) -> Response {
    let view = match skip_view(&web.app).await {
        Ok(v) => v,
        Err(e) => return store_error_page(e),
    };
    let entries = view
        .entries
        .iter()
        .map(|e| Entry {
            entry: e.clone(),
            added: !view.configured.contains(e),
        })
        .collect();
    let removed = view
        .configured
        .iter()
        .filter(|e| !view.entries.contains(e))
        .cloned()
        .collect();
    let s = web.app.skip.regroup_status();
    render(&SkipPage {
        layout: Layout::page("Skip list", "crashes", &session),
        entries,
        removed,
        edits: view.edits.len(),
        regroup_state: s.state,
        regroup_started: s.started_at.map(time).unwrap_or_default(),
        regroup_finished: s.finished_at.map(time).unwrap_or_default(),
        regroup_examined: s.examined,
        regroup_changed: s.changed,
        regroup_error: s.error.unwrap_or_default(),
    })
}

fn back() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/crashes/skip"));
    r
}

#[derive(Debug, Deserialize)]
pub(super) struct EditForm {
    action: String,
    #[serde(default)]
    entry: String,
}

pub(super) async fn edit(State(web): State<Web>, CsrfForm(f): CsrfForm<EditForm>) -> Response {
    let req = SkipEditRequest {
        action: f.action,
        entry: f.entry,
    };
    match apply_skip_edit(&web.app, &req).await {
        Ok(_) => back(),
        Err(e) => store_error_page(e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RegroupForm {}

pub(super) async fn regroup(
    State(web): State<Web>,
    CsrfForm(_): CsrfForm<RegroupForm>,
) -> Response {
    // A quick regroup is done when the page comes back; a long one shows as running.
    regroup_and_wait(&web.app, REGROUP_WAIT).await;
    back()
}
