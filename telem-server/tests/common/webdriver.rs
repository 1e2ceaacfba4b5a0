//! A headless Chromium driven over W3C WebDriver: `chromedriver` on a free loopback port with a
//! browser profile of its own in a temporary directory, spoken to through the `fantoccini` client.
//! `Browser` owns a current-thread tokio runtime and the client, and each method blocks on one
//! command, so the tests read as plain sequential code.
//!
//! Console errors come from chromedriver's log endpoint (`POST /session/{id}/se/log` with
//! `{"type":"browser"}`, not a W3C command, so sent as a custom command), enabled by the
//! capability `goog:loggingPrefs: {browser: ALL}`: it returns the console messages and the
//! browser's own errors (failed loads, Content Security Policy violations) since the previous
//! call.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The longest one command may take (generous: CI runs on two busy cores).
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

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

/// chromedriver's browser log since the previous call (its own extension of the protocol).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One browser session and the chromedriver that runs it. Closes both on drop.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut b = Browser {
            rt,
            client: None,
            driver: child,
            _profile: tempfile::tempdir().unwrap(),
        };
        // chromedriver accepts connections once it is ready for a session.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
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
        let mut caps = Capabilities::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        // An alert left open must stay for the test to see, not be dismissed.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
        let client = b
            .bounded(
                "new session",
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .unwrap_or_else(|e| panic!("new session: {e}"));
        b.client = Some(client);
        b
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs one command to its end; fails the test, naming `what`, on an error.
    fn run<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, fantoccini::error::CmdError>>,
    ) -> T {
        self.bounded(what, f)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Blocks on `f`, failing the test when it takes longer than COMMAND_LIMIT (a hung
    /// chromedriver or browser must fail the test, not hang it).
    fn bounded<T>(&self, what: &str, f: impl Future<Output = T>) -> T {
        self.rt
            // The timer is made inside the runtime, which it needs.
            .block_on(async { tokio::time::timeout(COMMAND_LIMIT, f).await })
            .unwrap_or_else(|_| panic!("{what}: no answer in {COMMAND_LIMIT:?}"))
    }

    pub fn goto(&self, url: &str) {
        self.run("goto", self.client().goto(url));
    }

    pub fn url(&self) -> String {
        self.run("url", self.client().current_url()).to_string()
    }

    pub fn title(&self) -> String {
        self.run("title", self.client().title())
    }

    pub fn back(&self) {
        self.run("back", self.client().back());
    }

    pub fn source(&self) -> String {
        self.run("source", self.client().source())
    }

    /// Every element matching `css`.
    pub fn all(&self, css: &str) -> Vec<Element<'_>> {
        self.run(css, self.client().find_all(Locator::Css(css)))
            .into_iter()
            .map(|e| Element { b: self, e })
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

    /// Runs `script` (a function body; `arguments` holds `args`, a JSON array) and returns its
    /// value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        let args = match args {
            Value::Array(a) => a,
            other => panic!("script arguments must be an array, not {other}"),
        };
        self.run("execute", self.client().execute(script, args))
    }

    /// The text of an open alert, confirm or prompt dialog; None when there is none.
    pub fn alert_text(&self) -> Option<String> {
        match self.bounded("alert text", self.client().get_alert_text()) {
            Ok(text) => Some(text),
            Err(e) if e.is_no_such_alert() => None,
            Err(e) => panic!("alert text: {e}"),
        }
    }

    /// Dismisses the open dialog.
    pub fn cmd_dismiss_alert(&self) {
        self.run("dismiss alert", self.client().dismiss_alert());
    }

    /// Browser log entries (`level`, `message`) since the previous call.
    pub fn log(&self) -> Vec<(String, String)> {
        let v = self.run("browser log", self.client().issue_cmd(BrowserLog));
        v.as_array()
            .unwrap_or_else(|| panic!("browser log: not an array: {v}"))
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
        self.run("resize", self.client().set_window_size(width, height));
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        self.run("screenshot", self.client().screenshot())
    }

    /// A PNG of the whole page (the window grown to the document's height, at most
    /// `max_height`), the window size restored afterwards.
    pub fn page_screenshot(&self, max_height: u32) -> Vec<u8> {
        let (w, h) = self.run("window size", self.client().get_window_size());
        let (w, h) = (w as u32, h as u32);
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
        // The client's session task runs only while the runtime is driven: close it here.
        if let Some(client) = self.client.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(COMMAND_LIMIT, client.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// An element of the current page.
pub struct Element<'a> {
    b: &'a Browser,
    e: fantoccini::elements::Element,
}

impl<'a> Element<'a> {
    /// The rendered text (what a user sees).
    pub fn text(&self) -> String {
        self.b.run("element text", self.e.text())
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.b.run("element attribute", self.e.attr(name))
    }

    pub fn tag(&self) -> String {
        self.b.run("element tag", self.e.tag_name())
    }

    pub fn displayed(&self) -> bool {
        self.b.run("element displayed", self.e.is_displayed())
    }

    pub fn click(&self) {
        self.b.run("click", self.e.click());
    }

    pub fn clear(&self) {
        self.b.run("clear", self.e.clear());
    }

    pub fn send_keys(&self, text: &str) {
        self.b.run("send keys", self.e.send_keys(text));
    }

    /// Elements below this one matching `css`.
    pub fn all(&self, css: &str) -> Vec<Element<'a>> {
        self.b
            .run(css, self.e.find_all(Locator::Css(css)))
            .into_iter()
            .map(|e| Element { b: self.b, e })
            .collect()
    }

    pub fn find(&self, css: &str) -> Element<'a> {
        self.all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no `{css}` inside the element on {}", self.b.url()))
    }
}
