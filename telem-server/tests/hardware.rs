//! The hardware view on both engines: rasprobe's error classes per class, build, week and
//! machine, thermal records per week; then over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::Db;

use common::{v4_headers, with, TestServer};
use telem_server::store::hardware::{day_string, week_start};
use telem_server::store::NewRecord;

const NOW: i64 = 1_800_000_000;
const WEEK: i64 = 7 * 86_400;

fn record(n: u32, class: &str, ts: i64, machine: &str, build: &str) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: machine.into(),
        classification: class.into(),
        severity: 2,
        build: build.into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "h".into(),
        board_name: "b".into(),
        cpu_model: "c".into(),
        bios_version: "1".into(),
        system_name: "clear-linux-os".into(),
        event_id: format!("{n:032x}"),
        payload_version: 1,
        record_version: 4,
        ts_capture: ts,
        ts_reception: ts,
        payload: "CPU 0 BANK 5\nSTATUS 9c00000000010091 MCGSTATUS 0\n".into(),
        crash: None,
    }
}

async fn hardware_view(db: Db) {
    let s = db.open().await;
    let this = NOW;
    let last = NOW - WEEK;
    let mut n = 0;
    let mut r = |class: &str, ts: i64, m: &str, b: &str| {
        n += 1;
        record(n, class, ts, m, b)
    };
    s.insert_batch(&[
        r("org.clearlinux/mce/corrected", this, "m1", "40000"),
        r("org.clearlinux/mce/corrected", this, "m1", "40000"),
        r("org.clearlinux/mce/corrected", last, "m1", "40010"),
        r("org.clearlinux/memory/corrected", this, "m2", "40000"),
        r("org.clearlinux/pcie/fatal", last, "m1", "40000"),
        r("org.clearlinux/mce/thermal", this, "m3", "40000"),
        r("org.clearlinux/mce/thermal", this, "m4", "40000"),
        r("org.clearlinux/mce/thermal", last, "m3", "40000"),
        // Not hardware errors, or too old for a 4-week view.
        r("org.clearlinux/hello/world", this, "m1", "40000"),
        r("org.clearlinux/MCE/corrected", this, "m1", "40000"),
        r("org.clearlinux/memoryx/corrected", this, "m1", "40000"),
        r(
            "org.clearlinux/mce/corrected",
            NOW - 10 * WEEK,
            "m1",
            "40000",
        ),
    ])
    .await
    .unwrap();
    let h = s.hardware(4, NOW).await.unwrap();
    assert_eq!(h.since, week_start(NOW) - 3 * WEEK);
    let classes: Vec<(&str, i64)> = h
        .classes
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(
        classes,
        [
            ("org.clearlinux/mce/corrected", 3),
            ("org.clearlinux/memory/corrected", 1),
            ("org.clearlinux/pcie/fatal", 1)
        ]
    );
    let builds: Vec<(&str, &str, i64)> = h
        .builds
        .iter()
        .map(|b| (b.build.as_str(), b.classification.as_str(), b.count))
        .collect();
    assert_eq!(
        builds,
        [
            ("40000", "org.clearlinux/mce/corrected", 2),
            ("40000", "org.clearlinux/memory/corrected", 1),
            ("40000", "org.clearlinux/pcie/fatal", 1),
            ("40010", "org.clearlinux/mce/corrected", 1),
        ]
    );
    let this_week = day_string(week_start(this));
    let last_week = day_string(week_start(last));
    let weekly: Vec<(&str, &str, i64)> = h
        .weekly
        .iter()
        .map(|w| (w.week.as_str(), w.classification.as_str(), w.count))
        .collect();
    assert_eq!(
        weekly,
        [
            (last_week.as_str(), "org.clearlinux/mce/corrected", 1),
            (last_week.as_str(), "org.clearlinux/pcie/fatal", 1),
            (this_week.as_str(), "org.clearlinux/mce/corrected", 2),
            (this_week.as_str(), "org.clearlinux/memory/corrected", 1),
        ]
    );
    assert_eq!(h.machines[0].machine_id, "m1");
    assert_eq!((h.machines[0].count, h.machines[0].classes), (4, 2));
    assert_eq!(h.machines[1].machine_id, "m2");
    assert_eq!(h.machines.len(), 2);
    let thermal: Vec<(&str, i64, i64)> = h
        .thermal_weekly
        .iter()
        .map(|t| (t.week.as_str(), t.count, t.machines))
        .collect();
    assert_eq!(
        thermal,
        [(last_week.as_str(), 1, 1), (this_week.as_str(), 2, 2)]
    );
    assert!(s.hardware(0, NOW).await.is_err());
}
store_on_both_engines!(hardware_view);

#[test]
fn hardware_over_http() {
    let d = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(d.path()));
    for (n, class) in [
        "org.clearlinux/mce/SRAR",
        "org.clearlinux/mce/thermal",
        "org.clearlinux/hello/world",
    ]
    .iter()
    .enumerate()
    {
        let h = with(
            &v4_headers(&format!("{n:032x}")),
            "Classification",
            Some(class),
        );
        assert_eq!(s.post("/v2/collector", &h, b"x").status, 201);
    }
    let h = s.get("/api/v1/hardware?weeks=2").json();
    assert_eq!(h["weeks"], 2);
    assert_eq!(h["classes"][0]["key"], "org.clearlinux/mce/SRAR");
    assert_eq!(h["classes"].as_array().unwrap().len(), 1);
    assert_eq!(h["thermal_weekly"][0]["count"], 1);
    assert_eq!(s.get("/api/v1/hardware?weeks=0").status, 400);
    assert_eq!(s.get("/api/v1/hardware?days=3").status, 400);
}
