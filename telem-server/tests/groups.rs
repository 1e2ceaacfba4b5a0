//! Crash groups over time and their annotations, on both engines: the top crashers of a window
//! against the previous one, one group in detail, hiding, comments, skip-list edits stored in
//! the database and the regroup that applies them; then the same over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::Db;

use common::{v4_headers, with, TestServer};
use serde_json::{json, Value};
use telem_server::store::groups::MAX_COMMENT;
use telem_server::store::{Filter, NewRecord, Signature, Store};

/// A fixed "now" for the storage tests: windows are computed from it, not from the clock.
const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

fn crash(n: u32, function: &str, ts: i64, machine: &str, build: &str) -> NewRecord {
    NewRecord {
        identity: format!("{n:064x}"),
        form: "headers".into(),
        external: false,
        machine_id: machine.into(),
        classification: "org.clearlinux/crash/clr".into(),
        severity: 3,
        build: build.into(),
        kernel_version: "6.1.0".into(),
        arch: "x86_64".into(),
        host_type: "QEMU|Standard PC".into(),
        board_name: "blank|blank".into(),
        cpu_model: "cpu".into(),
        bios_version: "1".into(),
        system_name: if n % 2 == 0 {
            "clear-linux-os"
        } else {
            "other-os"
        }
        .into(),
        event_id: format!("{n:032x}"),
        payload_version: 1,
        record_version: 4,
        ts_capture: ts,
        ts_reception: ts,
        payload: payload(function),
        crash: Some(Signature {
            function: function.into(),
            module: "/usr/bin/app".into(),
        }),
    }
}

/// A crashprobe payload that blames `function` (after the skipped abort frames), called from
/// `main`.
fn payload(function: &str) -> String {
    format!(
        "Process: /usr/bin/app\nPID: 100\nSignal: 6\n\nBacktrace (TID 100):\n\
         #0 raise() - [/usr/lib64/libc.so.6] - raise.c:26\n\
         #1 abort() - [/usr/lib64/libc.so.6] - abort.c:79\n\
         #2 {function}() - [/usr/bin/app] - /src/app.c:42\n\
         #3 main() - [/usr/bin/app] - /src/app.c:60\n"
    )
}

/// Records of four groups over two 7-day windows (and one older record):
/// - `rising`: 3 in the window (machines a, b; one on build 40010), 1 before, 1 long before;
/// - `gone`: 2 in the previous window only;
/// - `fresh`: 1 in the window;
/// - `waning`: 2 in the window, 3 before.
async fn seed(s: &Store) {
    let cur = NOW - DAY; // inside the window
    let prev = NOW - 8 * DAY; // inside the previous window
    let mut n = 0;
    let mut next = |f: &str, ts: i64, m: &str, b: &str| {
        n += 1;
        crash(n, f, ts, m, b)
    };
    let records = vec![
        next("rising", cur, "a", "40000"),
        next("rising", cur + 60, "a", "40000"),
        next("rising", NOW - 3 * DAY, "b", "40010"),
        next("rising", prev, "a", "40000"),
        next("rising", NOW - 100 * DAY, "a", "39990"),
        next("gone", prev, "c", "40000"),
        next("gone", prev + 60, "c", "40000"),
        next("fresh", cur, "d", "40000"),
        next("waning", cur, "e", "40000"),
        next("waning", cur, "f", "40000"),
        next("waning", prev, "e", "40000"),
        next("waning", prev, "e", "40000"),
        next("waning", prev, "e", "40000"),
    ];
    s.insert_batch(&records).await.unwrap();
}

