//! The crash and hardware pages over real HTTP, on both engines: the top crashers, a group with
//! its deciding frame marked, hiding and commenting through the forms (and their CSRF
//! refusals), the skip-list page with a regroup, the hardware page; every value a machine sent
//! checked escaped in the raw HTML.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{v4_headers, with, TestServer};

/// A function name that would run in a page that did not escape it.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

fn payload(function: &str) -> String {
    format!(
        "Process: /usr/bin/app\nPID: 100\nSignal: 6\n\nBacktrace (TID 100):\n\
         #0 raise() - [/usr/lib64/libc.so.6] - raise.c:26\n\
         #1 abort() - [/usr/lib64/libc.so.6] - abort.c:79\n\
         #2 {function}() - [/usr/bin/app] - /src/app.c:42\n\
         #3 main() - [/usr/bin/app] - /src/app.c:60\n"
    )
}

fn post_record(s: &TestServer, event: u32, class: &str, machine: &str, body: &str) {
    let h = with(
        &v4_headers(&format!("{event:032x}")),
        "Classification",
        Some(class),
    );
    let h = with(&h, "Machine-Id", Some(machine));
    let r = s.post("/v2/collector", &h, body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
}

struct Page {
    status: u16,
    location: Option<String>,
    csp: Option<String>,
    body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn page(mut r: ureq::http::Response<ureq::Body>) -> Page {
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (location, csp) = (h("location"), h("content-security-policy"));
    Page {
        status: r.status().as_u16(),
        location,
        csp,
        body: r.body_mut().read_to_string().unwrap(),
    }
}

fn get(s: &TestServer, path: &str) -> Page {
    page(agent().get(&s.url(path)).call().unwrap())
}

fn post_form(s: &TestServer, path: &str, fields: &[(&str, &str)]) -> Page {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    page(
        agent()
            .post(&s.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .unwrap(),
    )
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` as the templates escape it.
fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The CSRF token the page's forms carry.
fn csrf(p: &Page) -> String {
    let at = p.body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let end = p.body[at..].find('"').unwrap();
    p.body[at..at + end].to_string()
}

fn group_path(function: &str) -> String {
    format!(
        "/crashes/group?function={}&module={}",
        enc(function),
        enc("/usr/bin/app")
    )
}

fn crash_pages(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    post_record(&s, 1, "org.clearlinux/crash/clr", "aaaa", &payload(HOSTILE));
    post_record(&s, 2, "org.clearlinux/crash/clr", "bbbb", &payload(HOSTILE));
    post_record(
        &s,
        3,
        "org.clearlinux/crash/clr",
        "aaaa",
        &payload("load_file"),
    );

    // Top crashers: both groups, the hostile name escaped everywhere.
    let p = get(&s, "/crashes?window=7");
    assert_eq!(p.status, 200);
    assert!(p.csp.unwrap().contains("script-src 'self'"));
    assert_eq!(p.body.matches("<tr class=\"crash-group\"").count(), 2);
    assert!(!p.body.contains(HOSTILE), "unescaped: {}", p.body);
    assert!(p.body.contains(&escaped(HOSTILE)));
    assert!(p.body.contains("id=\"window\""));
    assert!(p.body.contains("<td class=\"trend\"><svg"));
    assert!(p.body.contains("<td class=\"change change-new\">"));
    assert!(p.body.contains("id=\"show-hidden\""));
    assert_eq!(get(&s, "/crashes?window=5").status, 400);
    assert_eq!(
        get(&s, "/crashes?window=7&build=39999")
            .body
            .matches("crash-group\"")
            .count(),
        0
    );

    // The group: the deciding frame marked, numbers behind the chart.
    let p = get(&s, &group_path(HOSTILE));
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(!p.body.contains(HOSTILE), "unescaped: {}", p.body);
    assert!(
        p.body.contains(&format!(
            "<mark class=\"deciding-frame\">#2 {}() - [/usr/bin/app] - /src/app.c:42</mark>",
            escaped(HOSTILE)
        )),
        "{}",
        p.body
    );
    for id in [
        "group-title",
        "per-day",
        "per-build",
        "per-system",
        "machines",
        "samples",
        "hide-form",
        "comment-form",
    ] {
        assert!(p.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert_eq!(get(&s, &group_path("nothing")).status, 404);

    // Forms without the CSRF token change nothing.
    let token = csrf(&p);
    let refused = post_form(
        &s,
        "/crashes/group/hide",
        &[
            ("function", HOSTILE),
            ("module", "/usr/bin/app"),
            ("hidden", "true"),
        ],
    );
    assert_eq!(refused.status, 403);
    assert_eq!(get(&s, "/crashes").body.matches("crash-group\"").count(), 2);

    // Hide, then the listing leaves it out until asked.
    let r = post_form(
        &s,
        "/crashes/group/hide",
        &[
            ("csrf", &token),
            ("function", HOSTILE),
            ("module", "/usr/bin/app"),
            ("hidden", "true"),
        ],
    );
    assert_eq!(r.status, 303);
    assert!(r.location.unwrap().starts_with("/crashes/group?function="));
    let list = get(&s, "/crashes");
    assert_eq!(list.body.matches("crash-group\"").count(), 1);
    assert!(list.body.contains("1 hidden group(s) left out"));
    assert_eq!(
        get(&s, "/crashes?include_hidden=true")
            .body
            .matches("crash-group")
            .count(),
        2
    );
    assert!(get(&s, &group_path(HOSTILE)).body.contains("id=\"unhide\""));

    // A comment, escaped.
    let r = post_form(
        &s,
        "/crashes/group/comment",
        &[
            ("csrf", &token),
            ("function", HOSTILE),
            ("module", "/usr/bin/app"),
            ("comment", "<b>see</b> bug 12"),
        ],
    );
    assert_eq!(r.status, 303);
    let p = get(&s, &group_path(HOSTILE));
    assert!(p.body.contains(&escaped("<b>see</b> bug 12")), "{}", p.body);
    assert!(!p.body.contains("<b>see</b>"));
    assert_eq!(
        post_form(
            &s,
            "/crashes/group/comment",
            &[
                ("csrf", &token),
                ("function", HOSTILE),
                ("module", "/usr/bin/app"),
                ("comment", "  ")
            ]
        )
        .status,
        400
    );

    // The skip list: add the group's frame, regroup, and the records move to main.
    let skip = get(&s, "/crashes/skip");
    assert_eq!(skip.status, 200);
    assert!(skip
        .body
        .contains("<li class=\"skip-entry\" data-entry=\"abort\">"));
    assert!(skip.body.contains("No regroup since this server started."));
    let r = post_form(
        &s,
        "/crashes/skip",
        &[
            ("csrf", &token),
            ("action", "add"),
            ("entry", "load_file [app]"),
        ],
    );
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/crashes/skip"))
    );
    let r = post_form(&s, "/crashes/skip", &[("action", "add"), ("entry", "main")]);
    assert_eq!(r.status, 403);
    let skip = get(&s, "/crashes/skip");
    assert!(skip.body.contains("data-entry=\"load_file [app]\"><span class=\"mono\">load_file [app]</span> <small>(added)</small>"));
    assert!(!skip.body.contains("data-entry=\"main\""));
    let r = post_form(&s, "/crashes/regroup", &[("csrf", &token)]);
    assert_eq!(r.status, 303);
    let mut skip = get(&s, "/crashes/skip");
    for _ in 0..300 {
        if !skip.body.contains("data-state=\"running\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        skip = get(&s, "/crashes/skip");
    }
    assert!(skip.body.contains("1 changed group"), "{}", skip.body);
    let list = get(&s, "/crashes?include_hidden=true");
    assert!(
        list.body.contains("data-function=\"main\""),
        "{}",
        list.body
    );

    // Remove an entry and reset.
    let r = post_form(
        &s,
        "/crashes/skip",
        &[("csrf", &token), ("action", "remove"), ("entry", "abort")],
    );
    assert_eq!(r.status, 303);
    let skip = get(&s, "/crashes/skip");
    assert!(!skip.body.contains("data-entry=\"abort\""));
    assert!(skip.body.contains("class=\"skip-restore\""));
    post_form(
        &s,
        "/crashes/skip",
        &[("csrf", &token), ("action", "reset")],
    );
    let skip = get(&s, "/crashes/skip");
    assert!(skip.body.contains("data-entry=\"abort\""));
    assert!(!skip.body.contains("load_file [app]"));
}
server_on_both_engines!(crash_pages);

fn hardware_page(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    post_record(
        &s,
        1,
        "org.clearlinux/mce/corrected",
        "<b>m1</b>",
        "CPU 0 BANK 5\n",
    );
    post_record(&s, 2, "org.clearlinux/memory/uncorrected", "m2", "x");
    post_record(&s, 3, "org.clearlinux/mce/thermal", "m2", "x");
    let p = get(&s, "/hardware");
    assert_eq!(p.status, 200, "{}", p.body);
    for id in [
        "mce-classes",
        "mce-builds",
        "mce-weekly",
        "mce-machines",
        "thermal-weekly",
    ] {
        assert!(p.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(p.body.contains(">org.clearlinux/memory/uncorrected</a>"));
    assert!(!p.body.contains("<b>m1</b>"));
    assert!(p.body.contains(&escaped("<b>m1</b>")));
    assert!(p.body.contains("<svg id=\"thermal-chart\""));
    assert_eq!(get(&s, "/hardware?weeks=0").status, 400);
}
server_on_both_engines!(hardware_page);

#[test]
fn the_crash_pages_want_a_session() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = common::sqlite_config(d.path());
    cfg.query_token = Some("query-token-0123456789".into());
    let s = TestServer::start(cfg);
    for path in [
        "/crashes",
        "/crashes/group?function=f&module=m",
        "/crashes/skip",
        "/hardware",
    ] {
        let p = get(&s, path);
        assert_eq!(p.status, 303, "{path}");
        assert!(p.location.unwrap().starts_with("/login?next="));
    }
    let p = post_form(&s, "/crashes/regroup", &[("csrf", "x")]);
    assert_eq!(p.status, 303);
    // The API's changes want the bearer token, not a page's session.
    let r = s.post(
        "/api/v1/crashes/skip",
        &[("Content-Type".into(), "application/json".into())],
        br#"{"action":"reset"}"#,
    );
    assert_eq!(r.status, 401);
}
