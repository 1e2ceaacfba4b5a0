//! `/records/{id}`: one record, every header, the payload as (escaped, wrapped) text.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Session;
use super::layout::{render, time, Layout};
use super::{error_page, query_string, store_error_page, Web};

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    layout: Layout,
    headers: Vec<(&'static str, String)>,
    payload: String,
    machine_records: String,
    /// The crash group's page and its signature, for a record with a backtrace.
    crash_group: Option<(String, String)>,
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(StatusCode::NOT_FOUND, "Record ids are numbers.");
    };
    let s = match web.app.store.get(id).await {
        Ok(Some(s)) => s,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, "No such record."),
        Err(e) => return store_error_page(e),
    };
    let r = &s.record;
    let headers = vec![
        ("Id", s.id.to_string()),
        ("Classification", r.classification.clone()),
        ("Severity", r.severity.to_string()),
        ("Received", time(r.ts_reception)),
        ("Created (client clock)", time(r.ts_capture)),
        ("Machine id", r.machine_id.clone()),
        ("Build", r.build.clone()),
        ("System", r.system_name.clone()),
        ("Kernel", r.kernel_version.clone()),
        ("Architecture", r.arch.clone()),
        ("Platform (host type)", r.host_type.clone()),
        ("Board", r.board_name.clone()),
        ("CPU model", r.cpu_model.clone()),
        ("BIOS version", r.bios_version.clone()),
        ("Event id", r.event_id.clone()),
        ("Payload format version", r.payload_version.to_string()),
        ("Record format version", r.record_version.to_string()),
        ("External", r.external.to_string()),
        ("Request form", r.form.clone()),
        ("Identity", r.identity.clone()),
    ];
    let pairs = |v: &[(&str, &str)]| {
        query_string(
            &v.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    };
    let page = RecordPage {
        layout: Layout::page(format!("Record {}", s.id), "records", &session),
        headers,
        payload: r.payload.clone(),
        machine_records: format!("/records?{}", pairs(&[("machine_id", &r.machine_id)])),
        crash_group: r.crash.as_ref().map(|c| {
            (
                format!(
                    "/crashes/group?{}",
                    pairs(&[("function", &c.function), ("module", &c.module)])
                ),
                format!("{} ({})", c.function, c.module),
            )
        }),
    };
    render(&page)
}