async fn top_crashers_compare_two_windows(db: Db) {
    let s = db.open().await;
    seed(&s).await;
    let top = s
        .top_crashers(&Filter::default(), 7, NOW, false, 100)
        .await
        .unwrap();
    let names: Vec<&str> = top.groups.iter().map(|g| g.function.as_str()).collect();
    assert_eq!(names, ["rising", "waning", "fresh"], "{top:?}");
    assert_eq!(top.total, 6);
    assert_eq!(top.previous_total, 6);
    assert_eq!(top.bucket_seconds, DAY);
    // The windows end with the UTC day of NOW (08:00 UTC), so every bucket is a whole day.
    assert_eq!(NOW % DAY, 8 * 3600);
    assert_eq!(top.until, NOW + 16 * 3600);
    assert_eq!(top.since, top.until - 14 * DAY);
    let rising = &top.groups[0];
    assert_eq!((rising.count, rising.previous), (3, 1));
    assert_eq!(rising.change, "rising");
    assert_eq!(rising.machines, 2);
    assert!((rising.share - 0.5).abs() < 1e-9);
    assert_eq!(rising.first_seen, NOW - 100 * DAY);
    assert_eq!(rising.last_seen, NOW - DAY + 60);
    // One bucket per UTC day over both windows, the last the day of NOW: the two records a
    // day old (and a minute more) share the day before it.
    assert_eq!(rising.trend.len(), 14);
    assert_eq!(rising.trend.iter().sum::<i64>(), 4);
    assert_eq!(rising.trend[13], 0);
    assert_eq!(rising.trend[12], 2);
    assert_eq!(rising.trend[10], 1);
    assert_eq!(rising.trend[5], 1);
    assert_eq!(top.groups[1].change, "falling");
    assert_eq!(top.groups[2].change, "new");

    // By build; a one-day window counts by the hour.
    let f = Filter {
        build: Some("40010".into()),
        ..Filter::default()
    };
    let top = s.top_crashers(&f, 7, NOW, false, 100).await.unwrap();
    assert_eq!(top.groups.len(), 1);
    assert_eq!(top.groups[0].count, 1);
    // A one-day window counts by the hour and ends with the hour of the time asked for: a
    // second before NOW (on the hour), the window is [NOW - DAY, NOW), so the records exactly
    // a day old open it and none is before.
    let day = s
        .top_crashers(&Filter::default(), 1, NOW - 1, false, 100)
        .await
        .unwrap();
    assert_eq!(day.bucket_seconds, 3600);
    assert_eq!(day.until, NOW);
    let names: Vec<&str> = day.groups.iter().map(|g| g.function.as_str()).collect();
    assert_eq!(names, ["rising", "waning", "fresh"], "{day:?}");
    assert_eq!((day.groups[0].count, day.groups[0].previous), (2, 0));
    assert_eq!((day.total, day.previous_total), (5, 0));
    assert_eq!(day.groups[0].trend.len(), 48);
    assert_eq!(day.groups[0].trend[24], 2);
    // On the hour itself, the window is the hour after: those records are the previous one's.
    let day = s
        .top_crashers(&Filter::default(), 1, NOW, false, 100)
        .await
        .unwrap();
    assert_eq!(day.until, NOW + 3600);
    assert!(day.groups.is_empty());
    assert_eq!((day.total, day.previous_total), (0, 5));
    let one = s
        .top_crashers(&Filter::default(), 7, NOW, false, 1)
        .await
        .unwrap();
    assert_eq!(one.groups.len(), 1, "the limit holds");
    assert!(s
        .top_crashers(&Filter::default(), 0, NOW, false, 10)
        .await
        .is_err());

    // A hidden group is left out (and counted), unless asked for.
    s.set_hidden("fresh", "/usr/bin/app", true, NOW)
        .await
        .unwrap();
    let top = s
        .top_crashers(&Filter::default(), 7, NOW, false, 100)
        .await
        .unwrap();
    assert_eq!(top.groups.len(), 2);
    assert_eq!(top.hidden_groups, 1);
    assert_eq!(top.total, 6, "shares stay of all crashes");
    let all = s
        .top_crashers(&Filter::default(), 7, NOW, true, 100)
        .await
        .unwrap();
    assert!(all.groups.iter().any(|g| g.function == "fresh" && g.hidden));
    s.set_hidden("fresh", "/usr/bin/app", false, NOW + 1)
        .await
        .unwrap();
    assert!(s.hidden_groups().await.unwrap().is_empty());
}
store_on_both_engines!(top_crashers_compare_two_windows);

