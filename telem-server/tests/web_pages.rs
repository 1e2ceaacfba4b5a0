//! The web pages over real HTTP, on both engines: login and logout, redirects without a
//! session, CSRF refusals that change nothing, every page with seeded records, escaping of
//! hostile record values in the raw HTML, filters in the URL, keyset pages, the poll endpoint
//! and the security headers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::time::Duration;

use common::{v4_headers, with, TestServer};

const TOKEN: &str = "query-token-0123456789";

/// An answer with every header.
#[derive(Debug)]
struct Page {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A browser stand-in: no redirects followed, the session cookie kept by hand.
struct Browser {
    base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl Browser {
    fn new(s: &TestServer) -> Browser {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Browser {
            base: s.url(""),
            agent,
            cookie: None,
        }
    }

    fn page(mut r: ureq::http::Response<ureq::Body>) -> Page {
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        Page {
            status: r.status().as_u16(),
            headers,
            body: r.body_mut().read_to_string().unwrap(),
        }
    }

    fn get(&self, path: &str) -> Page {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c.as_str());
        }
        Self::page(req.call().unwrap())
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(form).unwrap();
        let mut req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", c.as_str());
        }
        Self::page(req.send(body.as_bytes()).unwrap())
    }

    /// Logs in through the login form; returns the answer to the POST.
    fn login(&mut self, token: &str) -> Page {
        let form = self.get("/login?next=/records");
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf = hidden(&form.body, "csrf");
        let r = self.post(
            "/login",
            &[("token", token), ("csrf", &csrf), ("next", "/records")],
        );
        if let Some(set) = r.header("set-cookie") {
            let pair = set.split(';').next().unwrap().to_string();
            if pair.ends_with('=') {
                self.cookie = None;
            } else {
                self.cookie = Some(pair);
            }
        }
        r
    }
}

/// The value of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

