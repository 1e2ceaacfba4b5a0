//! telem-server's web pages in a real headless Chromium, driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`), against a server seeded with realistic data (see
//! common/seed.rs): log in, filter records, open a record, open the top crasher, hide it, edit
//! the skip list and see the groups change; no console errors on any page; HTML and script
//! sent by machines stays inert text. Screenshots of every page go to
//! `$CARGO_TARGET_TMPDIR/screenshots`, and to docs/screenshots with
//! `TELEM_UPDATE_SCREENSHOTS=1`.
//!
//! Without Chromium the browser tests skip with a note; under CI (`CI` set) they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/seed.rs"]
mod seed;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::TestServer;
use seed::SeedRecord;
use serde_json::{json, Value};
use webdriver::Browser;

const TOKEN: &str = "browser-test-query-token-0123456789";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The seed records, built once per test binary (compiling and crashing the C program is the
/// slow part); times relative to `now` at the first call.
fn seed_records() -> &'static Vec<SeedRecord> {
    static RECORDS: OnceLock<Vec<SeedRecord>> = OnceLock::new();
    RECORDS.get_or_init(|| seed::build(now()))
}

/// A seeded server of its own (tests change groups and skip lists).
struct Site {
    server: TestServer,
    _dir: tempfile::TempDir,
    records: Vec<(i64, SeedRecord)>,
    token: Option<&'static str>,
}