async fn group_detail_and_comments(db: Db) {
    let s = db.open().await;
    seed(&s).await;
    let c1 = s
        .add_comment("rising", "/usr/bin/app", "web", "fixed in 40020?", NOW)
        .await
        .unwrap();
    let c2 = s
        .add_comment(
            "rising",
            "/usr/bin/app",
            "api",
            "<b>no</b> 'x' \"y\"",
            NOW + 1,
        )
        .await
        .unwrap();
    assert!(c2.id > c1.id);
    assert!(s
        .add_comment(
            "rising",
            "/usr/bin/app",
            "api",
            &"x".repeat(MAX_COMMENT + 1),
            NOW
        )
        .await
        .is_err());
    s.set_hidden("rising", "/usr/bin/app", true, NOW)
        .await
        .unwrap();

    let d = s
        .group_detail("rising", "/usr/bin/app", 30, NOW)
        .await
        .unwrap();
    assert!(d.hidden);
    assert_eq!(d.count, 5);
    assert_eq!(d.machines_total, 2);
    assert_eq!(d.first_seen, Some(NOW - 100 * DAY));
    assert_eq!(d.last_seen, Some(NOW - DAY + 60));
    // Per day over the last 30 days only: the record 100 days old is not there.
    assert_eq!(d.per_day.iter().map(|c| c.count).sum::<i64>(), 4);
    assert!(d.per_day.windows(2).all(|w| w[0].key < w[1].key));
    let builds: Vec<(&str, i64)> = d
        .per_build
        .iter()
        .map(|c| (c.key.as_str(), c.count))
        .collect();
    assert_eq!(builds, [("40000", 3), ("39990", 1), ("40010", 1)]);
    assert_eq!(d.per_system.iter().map(|c| c.count).sum::<i64>(), 5);
    assert_eq!(d.machines[0].machine_id, "a");
    assert_eq!(d.machines[0].count, 4);
    assert_eq!(d.machines[1].machine_id, "b");
    let texts: Vec<&str> = d.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["fixed in 40020?", "<b>no</b> 'x' \"y\""]);
    assert_eq!(d.comments[1].author, "api");

    // Comments belong to one group.
    assert!(s
        .comments("waning", "/usr/bin/app")
        .await
        .unwrap()
        .is_empty());
    let none = s.group_detail("nothing", "x", 30, NOW).await.unwrap();
    assert_eq!((none.count, none.first_seen), (0, None));
}
store_on_both_engines!(group_detail_and_comments);

async fn skip_edits_are_stored_and_regroup_applies_them(db: Db) {
    let s = db.open().await;
    seed(&s).await;
    let configured: Vec<String> = ["raise", "abort"].iter().map(|e| e.to_string()).collect();
    assert!(s.skip_edits().await.unwrap().is_empty());

    // Blaming `rising` is wrong: skip it, and `main` is the group.
    s.edit_skip("rising", true, NOW).await.unwrap();
    s.edit_skip("abort", false, NOW).await.unwrap();
    let list = s.effective_skip(&configured).await.unwrap();
    assert!(list.skips("rising", "/usr/bin/app"));
    assert!(!list.skips("abort", "/usr/lib64/libc.so.6"));
    assert!(list.skips("raise", "/usr/lib64/libc.so.6"));
    // Edits survive a reopen: every instance sharing the database reads them.
    s.close().await;
    let s = db.open().await;
    let edits = s.skip_edits().await.unwrap();
    assert_eq!(edits.len(), 2);

    // Only `abort` removed would blame abort; add it back, keep `rising` skipped.
    s.edit_skip("abort", true, NOW + 1).await.unwrap();
    let list = s.effective_skip(&configured).await.unwrap();
    let done = s.regroup(&list).await.unwrap();
    assert_eq!(done.examined, 13);
    assert_eq!(done.changed, 5);
    let main = Filter {
        crash_function: Some("main".into()),
        ..Filter::default()
    };
    assert_eq!(s.list(&main, 100).await.unwrap().len(), 5);

    // Reset: the configured list again.
    s.reset_skip().await.unwrap();
    assert!(s.skip_edits().await.unwrap().is_empty());
    let list = s.effective_skip(&configured).await.unwrap();
    assert_eq!(s.regroup(&list).await.unwrap().changed, 5);
    assert!(s.list(&main, 100).await.unwrap().is_empty());
}
store_on_both_engines!(skip_edits_are_stored_and_regroup_applies_them);

