//! `/population`: machines that sent a heartbeat, per build, over the last 1/3/7/14 days.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::auth::Session;
use super::chart::{bar_chart, Bars, Series, Svg};
use super::layout::{render, Layout};
use super::{store_error_page, Web};
use crate::store::schema::unix_now;
use crate::store::Population;

/// Builds in the chart (the table has them all).
pub const CHART_BUILDS: usize = 20;

#[derive(Template)]
#[template(path = "population.html")]
struct PopulationPage {
    layout: Layout,
    chart: Svg,
    builds: Vec<Population>,
}

pub(super) async fn page(State(web): State<Web>, session: Session) -> Response {
    let builds = match web.app.store.population(unix_now()).await {
        Ok(b) => b,
        Err(e) => return store_error_page(e),
    };
    let shown = &builds[..builds.len().min(CHART_BUILDS)];
    let labels: Vec<String> = shown.iter().map(|p| p.build.clone()).collect();
    type Window = (&'static str, fn(&Population) -> i64);
    let windows: [Window; 4] = [
        ("last day", |p| p.last_1_days),
        ("last 3 days", |p| p.last_3_days),
        ("last 7 days", |p| p.last_7_days),
        ("last 14 days", |p| p.last_14_days),
    ];
    let series: Vec<Series> = windows
        .iter()
        .map(|(name, get)| Series {
            name: name.to_string(),
            values: shown.iter().map(get).collect(),
        })
        .collect();
    let chart = bar_chart(
        "population-chart",
        "Machines sending heartbeats per build",
        &labels,
        &series,
        Bars::Grouped,
    );
    render(&PopulationPage {
        layout: Layout::page("Population", "population", &session),
        chart,
        builds,
    })
}
