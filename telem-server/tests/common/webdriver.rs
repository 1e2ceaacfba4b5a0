//! A headless Chromium driven over W3C WebDriver: `chromedriver` on a free loopback port with a
//! browser profile of its own in a temporary directory, and the few commands the browser tests
//! use, spoken as JSON over HTTP with ureq (the tests' HTTP client already; no async WebDriver
//! crate and its dependency tree needed for a dozen commands).
//!
//! Console errors come from chromedriver's log endpoint (`POST /session/{id}/se/log` with
//! `{"type":"browser"}`), enabled by the capability `goog:loggingPrefs: {browser: ALL}`: it
//! returns the console messages and the browser's own errors (failed loads, Content Security
//! Policy violations) since the previous call.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromium` and `chromedriver` on PATH (Debian's packages of those names), or why not.
fn find_programs() -> Result<(PathBuf, PathBuf), String> {
    let which = |name: &str| -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    };
    let chromium = which("chromium")
        .or_else(|| which("chromium-browser"))
        .ok_or("chromium is not installed (scripts/install-deps.sh installs it)")?;
    let driver = which("chromedriver")
        .ok_or("chromedriver is not installed (Debian package chromium-driver)")?;
    Ok((chromium, driver))
}

/// A WebDriver error answer: its `error` code and message.
#[derive(Debug)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

/// One browser session and the chromedriver that runs it. Closes both on drop.
pub struct Browser {
    base: String,
    session: String,
    driver: Child,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A headless Chromium with a `width`x`height` window; None (with a note on stderr) when
    /// chromium or chromedriver is missing. Under CI a missing browser is a failure.
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let (chromium, driver) = match find_programs() {
            Ok(p) => p,
            Err(why) => {
                if std::env::var_os("CI").is_some() {
                    panic!("the browser tests need Chromium under CI: {why}");
                }
                eprintln!("note: skipping a browser test: {why}");
                return None;
            }
        };
        Some(Browser::launch(&chromium, &driver, width, height))
    }

    fn launch(chromium: &Path, driver: &Path, width: u32, height: u32) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.path().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            base,
            session: String::new(),
            driver: child,
            agent,
            _profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = b
                .agent
                .get(format!("{}/status", b.base))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if let Ok(Some(status)) = b.driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}): {}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
            "--force-device-scale-factor=1".into(),
            "--hide-scrollbars".into(),
            // Containers often have a tiny /dev/shm; Chromium then crashes tabs.
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--lang=en-US".into(),
        ];
        // Chromium's sandbox cannot run as root; anywhere else it stays on.
        if rustix::process::geteuid().is_root() {
            args.push("--no-sandbox".into());
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            // An alert left open must stay for the test to see, not be dismissed.
            "unhandledPromptBehavior": "ignore",
        }}});
        let v = b
            .call("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("new session: {e:?}"));
        b.session = v["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// One WebDriver command; `path` below the session when it starts with `/session/`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.base);
        let resp = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&body.unwrap_or_else(|| json!({}))).unwrap()),
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let v: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let value = v["value"].clone();
        if status == 200 {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("?").to_string(),
                message: value["message"].as_str().unwrap_or("").to_string(),
            })
        }
    }

    fn cmd(&self, method: &str, rel: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{rel}", self.session);
        self.call(method, &path, body)
            .unwrap_or_else(|e| panic!("{method} {rel}: {}: {}", e.error, e.message))
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn back(&self) {
        self.cmd("POST", "/back", None);
    }

    pub fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn elements(&self, rel: &str, css: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            rel,
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    /// Every element matching `css`.
    pub fn all(&self, css: &str) -> Vec<Element<'_>> {
        self.elements("/elements", css)
            .into_iter()
            .map(|id| Element { b: self, id })
            .collect()
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        self.all(css).into_iter().next()
    }

    /// The first element matching `css`; fails the test, naming the page, when there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css).unwrap_or_else(|| {
            let src = self.source();
            let cut: String = src.chars().take(3000).collect();
            panic!("no element `{css}` on {}:\n{cut}", self.url())
        })
    }

    /// Waits (up to 30 s) for an element matching `css`.
    pub fn wait_for(&self, css: &str) -> Element<'_> {
        self.wait_for_within(css, Duration::from_secs(30))
    }

    /// Waits up to `limit` for an element matching `css`.
    pub fn wait_for_within(&self, css: &str, limit: Duration) -> Element<'_> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            if Instant::now() > deadline {
                return self.find(css);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The text of an open alert, confirm or prompt dialog; None when there is none.
    pub fn alert_text(&self) -> Option<String> {
        let path = format!("/session/{}/alert/text", self.session);
        match self.call("GET", &path, None) {
            Ok(v) => Some(v.as_str().unwrap_or("").to_string()),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("alert text: {}: {}", e.error, e.message),
        }
    }

    /// Dismisses the open dialog.
    pub fn cmd_dismiss_alert(&self) {
        self.cmd("POST", "/alert/dismiss", None);
    }

    /// Browser log entries (`level`, `message`) since the previous call.
    pub fn log(&self) -> Vec<(String, String)> {
        let v = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})));
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["level"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Sets the window's outer size.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// A PNG of the whole page (the window grown to the document's height, at most
    /// `max_height`), the window size restored afterwards.
    pub fn page_screenshot(&self, max_height: u32) -> Vec<u8> {
        let rect = self.cmd("GET", "/window/rect", None);
        let (w, h) = (
            rect["width"].as_u64().unwrap() as u32,
            rect["height"].as_u64().unwrap() as u32,
        );
        let doc = self
            .exec(
                "return Math.ceil(document.documentElement.scrollHeight);",
                json!([]),
            )
            .as_u64()
            .unwrap_or(u64::from(h)) as u32;
        // The outer window is taller than the viewport by the (headless) browser chrome.
        let inner = self
            .exec("return window.innerHeight;", json!([]))
            .as_u64()
            .unwrap_or(u64::from(h)) as u32;
        let want = (doc + h.saturating_sub(inner)).clamp(h, max_height);
        if want != h {
            self.resize(w, want);
        }
        let png = self.screenshot();
        if want != h {
            self.resize(w, h);
        }
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the current page.
pub struct Element<'a> {
    b: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn rel(&self, what: &str) -> String {
        format!("/element/{}{what}", self.id)
    }

    /// The rendered text (what a user sees).
    pub fn text(&self) -> String {
        self.b
            .cmd("GET", &self.rel("/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.b
            .cmd("GET", &self.rel(&format!("/attribute/{name}")), None)
            .as_str()
            .map(str::to_string)
    }

    pub fn tag(&self) -> String {
        self.b
            .cmd("GET", &self.rel("/name"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn displayed(&self) -> bool {
        self.b.cmd("GET", &self.rel("/displayed"), None) == json!(true)
    }

    pub fn click(&self) {
        self.b.cmd("POST", &self.rel("/click"), None);
    }

    pub fn clear(&self) {
        self.b.cmd("POST", &self.rel("/clear"), None);
    }

    pub fn send_keys(&self, text: &str) {
        self.b
            .cmd("POST", &self.rel("/value"), Some(json!({ "text": text })));
    }

    /// Elements below this one matching `css`.
    pub fn all(&self, css: &str) -> Vec<Element<'_>> {
        self.b
            .elements(&self.rel("/elements"), css)
            .into_iter()
            .map(|id| Element { b: self.b, id })
            .collect()
    }

    pub fn find(&self, css: &str) -> Element<'_> {
        self.all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no `{css}` inside the element on {}", self.b.url()))
    }
}