// ---- over HTTP ----

fn post_crash(s: &TestServer, event: u32, machine: &str, function: &str) {
    let h = with(
        &v4_headers(&format!("{event:032x}")),
        "Classification",
        Some("org.clearlinux/crash/clr"),
    );
    let h = with(&h, "Machine-Id", Some(machine));
    let r = s.post("/v2/collector", &h, payload(function).as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
}

fn post_json(s: &TestServer, path: &str, body: Value) -> common::Reply {
    s.post(
        path,
        &[("Content-Type".to_string(), "application/json".to_string())],
        body.to_string().as_bytes(),
    )
}

fn functions(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["function"].as_str().unwrap().to_string())
        .collect()
}

fn crash_groups_api(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    post_crash(&s, 1, "aaaa", "parse_config");
    post_crash(&s, 2, "bbbb", "parse_config");
    post_crash(&s, 3, "aaaa", "load_file");

    let top = s.get("/api/v1/crashes?window=7").json();
    assert_eq!(functions(&top, "groups"), ["parse_config", "load_file"]);
    assert_eq!(top["total"], 3);
    assert_eq!(top["groups"][0]["change"], "new");
    assert_eq!(top["groups"][0]["trend"].as_array().unwrap().len(), 14);
    assert_eq!(s.get("/api/v1/crashes?window=0").status, 400);
    assert_eq!(s.get("/api/v1/crashes?window=7&bogus=1").status, 400);

    // Hide: gone from both listings, back with include_hidden, and back after unhide.
    let key = json!({"function": "parse_config", "module": "/usr/bin/app"});
    let r = post_json(&s, "/api/v1/crashes/hide", key.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        functions(&s.get("/api/v1/crashes").json(), "groups"),
        ["load_file"]
    );
    let top = s.get("/api/v1/crashes?window=7").json();
    assert_eq!(functions(&top, "groups"), ["load_file"]);
    assert_eq!(top["hidden_groups"], 1);
    let all = s.get("/api/v1/crashes?include_hidden=true").json();
    assert_eq!(functions(&all, "groups"), ["parse_config", "load_file"]);
    assert_eq!(
        post_json(&s, "/api/v1/crashes/hide", json!({"function": ""})).status,
        400
    );

    // Comments, and the detail of the group.
    let r = post_json(
        &s,
        "/api/v1/crashes/comment",
        json!({"function": "parse_config", "module": "/usr/bin/app", "text": "  seen on 40000  "}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["author"], "api");
    let long = "x".repeat(MAX_COMMENT + 1);
    let r = post_json(
        &s,
        "/api/v1/crashes/comment",
        json!({"function": "parse_config", "module": "/usr/bin/app", "text": long}),
    );
    assert_eq!(r.status, 400);
    let g = s
        .get("/api/v1/crashes/group?function=parse_config&module=/usr/bin/app&samples=2")
        .json();
    assert_eq!(g["count"], 2);
    assert_eq!(g["hidden"], true);
    assert_eq!(g["comments"][0]["text"], "seen on 40000");
    assert_eq!(g["per_build"][0], json!({"key": "40000", "count": 2}));
    assert_eq!(g["machines"].as_array().unwrap().len(), 2);
    let sample = &g["samples"][0];
    let line = sample["deciding_line"].as_u64().unwrap() as usize;
    let text = sample["payload"].as_str().unwrap();
    assert!(text
        .lines()
        .nth(line)
        .unwrap()
        .starts_with("#2 parse_config()"));
    assert_eq!(
        s.get("/api/v1/crashes/group?function=nothing&module=x")
            .status,
        404
    );
    let r = post_json(&s, "/api/v1/crashes/unhide", key);
    assert_eq!(r.status, 200);
    assert_eq!(
        functions(&s.get("/api/v1/crashes").json(), "groups"),
        ["parse_config", "load_file"]
    );

    // Skip-list edits, then a regroup: both crashes blame main.
    let r = post_json(
        &s,
        "/api/v1/crashes/skip",
        json!({"action": "add", "entry": "parse_config"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post_json(
        &s,
        "/api/v1/crashes/skip",
        json!({"action": "add", "entry": "load_file [app]"}),
    );
    let v = r.json();
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .contains(&json!("load_file [app]")));
    assert_eq!(v["edits"].as_array().unwrap().len(), 2);
    assert_eq!(
        post_json(
            &s,
            "/api/v1/crashes/skip",
            json!({"action": "add", "entry": " "})
        )
        .status,
        400
    );
    assert_eq!(
        post_json(
            &s,
            "/api/v1/crashes/skip",
            json!({"action": "drop", "entry": "x"})
        )
        .status,
        400
    );
    // Not a JSON request (a plain form could send that): refused, nothing started.
    let r = s.post("/api/v1/regroup", &[], b"");
    assert_eq!(r.status, 415);
    assert_eq!(s.get("/api/v1/regroup").json()["state"], "idle");
    let r = post_json(&s, "/api/v1/regroup", json!({}));
    let status = wait_regroup(&s, r);
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["changed"], 3);
    assert_eq!(
        functions(&s.get("/api/v1/crashes").json(), "groups"),
        ["main"]
    );
    // A new crash is grouped with the edited list at once.
    post_crash(&s, 4, "cccc", "load_file");
    let g = s.get("/api/v1/crashes").json();
    assert_eq!(g["groups"][0]["count"], 4);

    // Reset and regroup: as configured again.
    let r = post_json(&s, "/api/v1/crashes/skip", json!({"action": "reset"}));
    assert!(r.json()["edits"].as_array().unwrap().is_empty());
    let status = wait_regroup(&s, post_json(&s, "/api/v1/regroup", json!({})));
    assert_eq!(status["changed"], 4);
    assert_eq!(
        functions(&s.get("/api/v1/crashes").json(), "groups"),
        ["load_file", "parse_config"]
    );
}
server_on_both_engines!(crash_groups_api);

/// The regroup's final status: the POST's answer when done, else polled.
fn wait_regroup(s: &TestServer, r: common::Reply) -> Value {
    let mut v = r.json();
    for _ in 0..600 {
        if v["state"] != "running" {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        v = s.get("/api/v1/regroup").json();
    }
    panic!("regroup still running: {v}");
}

#[test]
fn the_query_token_guards_every_crash_endpoint() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = common::sqlite_config(d.path());
    cfg.query_token = Some("q-secret".into());
    let s = TestServer::start(cfg);
    for path in [
        "/api/v1/crashes?window=7",
        "/api/v1/crashes/group?function=f&module=m",
        "/api/v1/crashes/skip",
        "/api/v1/regroup",
        "/api/v1/hardware",
    ] {
        assert_eq!(s.get(path).status, 401, "{path}");
    }
    let key = json!({"function": "f", "module": "m"});
    for path in [
        "/api/v1/crashes/hide",
        "/api/v1/crashes/unhide",
        "/api/v1/crashes/comment",
        "/api/v1/crashes/skip",
        "/api/v1/regroup",
    ] {
        assert_eq!(post_json(&s, path, key.clone()).status, 401, "{path}");
    }
    let auth = ("Authorization", "Bearer q-secret");
    let r = common::get(&s.url("/api/v1/crashes/skip"), &[auth]);
    assert_eq!(r.status, 200);
}

/// Two servers on one database: an edit made through one is what the other regroups with.
#[test]
fn instances_sharing_a_database_share_the_skip_list() {
    let d = tempfile::tempdir().unwrap();
    let a = TestServer::start(common::sqlite_config(d.path()));
    let b = TestServer::start(common::sqlite_config(d.path()));
    post_crash(&a, 1, "aaaa", "parse_config");
    let r = post_json(
        &a,
        "/api/v1/crashes/skip",
        json!({"action": "add", "entry": "parse_config"}),
    );
    assert_eq!(r.status, 200);
    assert!(b.get("/api/v1/crashes/skip").json()["entries"]
        .as_array()
        .unwrap()
        .contains(&json!("parse_config")));
    let status = wait_regroup(&b, post_json(&b, "/api/v1/regroup", json!({})));
    assert_eq!(status["changed"], 1, "{status}");
    assert_eq!(
        functions(&a.get("/api/v1/crashes").json(), "groups"),
        ["main"]
    );
}