fn post_record(s: &TestServer, event: u32, fields: &[(&str, &str)], payload: &str) -> i64 {
    let mut h = v4_headers(&format!("{event:032x}"));
    for (k, v) in fields {
        h = with(&h, k, Some(v));
    }
    let r = s.post("/v2/collector", &h, payload.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_i64().unwrap()
}

fn token_config(mut cfg: telem_server::Config) -> telem_server::Config {
    cfg.query_token = Some(TOKEN.to_string());
    cfg
}

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
    frame-ancestors 'none'; form-action 'self'";

fn assert_secure_headers(p: &Page) {
    assert_eq!(p.header("content-security-policy"), Some(CSP), "{p:?}");
    assert_eq!(p.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(p.header("referrer-policy"), Some("same-origin"));
}

fn login_logout_and_redirects(cfg: telem_server::Config) {
    let s = TestServer::start(token_config(cfg));
    let mut b = Browser::new(&s);
    // Without a session every page sends the visitor to the login, keeping the way back.
    for path in ["/", "/records?build=40000", "/records/1", "/population"] {
        let r = b.get(path);
        assert_eq!(r.status, 303, "{path}: {r:?}");
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with("/login?next=%2F"), "{path}: {loc}");
        assert_secure_headers(&r);
    }
    assert_eq!(
        b.get("/records?build=40000").header("location"),
        Some("/login?next=%2Frecords%3Fbuild%3D40000")
    );
    // The login page and the static files need no session.
    let login = b.get("/login");
    assert_eq!(login.status, 200);
    assert_secure_headers(&login);
    for id in ["login-form", "token", "login-submit"] {
        assert!(login.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert_eq!(b.get("/static/style.css").status, 200);
    assert_eq!(b.get("/static/app.js").status, 200);
    assert_eq!(b.get("/static/favicon.svg").status, 200);
    assert_eq!(b.get("/favicon.ico").status, 200);
    // A wrong token: no cookie, the error shown.
    let bad = b.login("not-the-token");
    assert_eq!(bad.status, 401, "{bad:?}");
    assert!(bad.header("set-cookie").is_none());
    assert!(bad.body.contains("id=\"login-error\""), "{}", bad.body);
    assert_eq!(b.get("/records").status, 303);
    // A login form without its CSRF token is refused.
    let r = b.post("/login", &[("token", TOKEN), ("csrf", "00")]);
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    // The right token: a signed cookie with the contract's attributes, back to `next`.
    let ok = b.login(TOKEN);
    assert_eq!(ok.status, 303, "{ok:?}");
    assert_eq!(ok.header("location"), Some("/records"));
    let set = ok.header("set-cookie").unwrap();
    assert!(set.starts_with("telem_session="), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let page = b.get("/records");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("id=\"logout\""));
    // The session also reads the API (the export link), the bearer token still does.
    assert_eq!(b.get("/api/v1/export.csv").status, 200);
    assert_eq!(
        common::get(&s.url("/api/v1/records"), &[]).status,
        401,
        "no credential"
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        common::get(&s.url("/api/v1/records"), &[("Authorization", &bearer)]).status,
        200
    );
    // A forged or tampered cookie is no session.
    let real = b.cookie.clone().unwrap();
    b.cookie = Some(format!("{real}0"));
    assert_eq!(b.get("/records").status, 303);
    b.cookie = Some("telem_session=4102444800.00.00".to_string());
    assert_eq!(b.get("/records").status, 303);
    b.cookie = Some(real.clone());
    // Logout without the CSRF token changes nothing.
    let r = b.post("/logout", &[("csrf", "wrong")]);
    assert_eq!(r.status, 403);
    assert!(r.header("set-cookie").is_none());
    assert_eq!(b.get("/records").status, 200);
    // With it: the cookie is cleared and the pages want a login again.
    let csrf = hidden(&b.get("/records").body, "csrf");
    let r = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    b.cookie = None;
    assert_eq!(b.get("/records").status, 303);
}
server_on_both_engines!(login_logout_and_redirects);

#[test]
fn a_session_is_accepted_by_another_server_with_the_same_token() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let s1 = TestServer::start(token_config(common::sqlite_config(d1.path())));
    let s2 = TestServer::start(token_config(common::sqlite_config(d2.path())));
    let mut b1 = Browser::new(&s1);
    assert_eq!(b1.login(TOKEN).status, 303);
    let mut b2 = Browser::new(&s2);
    b2.cookie = b1.cookie.clone();
    assert_eq!(b2.get("/records").status, 200);
    // A server with another token does not know it.
    let d3 = tempfile::tempdir().unwrap();
    let mut cfg = common::sqlite_config(d3.path());
    cfg.query_token = Some("another-token-9876543210".to_string());
    let s3 = TestServer::start(cfg);
    let mut b3 = Browser::new(&s3);
    b3.cookie = b1.cookie.clone();
    assert_eq!(b3.get("/records").status, 303);
}

#[test]
fn open_pages_without_a_query_token_still_check_csrf() {
    let d = tempfile::tempdir().unwrap();
    let s = TestServer::start(common::sqlite_config(d.path()));
    let b = Browser::new(&s);
    let page = b.get("/records");
    assert_eq!(page.status, 200, "{page:?}");
    assert_secure_headers(&page);
    assert_eq!(b.get("/login").status, 303, "nothing to log in to");
    assert_eq!(b.post("/logout", &[("csrf", "forged")]).status, 403);
    let csrf = hidden(&page.body, "csrf");
    assert_eq!(b.post("/logout", &[("csrf", &csrf)]).status, 303);
}

/// Values a hostile machine can send in every text field.
const HOSTILE: &[&str] = &[
    "<script>alert(1)</script>",
    "\"onload=alert(2) x=\"",
    "</textarea><img src=x onerror=alert(3)>",
    "'><svg onload=alert(4)>",
];

fn hostile_records_are_escaped(cfg: telem_server::Config) {
    let s = TestServer::start(token_config(cfg));
    let mut b = Browser::new(&s);
    assert_eq!(b.login(TOKEN).status, 303);
    let mut ids = Vec::new();
    for (i, h) in HOSTILE.iter().enumerate() {
        // Every field the collector lets through with markup in it (a classification has
        // exactly three parts, a build is alphanumeric, a machine id at most 32 characters).
        let class = format!("org.evil/x/{}", h.replace('/', ""));
        let kernel = format!("6.1.{h}");
        let machine: String = h.chars().take(32).collect();
        let payload = format!("{h}\nline two {h}</pre><script>alert(5)</script>");
        let id = post_record(
            &s,
            i as u32 + 1,
            &[
                ("Classification", &class),
                ("System-Name", h),
                ("Host-Type", h),
                ("Board-Name", h),
                ("Cpu-Model", h),
                ("Bios-Version", h),
                ("Kernel-Version", &kernel),
                ("Machine-Id", &machine),
            ],
            &payload,
        );
        ids.push(id);
    }
    let mut pages = vec![
        "/".to_string(),
        "/records".to_string(),
        "/population".to_string(),
        format!("/records?system_name={}", urlencode(HOSTILE[0])),
    ];
    pages.extend(ids.iter().map(|id| format!("/records/{id}")));
    for path in &pages {
        let p = b.get(path);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert_secure_headers(&p);
        for bad in [
            "<script>alert",
            "<img src=x",
            "<svg onload",
            "</textarea><",
            "\"onload",
        ] {
            assert!(
                !p.body.contains(bad),
                "{path} carries {bad:?} unescaped:\n{}",
                p.body
            );
        }
        // The only scripts are the page's own.
        assert_eq!(p.body.matches("<script").count(), 1, "{path}");
    }
    // The values are there, escaped.
    for (i, h) in HOSTILE.iter().enumerate() {
        let rec = b.get(&format!("/records/{}", ids[i])).body;
        let want = format!("<dd class=\"wrap\">{}</dd>", escaped(h));
        assert!(rec.contains(&want), "{want} not in {rec}");
        let want = format!("<pre id=\"payload\" class=\"payload\">{}\n", escaped(h));
        assert!(rec.contains(&want), "{want} not in {rec}");
    }
    let list = b.get("/records").body;
    let want = escaped("org.evil/x/<textarea><img src=x onerror=alert(3)>");
    assert!(list.contains(&want), "{want} not in {list}");
}
server_on_both_engines!(hostile_records_are_escaped);

/// `s` as the templates escape it.
fn escaped(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).unwrap()[1..].to_string()
}

/// The `data-id`s of the record rows of a records page, in order.
fn row_ids(html: &str) -> Vec<i64> {
    html.split("<tr class=\"record\" data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// `&`s as askama writes them (`&#38;`) read back.
fn unescape_amp(s: &str) -> String {
    s.replace("&#38;", "&").replace("&amp;", "&")
}

/// The `href` of the element with `id` (its `&amp;`s read back).
fn href(html: &str, id: &str) -> Option<String> {
    let marker = format!("id=\"{id}\" href=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(unescape_amp(&html[start..end]))
}

fn records_filters_pages_and_poll(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    let b = Browser::new(&s);
    let mut crash_ids = Vec::new();
    for i in 0..7u32 {
        crash_ids.push(post_record(
            &s,
            i + 1,
            &[
                ("Classification", "org.clearlinux/crash/clr"),
                ("Build", "41000"),
            ],
            "boom",
        ));
    }
    let hello = post_record(&s, 100, &[("Severity", "2")], "hello payload\n");
    // Every page answers with the seeded records.
    for path in ["/", "/records", "/population", &format!("/records/{hello}")] {
        let p = b.get(path);
        assert_eq!(p.status, 200, "{path}: {}", p.body);
        assert_eq!(p.header("content-type"), Some("text/html; charset=utf-8"));
    }
    // Newest first.
    let all = b.get("/records");
    let mut want: Vec<i64> = crash_ids.iter().copied().chain([hello]).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(row_ids(&all.body), want);
    // A filter with a wildcard, in the URL; empty form fields are ignored.
    let p = b.get("/records?classification=org.clearlinux%2Fcrash%2F*&severity=&build=&limit=3");
    assert_eq!(p.status, 200, "{}", p.body);
    let first = row_ids(&p.body);
    assert_eq!(first, [crash_ids[6], crash_ids[5], crash_ids[4]]);
    // The filter stays in the form and in the next-page and export links.
    assert!(
        p.body.contains("value=\"org.clearlinux/crash/*\""),
        "{}",
        p.body
    );
    let next = href(&p.body, "next-page").expect("a next page");
    assert!(
        next.contains("classification=org.clearlinux%2Fcrash%2F*"),
        "{next}"
    );
    assert!(
        next.contains(&format!("before_id={}", crash_ids[4])),
        "{next}"
    );
    let export = href(&p.body, "export-csv").unwrap();
    assert_eq!(
        export,
        "/api/v1/export.csv?classification=org.clearlinux%2Fcrash%2F*"
    );
    let csv = b.get(&export);
    assert_eq!(csv.status, 200);
    assert_eq!(csv.body.lines().count(), 1 + 7, "{}", csv.body);
    // Keyset pages: the next page continues below the last row, the last page has no next.
    let p2 = b.get(&next);
    assert_eq!(
        row_ids(&p2.body),
        [crash_ids[3], crash_ids[2], crash_ids[1]]
    );
    let p3 = b.get(&href(&p2.body, "next-page").unwrap());
    assert_eq!(row_ids(&p3.body), [crash_ids[0]]);
    assert!(href(&p3.body, "next-page").is_none());
    // Only the first page polls, for records newer than its newest.
    assert!(!p2.body.contains("data-poll="));
    let poll = p.body.split("data-poll=\"").nth(1).unwrap();
    let poll = unescape_amp(&poll[..poll.find('"').unwrap()]);
    assert!(poll.starts_with("/records/poll?"), "{poll}");
    assert!(
        poll.contains(&format!("after_id={}", crash_ids[6])),
        "{poll}"
    );
    let count = |b: &Browser| {
        let r = b.get(&poll);
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()
    };
    assert_eq!(count(&b)["count"], 0);
    // Two new crash records and one that the filter leaves out.
    let n1 = post_record(
        &s,
        200,
        &[("Classification", "org.clearlinux/crash/x")],
        "x",
    );
    post_record(&s, 201, &[], "not a crash");
    let n2 = post_record(
        &s,
        202,
        &[("Classification", "org.clearlinux/crash/y")],
        "y",
    );
    let j = count(&b);
    assert_eq!(j["count"], 2, "{j}");
    assert_eq!(j["newest_id"], n2);
    assert!(n1 < n2);
    // Times are unix seconds in the URL, shown as UTC beside the input; quick ranges keep the
    // rest of the filter.
    let t = b.get("/records?since=86400&build=41000");
    assert!(
        t.body.contains("<small>1970-01-02 00:00:00 UTC</small>"),
        "{}",
        t.body
    );
    assert!(
        t.body.contains("href=\"/records?build=41000&#38;since="),
        "{}",
        t.body
    );
    // A filter the API refuses is a 400 page, not a 500.
    assert_eq!(b.get("/records?severity=high").status, 400);
    assert_eq!(b.get("/records?payload_regex=(").status, 400);
    assert_eq!(b.get("/records?nonsense=1").status, 400);
    assert_eq!(b.get("/records/poll?after_id=x").status, 400);
    assert_eq!(
        b.get("/records/poll?build=41000").status,
        400,
        "no after_id"
    );
    assert_eq!(b.get("/records/999999").status, 404);
}
server_on_both_engines!(records_filters_pages_and_poll);

fn record_page_links(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    let b = Browser::new(&s);
    let crash = "Process: /usr/bin/app\nPID: 100\nSignal: 6\n\nBacktrace (TID 100):\n\
        #0 parse_config() - [/usr/bin/app] - /src/app.c:42\n\
        #1 main() - [/usr/bin/app] - /src/app.c:60\n";
    let id = post_record(
        &s,
        1,
        &[
            ("Classification", "org.clearlinux/crash/clr"),
            ("Machine-Id", "m&1"),
        ],
        crash,
    );
    let p = b.get(&format!("/records/{id}"));
    assert_eq!(p.status, 200, "{}", p.body);
    for id in ["headers", "payload", "machine-records", "crash-group"] {
        assert!(p.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert_eq!(
        href(&p.body, "machine-records").unwrap(),
        "/records?machine_id=m%261"
    );
    assert_eq!(
        href(&p.body, "crash-group").unwrap(),
        "/crashes/group?function=parse_config&module=%2Fusr%2Fbin%2Fapp"
    );
    assert!(p.body.contains("<pre id=\"payload\""), "{}", p.body);
    for header in [
        "org.clearlinux/crash/clr",
        "6.1.0-13-amd64",
        "Intel(R) Core(TM)",
    ] {
        assert!(p.body.contains(header), "{header}");
    }
    // The machine link finds the record.
    let list = b.get(&href(&p.body, "machine-records").unwrap());
    assert_eq!(row_ids(&list.body), [id]);
}
server_on_both_engines!(record_page_links);

fn overview_and_population_numbers(cfg: telem_server::Config) {
    let s = TestServer::start(cfg);
    let b = Browser::new(&s);
    for (i, (class, sev, build)) in [
        ("org.clearlinux/heartbeat/ping", "1", "40000"),
        ("org.clearlinux/heartbeat/ping", "1", "41000"),
        ("org.clearlinux/crash/clr", "3", "41000"),
        ("org.clearlinux/crash/clr", "3", "41000"),
        ("org.clearlinux/crash/clr", "4", "41000"),
    ]
    .iter()
    .enumerate()
    {
        let machine = format!("{:032x}", i % 2);
        post_record(
            &s,
            i as u32 + 1,
            &[
                ("Classification", class),
                ("Severity", sev),
                ("Build", build),
                ("Machine-Id", &machine),
            ],
            "x",
        );
    }
    let o = b.get("/");
    assert_eq!(o.status, 200, "{}", o.body);
    for id in [
        "per-day",
        "per-severity",
        "top-classifications",
        "top-builds",
        "top-platforms",
    ] {
        assert!(o.body.contains(&format!("id=\"{id}\"")), "{id}");
    }
    // Today's stacked bar: 3 crash records and 2 heartbeats.
    assert!(
        o.body.contains(": org.clearlinux/crash/clr 3</title>"),
        "{}",
        o.body
    );
    assert!(o.body.contains(": org.clearlinux/heartbeat/ping 2</title>"));
    // Severity counts in order, linked to their records.
    let sev = &o.body[o.body.find("id=\"per-severity\"").unwrap()..];
    let sev = &sev[..sev.find("</table>").unwrap()];
    assert!(sev.contains("severity=1\">1</a></td><td>2</td>"), "{sev}");
    assert!(sev.contains("severity=3\">3</a></td><td>2</td>"), "{sev}");
    assert!(sev.contains("severity=4\">4</a></td><td>1</td>"), "{sev}");
    // The same per severity from the API, in severity order.
    let api = common::get(&s.url("/api/v1/counts/severity"), &[]).json();
    assert_eq!(
        api["counts"],
        serde_json::json!([
            {"key": "1", "count": 2},
            {"key": "3", "count": 2},
            {"key": "4", "count": 1}
        ])
    );
    // The numbers behind the chart, also as the API's JSON.
    let json_link = o.body.split("href=\"/api/v1/counts/day?").nth(1).unwrap();
    assert!(json_link.starts_with("since="), "{json_link}");
    let days = b.get("/?days=7");
    assert_eq!(days.status, 200);
    assert_eq!(b.get("/?days=0").status, 400);
    // A filtered overview.
    let f = b.get("/?build=40000");
    assert!(
        f.body.contains(": org.clearlinux/heartbeat/ping 1</title>"),
        "{}",
        f.body
    );
    assert!(!f.body.contains("crash/clr"));
    // Population: machines with heartbeats per build.
    let p = b.get("/population");
    assert_eq!(p.status, 200);
    assert!(p.body.contains("id=\"population-chart\""));
    let table = &p.body[p.body.find("id=\"population\"").unwrap()..];
    assert!(
        table.contains(">40000</a></td><td>1</td><td>1</td><td>1</td><td>1</td><td>1</td>"),
        "{table}"
    );
    assert!(
        p.body.contains("<title>41000: last 14 days 1</title>"),
        "{}",
        p.body
    );
}
server_on_both_engines!(overview_and_population_numbers);

#[test]
fn the_cookie_is_secure_behind_a_tls_proxy() {
    let d = tempfile::tempdir().unwrap();
    let s = TestServer::start(token_config(common::sqlite_config(d.path())));
    let b = Browser::new(&s);
    let csrf = hidden(&b.get("/login").body, "csrf");
    let body = serde_urlencoded::to_string([("token", TOKEN), ("csrf", &csrf)]).unwrap();
    let r = b
        .agent
        .post(s.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Forwarded-Proto", "https")
        .send(body.as_bytes())
        .unwrap();
    let p = Browser::page(r);
    assert_eq!(p.status, 303, "{p:?}");
    let set = p.header("set-cookie").unwrap();
    assert!(set.ends_with("; Secure"), "{set}");
    // An open redirect through `next` is not followed.
    for next in [
        "//evil.example/",
        "/\t/evil.example/",
        "https://evil.example/",
    ] {
        let body = serde_urlencoded::to_string([("token", TOKEN), ("csrf", &csrf), ("next", next)])
            .unwrap();
        let r = b
            .agent
            .post(s.url("/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body.as_bytes())
            .unwrap();
        assert_eq!(Browser::page(r).header("location"), Some("/"), "{next:?}");
    }
}