impl Site {
    fn start(token: Option<&'static str>) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::sqlite_config(dir.path());
        cfg.query_token = token.map(str::to_string);
        let db = cfg.storage.path.clone();
        let server = TestServer::start(cfg);
        let records = seed_records();
        let ids = seed::post(&format!("http://{}", server.addr), records);
        let times: Vec<(i64, i64)> = ids
            .iter()
            .zip(records)
            .map(|(id, r)| (*id, r.received))
            .collect();
        seed::backdate_sqlite(&db, &times);
        Site {
            server,
            _dir: dir,
            records: ids.into_iter().zip(records.iter().cloned()).collect(),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// A query API answer (with the bearer token when one is set).
    fn api(&self, path: &str) -> Value {
        let auth = self.token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let r = common::get(&self.url(path), &headers);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    }
}

// ---- The seed data itself ----

#[test]
fn seed_data_comes_from_real_probe_code_and_spans_weeks() {
    let site = Site::start(Some(TOKEN));
    let n = site.records.len();
    assert!(n > 250, "{n} records");

    // Every crash mode of the C program is its own group in the installed program's path,
    // blamed on its own function, not on glibc's abort or allocation machinery.
    let groups = site.api("/api/v1/crashes?limit=1000");
    let groups = groups["groups"].as_array().unwrap();
    for (mode, function) in seed::CRASHES {
        if mode == "doublefree" {
            // a_double_free_is_blamed_on_the_program_not_on_glibc
            continue;
        }
        assert!(
            groups
                .iter()
                .any(|g| g["function"] == json!(function) && g["module"] == json!(seed::IMGVIEW)),
            "no group {function} in {groups:#?}"
        );
    }
    // Kernel oopses from the samples are grouped too (module `kernel`).
    assert!(
        groups
            .iter()
            .filter(|g| g["module"] == json!("kernel"))
            .count()
            >= 3,
        "{groups:#?}"
    );
    // A payload as the crash probe wrote it: the signal and the frames with source lines.
    let parse = site
        .api("/api/v1/records?crash_function=parse_config&crash_module=/usr/bin/imgview&limit=1");
    let payload = parse["records"][0]["payload"].as_str().unwrap();
    assert!(
        payload.starts_with("Process: /usr/bin/imgview\n"),
        "{payload}"
    );
    assert!(payload.contains("Signal: 6\n"), "{payload}");
    assert!(
        payload.contains(
            "parse_config() - [/usr/bin/imgview] - /usr/src/debug/imgview-1.4/imgview.c:"
        ),
        "{payload}"
    );

    // Reception times over three weeks and more, the newest today.
    let days = site.api("/api/v1/counts/day");
    let days = days["counts"].as_array().unwrap();
    assert!(days.len() >= 21, "{days:?}");

    // Heartbeats: three builds, fewer machines in the last day than in the last fourteen.
    let pop = site.api("/api/v1/population");
    let builds: BTreeSet<&str> = pop["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["build"].as_str().unwrap())
        .collect();
    assert_eq!(
        builds,
        ["41200", "41210", "41220"]
            .into_iter()
            .collect::<BTreeSet<_>>()
    );
    let total = |k: &str| -> i64 {
        pop["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_i64().unwrap())
            .sum()
    };
    assert!(total("last_1_days") < total("last_14_days"), "{pop}");

    // rasprobe's classes: corrected and uncorrected machine checks, memory, thermal.
    let classes = site.api("/api/v1/counts/classification?classification=org.clearlinux/mce/*");
    let classes: BTreeSet<&str> = classes["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert!(classes.len() >= 3, "{classes:?}");
    assert!(
        classes.contains("org.clearlinux/mce/thermal"),
        "{classes:?}"
    );

    // The hostile records were accepted with their markup intact.
    let evil = site.api("/api/v1/records?machine_id=%3Csvg%20onload%3Dwindow.__xss%3D1%3E");
    assert_eq!(evil["records"].as_array().unwrap().len(), 3, "{evil}");
    assert_eq!(
        evil["records"][0]["board_name"],
        json!("<script>window.__xss=1;alert(1)</script>")
    );
}

/// A double free aborts inside glibc's free. With libc's debug information installed (as a
/// distribution with debuginfo packages has it) the crash probe names that frame by its
/// internal alias `__GI___libc_free`, which must be skipped like `free` and `__libc_free`, so the
/// crash is blamed on the program's own function.
#[test]
fn a_double_free_is_blamed_on_the_program_not_on_glibc() {
    let site = Site::start(None);
    let groups = site.api("/api/v1/crashes?limit=1000");
    let groups = groups["groups"].as_array().unwrap();
    let libc: Vec<_> = groups
        .iter()
        .filter(|g| g["module"].as_str().unwrap().contains("libc.so"))
        .collect();
    assert!(libc.is_empty(), "crashes blamed on glibc: {libc:#?}");
    assert!(
        groups.iter().any(
            |g| g["function"] == json!("release_buffer") && g["module"] == json!(seed::IMGVIEW)
        ),
        "{groups:#?}"
    );
}

// ---- The browser ----

/// One browser at a time: the machine running the suite has few cores.
fn browser_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The errors the browser logged since the last call (console errors, failed loads, Content
/// Security Policy violations).
fn console_errors(b: &Browser) -> Vec<String> {
    b.log()
        .into_iter()
        .filter(|(level, _)| level == "SEVERE")
        .map(|(_, m)| m)
        .collect()
}

/// Fails the test if the page logged an error, opened a dialog, or ran a payload.
fn assert_clean(b: &Browser, what: &str) {
    let errors = console_errors(b);
    assert!(errors.is_empty(), "{what}: console errors: {errors:#?}");
    assert_eq!(b.alert_text(), None, "{what}: an alert opened");
    let flag = b.exec(
        &format!("return typeof window.{};", seed::XSS_FLAG),
        json!([]),
    );
    assert_eq!(flag, json!("undefined"), "{what}: a payload ran");
}

/// Opens `path` and checks the page is clean.
fn visit(b: &Browser, site: &Site, path: &str) {
    b.goto(&site.url(path));
    assert_clean(b, path);
}

fn screenshot_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")];
    if std::env::var_os("TELEM_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
    }
    dirs
}

/// Saves a screenshot of the whole page as `name.png`.
fn screenshot(b: &Browser, name: &str) {
    let png = b.page_screenshot(1800);
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    for dir in screenshot_dirs() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    }
    if png.len() > 300 * 1024 {
        eprintln!("note: screenshot {name} is {} KB", png.len() / 1024);
    }
}

#[test]
fn browser_harness_reads_console_errors_and_dialogs() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(None);
    b.goto(&site.url("/healthz"));
    assert_eq!(b.find("body").text(), "ok");
    // A plain-text answer has no icon link, so Chromium asks for /favicon.ico (404): the log
    // shows it.
    let log = b.log();
    assert!(
        log.iter().all(|(_, m)| m.contains("/favicon.ico")),
        "{log:?}"
    );
    // A page that logs an error and opens a dialog: both are seen.
    b.goto("data:text/html,<p>x</p><script>console.error('boom');alert('hi')</script>");
    assert_eq!(b.alert_text().as_deref(), Some("hi"));
    b.cmd_dismiss_alert();
    let log = b.log();
    assert!(
        log.iter().any(|(l, m)| l == "SEVERE" && m.contains("boom")),
        "{log:?}"
    );
}

/// Waits up to `limit` for `f` to hold.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Logs in through the form (the browser is on any page that redirected to /login).
fn log_in(b: &Browser, token: &str) {
    b.wait_for("#login-form");
    let input = b.find("#token");
    input.clear();
    input.send_keys(token);
    b.find("#login-submit").click();
}

/// The ids of the record rows on the page, top to bottom.
fn row_ids(b: &Browser) -> Vec<i64> {
    rows(b, "#records tr.record", "data-id", "td")
        .iter()
        .map(|(id, _)| id.parse().unwrap())
        .collect()
}

/// For each element matching `css`: its attribute `attr` and the text of its first `cell`.
/// Read in one script, so a page being replaced cannot leave the test holding stale elements.
fn rows(b: &Browser, css: &str, attr: &str, cell: &str) -> Vec<(String, String)> {
    let v = b.exec(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => {
            const c = e.querySelector(arguments[2]);
            return [e.getAttribute(arguments[1]) || '', c ? c.innerText : ''];
        });",
        json!([css, attr, cell]),
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The rendered text of every element matching `css`, read in one script.
fn texts(b: &Browser, css: &str) -> Vec<String> {
    let v = b.exec(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);",
        json!([css]),
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// The `ids` of an API records answer.
fn api_ids(v: &Value) -> Vec<i64> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

/// Sets the filter form's input `name` to `value` and submits it.
fn filter(b: &Browser, name: &str, value: &str) {
    let input = b.find(&format!("#filter [name=\"{name}\"]"));
    input.clear();
    input.send_keys(value);
    b.find("#filter-submit").click();
}

#[test]
fn log_in_filter_records_and_open_one() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(Some(TOKEN));

    // Without a session every page leads to the login form, which remembers where to go.
    b.goto(&site.url("/records"));
    b.wait_for("#login-form");
    assert!(b.url().contains("/login?next="), "{}", b.url());
    assert_clean(&b, "login");
    // A wrong token is refused with a message, and the form is shown again.
    log_in(&b, "not-the-query-token-at-all");
    assert!(b.wait_for("#login-error").displayed());
    assert!(b.try_find("#records").is_none());
    // The refusal is a 401, which the browser logs as a failed load of the page itself.
    let errors = console_errors(&b);
    assert!(
        errors
            .iter()
            .all(|m| m.contains("/login - ") && m.contains("401")),
        "{errors:?}"
    );
    assert_clean(&b, "failed login");
    log_in(&b, TOKEN);
    b.wait_for("#records");
    assert!(b.url().ends_with("/records"), "{}", b.url());
    assert_clean(&b, "records after login");
    for id in [
        "#nav-overview",
        "#nav-records",
        "#nav-crashes",
        "#nav-population",
        "#nav-hardware",
        "#logout",
        "#main",
    ] {
        b.find(id);
    }

    // The first page is the newest records, as the API lists them.
    let all = site.api("/api/v1/records?limit=1000");
    let rows = row_ids(&b);
    assert!(!rows.is_empty());
    assert_eq!(rows, api_ids(&all)[..rows.len()].to_vec());

    // Filtering by classification keeps it in the URL and shows only those records.
    let class = seed::CRASH_CLASS;
    filter(&b, "classification", class);
    wait_until("filtered URL", Duration::from_secs(30), || {
        b.url()
            .contains("classification=org.clearlinux%2Fcrash%2Fclr")
            || b.url().contains("classification=org.clearlinux/crash/clr")
    });
    assert_clean(&b, "filtered records");
    let crashes = site.api("/api/v1/records?classification=org.clearlinux/crash/clr&limit=1000");
    let crash_ids = api_ids(&crashes);
    let page1 = row_ids(&b);
    assert!(!page1.is_empty());
    assert_eq!(page1, crash_ids[..page1.len()].to_vec());
    let csv = b.find("#export-csv").attr("href").unwrap();
    assert!(
        csv.contains("/api/v1/export.csv?") && csv.contains("classification="),
        "{csv}"
    );
    // The next page continues where the first stopped.
    if page1.len() < crash_ids.len() {
        b.find("#next-page").click();
        wait_until("second page", Duration::from_secs(30), || {
            b.url().contains("before_id=")
        });
        assert_clean(&b, "second page");
        let page2 = row_ids(&b);
        assert_eq!(
            page2,
            crash_ids[page1.len()..page1.len() + page2.len()].to_vec()
        );
        b.back();
        b.wait_for("#records");
    }

    // A new record matching the filter is announced by the page's polling.
    let fresh = {
        let mut r = site
            .records
            .iter()
            .rev()
            .find(|(_, r)| r.header("Classification") == class)
            .unwrap()
            .1
            .clone();
        for (k, v) in r.headers.iter_mut() {
            if k == "Event-Id" {
                *v = "0123456789abcdef0123456789abcdef".into();
            }
        }
        r
    };
    seed::post(&format!("http://{}", site.server.addr), &[fresh]);
    wait_until("new records notice", Duration::from_secs(90), || {
        b.exec(
            "const e = document.querySelector('#new-records');
             return !!e && e.getClientRects().length > 0 && e.innerText.trim() !== '';",
            json!([]),
        ) == json!(true)
    });
    assert_clean(&b, "new records notice");

    // Opening a record shows every header, the payload as text and links to the machine's
    // records and the crash group.
    let first = *page1
        .iter()
        .find(|id| {
            site.records
                .iter()
                .any(|(i, r)| i == *id && r.payload.starts_with("Process: /usr/bin/imgview"))
        })
        .unwrap();
    b.find(&format!(
        "#records tr.record[data-id=\"{first}\"] a.record-link"
    ))
    .click();
    b.wait_for("#payload");
    assert!(
        b.url().ends_with(&format!("/records/{first}")),
        "{}",
        b.url()
    );
    assert_clean(&b, "record");
    let api = site.api(&format!("/api/v1/records/{first}"));
    let headers = b.find("#headers").text();
    for key in [
        "machine_id",
        "build",
        "board_name",
        "cpu_model",
        "classification",
    ] {
        let v = api[key].as_str().unwrap();
        assert!(headers.contains(v), "{key} {v} not in {headers}");
    }
    let payload = b.find("#payload").text();
    assert!(payload.contains("Backtrace (TID"), "{payload}");
    assert!(payload.contains("Process: /usr/bin/imgview"), "{payload}");
    let machine = b.find("#machine-records").attr("href").unwrap();
    assert!(machine.contains("machine_id="), "{machine}");
    let group = b.find("#crash-group").attr("href").unwrap();
    assert!(group.contains("/crashes/group?function="), "{group}");

    // Logging out ends the session.
    b.find("#logout").click();
    b.goto(&site.url("/records"));
    b.wait_for("#login-form");
}

/// The crash group rows of the crashes page: (function, module, count).
fn group_rows(b: &Browser) -> Vec<(String, String, i64)> {
    let functions = rows(b, "#crashes tr.crash-group", "data-function", "td.count");
    let modules = rows(b, "#crashes tr.crash-group", "data-module", "td.count");
    functions
        .into_iter()
        .zip(modules)
        .map(|((f, count), (m, _))| {
            let count = count.trim().replace(',', "");
            (
                f,
                m,
                count.parse().unwrap_or_else(|_| panic!("count {count:?}")),
            )
        })
        .collect()
}

fn has_group(b: &Browser, function: &str) -> bool {
    group_rows(b).iter().any(|(f, _, _)| f == function)
}

#[test]
fn triage_the_top_crasher_hide_it_and_edit_the_skip_list() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(None);

    visit(&b, &site, "/crashes?window=30");
    let rows = group_rows(&b);
    assert!(rows.len() >= 5, "{rows:?}");
    // Largest first; the top crasher's count is the API's for the same window.
    assert!(rows.windows(2).all(|w| w[0].2 >= w[1].2), "{rows:?}");
    let (top_fn, top_mod, top_count) = rows[0].clone();
    let since = now() - 30 * seed::DAY;
    let api = site.api(&format!("/api/v1/crashes?since={since}&limit=1000"));
    let expected = api["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["function"] == json!(top_fn) && g["module"] == json!(top_mod))
        .unwrap_or_else(|| panic!("{top_fn} not in {api}"))["count"]
        .as_i64()
        .unwrap();
    assert_eq!(top_count, expected);
    b.find("#crashes tr.crash-group a.group-link").click();
    b.wait_for("#group-title");
    assert_clean(&b, "top crash group");
    assert!(b.find("#group-title").text().contains(&top_fn));
    assert_eq!(b.find("#per-day").tag(), "svg");
    for t in ["#per-build", "#per-system", "#machines"] {
        b.find(t);
    }
    let samples = b.all("#samples pre.backtrace");
    assert!(!samples.is_empty());
    let deciding = b.find("#samples mark.deciding-frame").text();
    assert!(deciding.contains(&top_fn), "{deciding}");

    // A comment is kept and shown as text.
    let comment = "Seen on XPS 13 after resume <b>not bold</b>";
    b.find("#comment-form textarea[name=comment]")
        .send_keys(comment);
    b.find("#comment-submit").click();
    wait_until("comment shown", Duration::from_secs(30), || {
        texts(&b, "#comments").concat().contains(comment)
    });
    assert_clean(&b, "comment");

    // Hidden, it leaves the list; "show hidden" brings it back; unhidden it is back for good.
    b.find("#hide").click();
    b.wait_for("#unhide");
    assert_clean(&b, "hidden");
    visit(&b, &site, "/crashes?window=30");
    assert!(!has_group(&b, &top_fn), "{top_fn} still listed");
    b.find("#show-hidden").click();
    wait_until("hidden group shown", Duration::from_secs(30), || {
        has_group(&b, &top_fn)
    });
    assert_clean(&b, "show hidden");
    let path = format!(
        "/crashes/group?function={}&module={}",
        enc(&top_fn),
        enc(&top_mod)
    );
    visit(&b, &site, &path);
    b.find("#unhide").click();
    b.wait_for("#hide");
    visit(&b, &site, "/crashes?window=30");
    assert!(has_group(&b, &top_fn));

    // The program's own allocation wrapper is blamed until it goes on the skip list; then
    // its caller is.
    assert!(has_group(&b, "xmalloc") && !has_group(&b, "load_image"));
    visit(&b, &site, "/crashes/skip");
    let entries = b.find("#skip-list").text();
    assert!(entries.contains("abort"), "{entries}");
    b.find("#skip-add input[name=entry]")
        .send_keys("xmalloc [imgview]");
    b.find("#skip-add button, #skip-add input[type=submit]")
        .click();
    wait_until("entry added", Duration::from_secs(30), || {
        texts(&b, "#skip-list li.skip-entry")
            .iter()
            .any(|e| e.contains("xmalloc [imgview]"))
    });
    assert_clean(&b, "skip entry added");
    b.find("#regroup").click();
    let result = b.wait_for("#regroup-result").text();
    assert!(!result.trim().is_empty());
    assert_clean(&b, "regrouped");
    // The regroup runs in the background: the list follows when it is done.
    wait_until("xmalloc regrouped", Duration::from_secs(90), || {
        visit(&b, &site, "/crashes?window=30");
        has_group(&b, "load_image") && !has_group(&b, "xmalloc")
    });
    // Removing the entry and re-grouping puts it back.
    visit(&b, &site, "/crashes/skip");
    b.all("#skip-list li.skip-entry")
        .into_iter()
        .find(|e| e.text().contains("xmalloc [imgview]"))
        .unwrap()
        .find("button.skip-remove")
        .click();
    wait_until("entry removed", Duration::from_secs(30), || {
        !texts(&b, "#skip-list")
            .concat()
            .contains("xmalloc [imgview]")
    });
    b.find("#regroup").click();
    b.wait_for("#regroup-result");
    wait_until("xmalloc back", Duration::from_secs(90), || {
        visit(&b, &site, "/crashes?window=30");
        has_group(&b, "xmalloc") && !has_group(&b, "load_image")
    });
}

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

#[test]
fn html_sent_by_machines_stays_text_on_every_page() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(None);
    let evil: Vec<i64> = site
        .records
        .iter()
        .filter(|(_, r)| r.header("Machine-Id") == "<svg onload=window.__xss=1>")
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(evil.len(), 3);
    for path in [
        "/",
        "/records",
        "/crashes?window=1",
        "/crashes?window=30",
        "/crashes/skip",
        "/population",
        "/hardware",
    ] {
        visit(&b, &site, path);
    }
    // The list shows the hostile fields as text.
    visit(
        &b,
        &site,
        &format!("/records?machine_id={}", enc("<svg onload=window.__xss=1>")),
    );
    assert_eq!(row_ids(&b).len(), 3);
    let text = b.find("#records").text();
    assert!(
        text.contains("<img src=x onerror=window.__xss=1;alert(1)>"),
        "{text}"
    );
    for id in &evil {
        visit(&b, &site, &format!("/records/{id}"));
        let headers = b.find("#headers").text();
        for v in [
            "<script>window.__xss=1;alert(1)</script>",
            "</pre><script>window.__xss=1</script>",
            "'><svg onload=window.__xss=1>",
            "<svg onload=window.__xss=1>",
        ] {
            assert!(headers.contains(v), "{v} not in {headers}");
        }
    }
    let hostile = &site
        .records
        .iter()
        .find(|(_, r)| r.payload.starts_with("hostile"))
        .unwrap();
    visit(&b, &site, &format!("/records/{}", hostile.0));
    let payload = b.find("#payload").text();
    for x in seed::XSS {
        assert!(payload.contains(x), "{x} not in {payload}");
    }
    // The hostile crash group: listed, and its page shows the function name as text.
    visit(&b, &site, "/crashes?window=30");
    let row = b
        .all("#crashes tr.crash-group")
        .into_iter()
        .find(|r| r.attr("data-function").unwrap().starts_with("<script>"))
        .expect("the hostile crash group is listed");
    assert!(row
        .text()
        .contains("<script>window.__xss=1;alert(1)</script>"));
    row.find("a.group-link").click();
    b.wait_for("#group-title");
    assert_clean(&b, "hostile crash group");
    assert!(b
        .find("#group-title")
        .text()
        .contains("<script>window.__xss=1;alert(1)</script>"));
    // A skip entry full of markup is text too.
    visit(&b, &site, "/crashes/skip");
    let entry = "<img src=x onerror=window.__xss=1;alert(1)>";
    b.find("#skip-add input[name=entry]").send_keys(entry);
    b.find("#skip-add button, #skip-add input[type=submit]")
        .click();
    wait_until("entry added", Duration::from_secs(30), || {
        texts(&b, "#skip-list").concat().contains(entry)
    });
    assert_clean(&b, "hostile skip entry");
    for path in ["/", "/records", "/hardware"] {
        visit(&b, &site, path);
    }
}

#[test]
fn every_page_loads_without_console_errors() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(None);
    let record = site.records.last().unwrap().0;
    let record = format!("/records/{record}");
    let mut failed = Vec::new();
    for path in PAGES
        .iter()
        .map(|(_, p)| if p.is_empty() { record.as_str() } else { p })
        .chain(["/login"])
    {
        b.goto(&site.url(path));
        let errors = console_errors(&b);
        if !errors.is_empty() {
            failed.push((path.to_string(), errors));
        }
    }
    assert!(failed.is_empty(), "console errors: {failed:#?}");
}

/// The pages screenshotted, by name.
const PAGES: [(&str, &str); 8] = [
    ("overview", "/"),
    ("records", "/records"),
    ("crashes", "/crashes?window=7"),
    (
        "crash-group",
        "/crashes/group?function=parse_config&module=%2Fusr%2Fbin%2Fimgview",
    ),
    ("skip-list", "/crashes/skip"),
    ("population", "/population"),
    ("hardware", "/hardware"),
    ("record", ""),
];

#[test]
fn screenshots_of_every_page_at_desktop_and_phone_width() {
    let _one = browser_lock();
    let Some(b) = Browser::start(1280, 900) else {
        return;
    };
    let site = Site::start(Some(TOKEN));
    b.goto(&site.url("/login"));
    b.wait_for("#login-form");
    assert_clean(&b, "login");
    screenshot(&b, "login");
    log_in(&b, TOKEN);
    b.wait_for("#main");
    let crash = site
        .records
        .iter()
        .rev()
        .find(|(_, r)| {
            r.header("Classification") == seed::CRASH_CLASS && r.payload.contains("render_row")
        })
        .unwrap()
        .0;
    let record = format!("/records/{crash}");
    for (width, height, suffix) in [(1280, 900, ""), (390, 844, "-phone")] {
        b.resize(width, height);
        for (name, path) in PAGES {
            // At phone width, the pages with the widest content.
            if !suffix.is_empty() && !["records", "record", "crash-group"].contains(&name) {
                continue;
            }
            let path = if path.is_empty() {
                record.as_str()
            } else {
                path
            };
            visit(&b, &site, path);
            // Wide tables may scroll inside the page; a page that scrolls sideways as a whole
            // at phone width is worth a note.
            let overflow = b
                .exec(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                    json!([]),
                )
                .as_i64()
                .unwrap_or(0);
            if overflow > 0 {
                eprintln!("note: {name} scrolls sideways by {overflow} px at {width} px");
            }
            screenshot(&b, &format!("{name}{suffix}"));
        }
    }
}
