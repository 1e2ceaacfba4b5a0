//! `/hardware`: machine-check, memory and PCIe error records per class, build, week and
//! machine, and thermal throttling records per week, each chart with its numbers.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::auth::Session;
use super::chart::{bar_chart, Bars, Series, Svg};
use super::layout::{render, time, Layout};
use super::{error_page, store_error_page, Web};
use crate::api::hardware::{HardwareQuery, DEFAULT_WEEKS};
use crate::store::hardware::{ClassBuild, ClassWeek, ThermalWeek};
use crate::store::schema::unix_now;
use crate::store::Count;

/// A machine row.
pub struct MachineRow {
    pub machine_id: String,
    pub count: i64,
    pub classes: i64,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "hardware.html")]
struct HardwarePage {
    layout: Layout,
    weeks: i64,
    weekly_chart: Svg,
    thermal_chart: Svg,
    classes: Vec<Count>,
    builds: Vec<ClassBuild>,
    weekly: Vec<ClassWeek>,
    machines: Vec<MachineRow>,
    thermal: Vec<ThermalWeek>,
}

pub(super) async fn page(
    State(web): State<Web>,
    session: Session,
    q: Result<Query<HardwareQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let weeks = match q {
        Ok(Query(q)) => q.weeks.unwrap_or(DEFAULT_WEEKS),
        Err(r) => return error_page(StatusCode::BAD_REQUEST, &r.body_text()),
    };
    let h = match web.app.store.hardware(weeks, unix_now()).await {
        Ok(h) => h,
        Err(e) => return store_error_page(e),
    };
    // Stacked weekly chart: one series per class, one bar per week that has records.
    let mut weeks_seen: Vec<String> = h.weekly.iter().map(|w| w.week.clone()).collect();
    weeks_seen.dedup();
    let mut per_class: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for w in &h.weekly {
        let values = per_class
            .entry(w.classification.as_str())
            .or_insert_with(|| vec![0; weeks_seen.len()]);
        if let Some(i) = weeks_seen.iter().position(|x| *x == w.week) {
            values[i] += w.count;
        }
    }
    let series: Vec<Series> = per_class
        .into_iter()
        .map(|(name, values)| Series {
            name: name.to_string(),
            values,
        })
        .collect();
    let weekly_chart = bar_chart(
        "mce-weekly-chart",
        "Hardware error records per week, by class",
        &weeks_seen,
        &series,
        Bars::Stacked,
    );
    let thermal_labels: Vec<String> = h.thermal_weekly.iter().map(|t| t.week.clone()).collect();
    let thermal_chart = bar_chart(
        "thermal-chart",
        "Thermal throttling records per week",
        &thermal_labels,
        &[Series {
            name: "records".into(),
            values: h.thermal_weekly.iter().map(|t| t.count).collect(),
        }],
        Bars::Stacked,
    );
    render(&HardwarePage {
        layout: Layout::page("Hardware", "hardware", &session),
        weeks,
        weekly_chart,
        thermal_chart,
        classes: h.classes,
        builds: h.builds,
        weekly: h.weekly,
        machines: h
            .machines
            .into_iter()
            .map(|m| MachineRow {
                machine_id: m.machine_id,
                count: m.count,
                classes: m.classes,
                last_seen: time(m.last_seen),
            })
            .collect(),
        thermal: h.thermal_weekly,
    })
}
