//! HTTP delivery: the one kept-alive `ureq` agent, the two request encodings, and the
//! classification of an answer into delivered / retry / rejected (docs/delivery.md).
//!
//! ureq is blocking; [`post`] is called on a blocking thread, never on the async runtime.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use telemetry::config::PostFormat;
use telemetry::record::{Header, Record, HEADER_NAMES};
use telemetry::Config;
use ureq::http::{HeaderName, HeaderValue};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::{ConnectProxyConnector, Connector as _, RustlsConnector};
use ureq::Agent;

use crate::resolve::CachingResolver;
use crate::retry::parse_retry_after;

/// Largest part of a response body we read (the collector echoes the record, ≤ ~9 KiB).
const MAX_RESPONSE_BODY: u64 = 64 * 1024;
/// Longest server message we keep for the journal.
const MAX_MESSAGE: usize = 300;

/// Where and how one record is sent: the parts of the config a per-record `CFG:` file may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Collector URL.
    pub server: String,
    /// TID header as (name, value); `None` when `tidheader` is empty.
    pub tid: Option<(String, String)>,
    /// Body encoding.
    pub format: PostFormat,
    /// CA bundle; `None` = the bundled Mozilla roots.
    pub cainfo: Option<PathBuf>,
}

impl Target {
    /// The target a config describes.
    pub fn from_config(c: &Config) -> Target {
        let tid = c.tidheader.split_once(':').and_then(|(n, v)| {
            let n = n.trim();
            (!n.is_empty()).then(|| (n.to_string(), v.trim().to_string()))
        });
        Target {
            server: c.server.clone(),
            tid,
            format: c.effective_post_format(),
            cainfo: c.cainfo.clone(),
        }
    }
}

/// Agent settings that do not depend on the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// TCP (and proxy) connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (ureq 3 has none by default).
    pub total_timeout: Duration,
    /// Keep connections alive between records (off only for the benchmark's comparison).
    pub keepalive: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        // The original's libcurl settings.
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            total_timeout: Duration::from_secs(10),
            keepalive: true,
        }
    }
}

/// The agent could not be built (only the CA file can make this fail).
#[derive(Debug, thiserror::Error)]
#[error("cainfo {}: {why}", .path.display())]
pub struct AgentError {
    /// The configured CA file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub why: String,
}

/// Builds the agent. A configured `cainfo` that is missing or holds no certificate is an error
/// (the original silently fell back to the system store).
pub fn build_agent(cainfo: Option<&Path>, s: &HttpSettings) -> Result<Agent, AgentError> {
    let mut tls = TlsConfig::builder();
    if let Some(path) = cainfo {
        let err = |why: String| AgentError {
            path: path.to_path_buf(),
            why,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let mut certs = Vec::new();
        for item in parse_pem(&pem) {
            if let PemItem::Certificate(c) = item.map_err(|e| err(e.to_string()))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(err("no PEM certificate in the file".into()));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = Agent::config_builder()
        .timeout_global(Some(s.total_timeout))
        .timeout_connect(Some(s.connect_timeout))
        // Non-2xx answers are values, so Retry-After and the server's message can be read.
        .http_status_as_error(false)
        // 3xx is an answer to classify, not something to follow (the original never followed).
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(ureq::Proxy::try_from_env())
        .user_agent(concat!("telempostd/", env!("CARGO_PKG_VERSION")))
        .max_idle_connections(if s.keepalive { 2 } else { 0 })
        .max_idle_connections_per_host(if s.keepalive { 1 } else { 0 })
        .max_idle_age(Duration::from_secs(60))
        // Records are at most ~9 KiB: small buffers keep the resident size small.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .tls_config(tls.build())
        .build();
    // ureq's default chain with our TCP layer (see `transport`): a CONNECT proxy, TCP, TLS.
    let connector =
        ().chain(ConnectProxyConnector::default())
            .chain(transport::TcpConnector)
            .chain(RustlsConnector::default());
    Ok(Agent::with_parts(
        config,
        connector,
        CachingResolver::default(),
    ))
}

/// Whether HTTP can use a target: a `server` that is an http(s) URL, a `tidheader` whose name
/// and value HTTP can carry. `Err` says what is wrong (a configuration problem, never the
/// record's).
pub fn check_target(t: &Target) -> Result<(), String> {
    match t.server.parse::<ureq::http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
        _ => return Err(format!("server {:?} is not an http(s) URL", t.server)),
    }
    if let Some((n, v)) = &t.tid {
        if HeaderName::from_bytes(n.as_bytes()).is_err() {
            return Err(format!(
                "tidheader name {n:?} is not a valid HTTP header name"
            ));
        }
        if HeaderValue::from_str(v).is_err() {
            return Err(format!(
                "tidheader value {v:?} has a character HTTP cannot carry"
            ));
        }
    }
    Ok(())
}

/// One encoded HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// URL to POST to.
    pub url: String,
    /// Header (name, value) pairs, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// `record_format_version` → `Record-Format-Version`.
pub fn hyphenated(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The 15 header names, hyphenated once per process.
fn header_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| HEADER_NAMES.iter().map(|n| hyphenated(n)).collect())
}

/// Encodes a record for the target: `headers` (metadata as hyphenated headers, payload as body,
/// `application/text`) or `json` (the original v2.4 body). Values are sent whole; empty values
/// as empty strings.
pub fn encode(record: &Record, target: &Target, keepalive: bool) -> Request {
    let mut headers = Vec::with_capacity(18);
    if let Some((n, v)) = &target.tid {
        headers.push((n.clone(), v.clone()));
    }
    let body = match target.format {
        PostFormat::Json => {
            headers.push(("Content-Type".into(), "application/json".into()));
            json_body(record).into_bytes()
        }
        PostFormat::Headers | PostFormat::Auto => {
            for (name, value) in header_names().iter().zip(record.values()) {
                headers.push((name.clone(), value.clone()));
            }
            headers.push(("Content-Type".into(), "application/text".into()));
            record.payload().to_vec()
        }
    };
    if !keepalive {
        headers.push(("Connection".into(), "close".into()));
    }
    Request {
        url: target.server.clone(),
        headers,
        body,
    }
}

/// The original's JSON body: compact, the 15 header names in order, then `payload`; all strings.
pub fn json_body(record: &Record) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let mut out = String::with_capacity(512 + record.payload().len() * 2);
    out.push('{');
    for (name, value) in HEADER_NAMES.iter().zip(record.values()) {
        out.push_str(&q(name));
        out.push(':');
        out.push_str(&q(value));
        out.push(',');
    }
    out.push_str("\"payload\":");
    out.push_str(&q(&String::from_utf8_lossy(record.payload())));
    out.push('}');
    out
}

/// What one POST produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The server answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// The `Retry-After` header, if any.
        retry_after: Option<String>,
        /// The start of the body.
        body: String,
    },
    /// No answer: connect, TLS, timeout, reset, proxy...
    Transport(String),
    /// The request cannot be expressed (a header value HTTP cannot carry).
    Unsendable(String),
}

/// What to do with the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: remove from the spool.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// 408, 429, 5xx, 1xx/3xx, transport errors: keep, and back off the whole queue.
    Retry {
        /// In words, for logs and the status file.
        reason: String,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Other 4xx, or a record HTTP cannot carry: journal as rejected and remove.
    Rejected {
        /// HTTP status (0 when nothing was sent).
        status: u16,
        /// The server's message (or ours).
        message: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Delivered { status } => write!(f, "HTTP {status}"),
            Verdict::Retry { reason, .. } => f.write_str(reason),
            Verdict::Rejected { status: 0, message } => f.write_str(message),
            Verdict::Rejected { status, message } if message.is_empty() => {
                write!(f, "HTTP {status}")
            }
            Verdict::Rejected { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

thread_local! {
    /// Work to do once the request is out and before blocking on the answer: see
    /// [`post_overlapped`]. It returns whether another request follows.
    static WHILE_WAITING: std::cell::RefCell<Option<Box<dyn FnOnce() -> bool>>> =
        const { std::cell::RefCell::new(None) };
    /// The request being sent asks the server to close the connection after its answer.
    static CLOSING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

thread_local! {
    /// Set by our TCP layer when a reused connection failed before any byte of the answer
    /// arrived: see [`post`].
    static STALE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Requests still to send with `Connection: close` because the server closed a kept-alive
    /// connection under us: see [`post`].
    static SERVER_CLOSES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// After a kept-alive connection turned out closed by the server, this many requests ask for a
/// new connection each (`Connection: close`); then keep-alive is tried again. Against a server
/// that closes after every answer this turns a wasted request and a reset per record into a
/// plain connection per record (2,479 → 4,300 records/s in the bench), and costs a kept-alive
/// server at most one wasted request per this many.
const CLOSE_FOR: u32 = 256;

/// Runs the work set by [`post_overlapped`], if any: our TCP layer calls this once the request
/// has left and before it blocks on the answer. Returns whether another request follows.
fn run_while_waiting() -> bool {
    WHILE_WAITING
        .with(|w| w.borrow_mut().take())
        .is_some_and(|work| work())
}

/// [`post`], doing `work` while the server handles the request: in the gap between sending the
/// request and the answer, on this thread (no hand-off to another thread, no wake-up). When
/// nothing was sent (no connection, a bad header) `work` does not run, and is dropped.
///
/// `work` returns whether another request follows at once. If so, and this request's
/// connection closes after its answer (`Connection: close`), the connection for the next one
/// is opened in the same gap, and the one this request used is closed in the next request's
/// gap: against a server that closes after every answer, the connection set-up and tear-down
/// leave the critical path. [`idle`] closes what is left when no request follows after all.
pub fn post_overlapped(
    agent: &Agent,
    req: &Request,
    work: impl FnOnce() -> bool + 'static,
) -> Attempt {
    WHILE_WAITING.with(|w| *w.borrow_mut() = Some(Box::new(work)));
    let attempt = post(agent, req);
    WHILE_WAITING.with(|w| w.borrow_mut().take());
    attempt
}

/// Sends one request (blocking). Reads the response body to its end so the connection can be
/// reused.
///
/// A kept-alive connection the server closed after its last answer (uWSGI's http-socket does
/// so without saying `Connection: close`) can look open when the next request goes out; that
/// request then fails with a reset or end-of-file before any byte of an answer. Such a failure
/// is retried at once, once, on a new connection: it says nothing about the server (the server
/// did not read the request), so it is neither a failure nor a reason to back off.
///
/// Such a server would make every other request fail so; after one, the next [`CLOSE_FOR`]
/// requests each ask for a connection of their own.
pub fn post(agent: &Agent, req: &Request) -> Attempt {
    STALE.with(|s| s.set(false));
    let close = SERVER_CLOSES.with(|n| {
        let left = n.get();
        n.set(left.saturating_sub(1));
        left > 0
    });
    let first = post_once(agent, req, close);
    if matches!(first, Attempt::Transport(_)) && STALE.with(|s| s.replace(false)) {
        // ureq does not pool a connection that failed, and holds at most one idle connection
        // per host: this one opens a new connection.
        tracing::debug!("kept-alive connection was closed by the server; resending on a new one");
        SERVER_CLOSES.with(|n| n.set(CLOSE_FOR));
        return post_once(agent, req, true);
    }
    first
}

/// Closes the connection opened ahead for a request that did not come, and the last closing
/// connection (see [`post_overlapped`]). The delivery loop calls this before it waits, so no
/// connection is held open at the server while nothing is sent.
pub fn idle() {
    transport::idle();
}

fn post_once(agent: &Agent, req: &Request, close: bool) -> Attempt {
    let mut builder = agent.post(&req.url);
    let asks_close = req
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
    CLOSING.with(|c| c.set(close || asks_close));
    if close && !req.headers.iter().any(|(n, _)| n == "Connection") {
        builder = builder.header("Connection", "close");
    }
    for (n, v) in &req.headers {
        let name = match HeaderName::from_bytes(n.as_bytes()) {
            Ok(n) => n,
            Err(_) => return Attempt::Unsendable(format!("header name {n:?} is not valid HTTP")),
        };
        // Bytes ≥ 0x80 are allowed (obs-text); control characters other than tab are not.
        let value = match HeaderValue::from_bytes(v.as_bytes()) {
            Ok(v) => v,
            Err(_) => {
                return Attempt::Unsendable(format!(
                    "value of {name} contains a control character HTTP cannot carry"
                ))
            }
        };
        builder = builder.header(name, value);
    }
    match builder.send(&req.body[..]) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut reader = resp.body_mut().as_reader().take(MAX_RESPONSE_BODY);
            // A 2xx body (the collector echoes the record) is only read to its end, for the
            // connection's sake; other answers keep theirs for the message.
            let body = if (200..300).contains(&status) {
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
                String::new()
            } else {
                let mut raw = Vec::new();
                let _ = reader.read_to_end(&mut raw);
                String::from_utf8_lossy(&raw).into_owned()
            };
            Attempt::Answered {
                status,
                retry_after,
                body,
            }
        }
        Err(e) => Attempt::Transport(e.to_string()),
    }
}

/// Contract §3: any 2xx delivered; 408/429/5xx/transport → retry; other 4xx → rejected.
/// 1xx and 3xx (no redirects are followed) are retried: the record is not at fault.
pub fn classify(attempt: &Attempt, now: SystemTime) -> Verdict {
    match attempt {
        Attempt::Answered {
            status,
            retry_after,
            body,
        } => match *status {
            200..=299 => Verdict::Delivered { status: *status },
            408 | 429 | 500..=599 => Verdict::Retry {
                reason: with_message(format!("collector answered {status}"), body),
                retry_after: retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, now)),
            },
            400..=499 => Verdict::Rejected {
                status: *status,
                message: server_message(body),
            },
            _ => Verdict::Retry {
                reason: format!("collector answered unexpected status {status}"),
                retry_after: None,
            },
        },
        Attempt::Transport(e) => Verdict::Retry {
            reason: format!("cannot reach collector: {e}"),
            retry_after: None,
        },
        Attempt::Unsendable(why) => Verdict::Rejected {
            status: 0,
            message: format!("not sendable: {why}"),
        },
    }
}

fn with_message(mut s: String, body: &str) -> String {
    let m = server_message(body);
    if !m.is_empty() {
        s.push_str(": ");
        s.push_str(&m);
    }
    s
}

/// The backend's `{"message": "..."}`, else the first line of the body; shortened.
pub fn server_message(body: &str) -> String {
    let msg = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            body.lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        });
    match msg.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &msg[..i]),
        None => msg,
    }
}

/// The record's classification and event id, for logs and the journal.
pub fn ids(record: &Record) -> (&str, &str) {
    (
        record.get(Header::Classification),
        record.get(Header::EventId),
    )
}

/// The TCP layer under ureq, written for one request at a time over one kept-alive connection.
///
/// ureq's own TCP transport writes the request head and the body with two `send` calls (two
/// TCP segments, and two wake-ups of the collector for one request), and checks a pooled
/// connection with three syscalls (`FIONBIO` on, `recv`, `FIONBIO` off) twice per request. This
/// one holds written output until ureq waits for input (or the buffer is full), so a request
/// leaves in one `send`, and checks a connection with one `recv(MSG_PEEK | MSG_DONTWAIT)`.
/// Timeouts work as ureq's: the socket's send/receive timeouts are set to what remains of the
/// request's budget, but only when that changed by more than `TIMEOUT_SLACK`.
mod transport {
    use std::cell::RefCell;
    use std::io::{self, Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::{Arc, Weak};
    use std::time::{Duration, Instant};

    use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};
    use ureq::unversioned::transport::{
        Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
        Transport,
    };
    use ureq::Timeout;

    /// Opens plain TCP connections (TLS and CONNECT proxies are chained around it by ureq's
    /// connectors, as in its default chain), or hands out the one opened ahead (see [`Spare`]).
    #[derive(Debug, Default)]
    pub struct TcpConnector;

    impl<In: Transport> Connector<In> for TcpConnector {
        type Out = Either<In, Tcp>;

        fn connect(
            &self,
            details: &ConnectionDetails,
            chained: Option<In>,
        ) -> Result<Option<Self::Out>, ureq::Error> {
            // A CONNECT proxy already opened the connection.
            if let Some(c) = chained {
                return Ok(Some(Either::A(c)));
            }
            if let Some(spare) = take_spare(&details.addrs) {
                let t = Tcp::new(spare.stream, spare.peer, details, spare.timeout);
                return t.register(details).map(|t| Some(Either::B(t)));
            }
            let budget = details.timeout.not_zero().map(|d| *d);
            let n = details.addrs.len().max(1) as u32;
            let mut last = None;
            for addr in details.addrs.iter() {
                // Each address gets an equal share of the connect budget (at least 10 ms).
                let res = match budget {
                    Some(b) => {
                        TcpStream::connect_timeout(addr, (b / n).max(Duration::from_millis(10)))
                    }
                    None => TcpStream::connect(addr),
                };
                match res {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        let t = Tcp::new(Arc::new(stream), *addr, details, None);
                        return t.register(details).map(|t| Some(Either::B(t)));
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        last = Some(ureq::Error::Timeout(Timeout::Connect));
                    }
                    Err(e) => last = Some(e.into()),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::ConnectionRefused, "no address to connect to").into()
            }))
        }
    }

    /// A connection opened ahead, in the gap of a request whose own connection closes after its
    /// answer, for the request that follows it.
    ///
    /// It is opened without waiting (a non-blocking `connect`, then the socket made blocking
    /// again: the handshake completes by itself), with `TCP_NODELAY` and the socket timeouts of
    /// a whole request already set, so the next request starts with one `recv` peek where a
    /// new connection costs seven syscalls and a handshake. A send on it before the handshake
    /// completed waits for it (bounded by the send timeout), and a refused one fails that send.
    #[derive(Debug)]
    struct Spare {
        peer: SocketAddr,
        stream: Arc<TcpStream>,
        opened: Instant,
        /// The send and receive timeouts set on it.
        timeout: Option<Duration>,
    }

    /// A spare older than this is closed instead of used: it was opened for a request that is
    /// due at once, and a server may close a connection that sat idle.
    const SPARE_MAX_AGE: Duration = Duration::from_secs(1);

    thread_local! {
        /// The connection opened ahead, at most one.
        static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
        /// The last connection dropped: closed in the next request's gap, off the critical
        /// path (`close` on loopback runs the FIN exchange there and then).
        static RETIRED: RefCell<Option<Arc<TcpStream>>> = const { RefCell::new(None) };
        /// The server closed the last connection right after its answer, unasked (uWSGI's
        /// http-socket): the next connection will most likely close after its answer too.
        static PEER_CLOSES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Opens a connection to `peer` for the next request, without waiting for the handshake.
    /// Failing here only means the next request connects as usual.
    fn open_spare(peer: SocketAddr, timeout: Option<Duration>) {
        let family = match peer {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let opened = (|| -> io::Result<TcpStream> {
            let fd = rustix::net::socket_with(
                family,
                SocketType::STREAM,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )?;
            match rustix::net::connect(&fd, &peer) {
                Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
                Err(e) => return Err(e.into()),
            }
            let stream = TcpStream::from(fd);
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_write_timeout(timeout)?;
            stream.set_read_timeout(timeout)?;
            Ok(stream)
        })();
        match opened {
            Ok(stream) => {
                let spare = Spare {
                    peer,
                    stream: Arc::new(stream),
                    opened: Instant::now(),
                    timeout,
                };
                // An older spare (unused) is closed here.
                SPARE.with(|s| s.replace(Some(spare)));
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the next connection ahead"),
        }
    }

    /// The spare, if it goes to one of `addrs`, is fresh and still open (not closed or refused
    /// by the server: one `recv` peek says `EAGAIN` both while the handshake runs and once it
    /// is done). Any other spare is closed.
    fn take_spare(addrs: &[SocketAddr]) -> Option<Spare> {
        let spare = SPARE.with(|s| s.borrow_mut().take())?;
        let mut byte = [0u8; 1];
        let usable = addrs.contains(&spare.peer)
            && spare.opened.elapsed() < SPARE_MAX_AGE
            && matches!(
                rustix::net::recv(
                    &*spare.stream,
                    &mut byte,
                    RecvFlags::PEEK | RecvFlags::DONTWAIT
                ),
                Err(rustix::io::Errno::AGAIN)
            );
        usable.then_some(spare)
    }

    /// Closes the spare and the retired connection (see [`super::idle`]).
    pub(super) fn idle() {
        SPARE.with(|s| s.borrow_mut().take());
        RETIRED.with(|r| r.borrow_mut().take());
    }

    /// One TCP connection.
    #[derive(Debug)]
    pub struct Tcp {
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        buffers: LazyBuffers,
        /// Output written by ureq and not yet sent.
        pending: Vec<u8>,
        timeout_read: Option<Duration>,
        timeout_write: Option<Duration>,
        /// The whole-request budget, for the timeouts of a connection opened ahead.
        timeout_global: Option<Duration>,
        /// An earlier request on this connection got (part of) an answer: it is being reused.
        answered_before: bool,
        /// A byte arrived since the current request went out.
        received: bool,
        /// The current request's connection closes after its answer: we asked for that, or
        /// the server closed the last one so.
        closing: bool,
    }

    /// A socket timeout within this of the wanted one is left as it is: each request would
    /// otherwise cost two `setsockopt` calls, as the remaining budget shrinks by microseconds.
    /// A request can so overrun its whole-request timeout by at most this much.
    const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

    /// Whether the socket timeout `set` must change to `want`.
    pub(super) fn timeout_differs(set: Option<Duration>, want: Option<Duration>) -> bool {
        match (set, want) {
            (Some(a), Some(b)) => a.abs_diff(b) > TIMEOUT_SLACK,
            (a, b) => a != b,
        }
    }

    /// ureq's `NextTimeout::check`: an elapsed budget is a timeout error.
    fn remaining(t: NextTimeout) -> Result<(Option<Duration>, Timeout), ureq::Error> {
        if !t.after.is_not_happening() && t.after.is_zero() {
            return Err(ureq::Error::Timeout(t.reason));
        }
        Ok((t.not_zero().map(|d| *d), t.reason))
    }

    fn io_error(e: io::Error, reason: Timeout) -> ureq::Error {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(reason),
            _ => e.into(),
        }
    }

    /// The peer closed the connection (as opposed to a timeout or a local problem).
    fn closed_by_peer(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        )
    }

    impl Tcp {
        /// `timeouts`: the send and receive timeouts already set on the socket (both the same).
        fn new(
            stream: Arc<TcpStream>,
            peer: SocketAddr,
            details: &ConnectionDetails,
            timeouts: Option<Duration>,
        ) -> Tcp {
            let config = details.config;
            Tcp {
                stream,
                peer,
                buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
                pending: Vec::new(),
                timeout_read: timeouts,
                timeout_write: timeouts,
                timeout_global: config.timeouts().global,
                answered_before: false,
                received: false,
                closing: false,
            }
        }

        fn register(self, details: &ConnectionDetails) -> Result<Tcp, ureq::Error> {
            let handle: Weak<dyn ShutdownHandle> = Arc::downgrade(&self.stream) as _;
            (details.register_shutdown)(handle)?;
            Ok(self)
        }

        fn flush(&mut self, timeout: NextTimeout) -> Result<(), ureq::Error> {
            if self.pending.is_empty() {
                return Ok(());
            }
            // Output after input: a new request on a connection that already served one.
            if self.received {
                self.answered_before = true;
                self.received = false;
            }
            self.closing = super::CLOSING.with(|c| c.get()) || PEER_CLOSES.with(|c| c.get());
            let (t, reason) = remaining(timeout.for_write())?;
            if timeout_differs(self.timeout_write, t) {
                self.stream.set_write_timeout(t)?;
                self.timeout_write = t;
            }
            let res = (&*self.stream).write_all(&self.pending);
            self.pending.clear();
            res.map_err(|e| {
                self.note_stale(&e);
                io_error(e, reason)
            })
        }

        /// A reused connection the server closed, found before any byte of the answer.
        fn note_stale(&self, e: &io::Error) {
            if self.answered_before && !self.received && closed_by_peer(e) {
                super::STALE.with(|s| s.set(true));
            }
        }
    }

    impl Drop for Tcp {
        fn drop(&mut self) {
            // Closed in the next request's gap (or by `idle`), not now, on the way back to the
            // delivery loop. During thread teardown the slot is gone: it just closes now.
            let stream = self.stream.clone();
            let _ = RETIRED.try_with(|r| r.replace(Some(stream)));
        }
    }

    impl Transport for Tcp {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }

        fn transmit_output(
            &mut self,
            amount: usize,
            timeout: NextTimeout,
        ) -> Result<(), ureq::Error> {
            let cap = self.buffers.output().len();
            if !self.pending.is_empty() && self.pending.len() + amount > cap {
                self.flush(timeout)?;
            }
            let out = &self.buffers.output()[..amount];
            self.pending.extend_from_slice(out);
            if self.pending.len() >= cap {
                self.flush(timeout)?;
            }
            Ok(())
        }

        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            // Everything written so far goes out before we wait for an answer to it.
            self.flush(timeout)?;
            // The server is busy with it now: our own pending work goes here.
            let more = super::run_while_waiting();
            if more && self.closing {
                open_spare(self.peer, self.timeout_global);
            }
            RETIRED.with(|r| r.borrow_mut().take());
            let (t, reason) = remaining(timeout.for_read())?;
            if timeout_differs(self.timeout_read, t) {
                self.stream.set_read_timeout(t)?;
                self.timeout_read = t;
            }
            let input = self.buffers.input_append_buf();
            let n = loop {
                match (&*self.stream).read(input) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.note_stale(&e);
                        return Err(io_error(e, reason));
                    }
                }
            };
            if n == 0 {
                self.note_stale(&io::ErrorKind::UnexpectedEof.into());
            } else {
                self.received = true;
            }
            self.buffers.input_appended(n);
            Ok(n > 0)
        }

        fn is_open(&mut self) -> bool {
            // Open: nothing to read yet (EAGAIN). Data or EOF on an idle connection means the
            // server closed it or spoke out of turn: not reusable.
            // ureq asks right after an answer, before pooling the connection: an end-of-file
            // then is a server that closes after every answer.
            let mut byte = [0u8; 1];
            match rustix::net::recv(
                &*self.stream,
                &mut byte,
                RecvFlags::PEEK | RecvFlags::DONTWAIT,
            ) {
                Err(rustix::io::Errno::AGAIN) => {
                    PEER_CLOSES.with(|c| c.set(false));
                    true
                }
                Ok((0, _)) => {
                    PEER_CLOSES.with(|c| c.set(self.received));
                    false
                }
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use telemetry::SysInfo;

    fn record() -> Record {
        let sys = SysInfo {
            arch: "x86_64".into(),
            host_type: "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-7.2".into(),
            build: "40000".into(),
            kernel_version: "6.1.0".into(),
            system_name: String::new(),
            board_name: "blank|blank".into(),
            cpu_model: "Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz".into(),
            bios_version: "1.16.0-1".into(),
        };
        let mut r = Record::new(2, "org.clearlinux/hello/world", 1, &sys).unwrap();
        r.set_machine_id("0123456789abcdef0123456789abcdef")
            .unwrap();
        r.set_payload(b"hello \"world\"\n\tsecond line").unwrap();
        r
    }

    fn target(format: PostFormat) -> Target {
        let mut c = Config::defaults(Path::new("/"));
        c.server = "http://127.0.0.1:1/v2/collector".into();
        c.post_format = format;
        Target::from_config(&c)
    }

    #[test]
    fn header_names_are_hyphenated() {
        let names: Vec<String> = HEADER_NAMES.iter().map(|n| hyphenated(n)).collect();
        assert_eq!(
            names,
            [
                "Record-Format-Version",
                "Classification",
                "Severity",
                "Machine-Id",
                "Creation-Timestamp",
                "Arch",
                "Host-Type",
                "Build",
                "Kernel-Version",
                "Payload-Format-Version",
                "System-Name",
                "Board-Name",
                "Cpu-Model",
                "Bios-Version",
                "Event-Id"
            ]
        );
    }

    #[test]
    fn headers_encoding_sends_values_whole() {
        let r = record();
        let req = encode(&r, &target(PostFormat::Headers), true);
        let get = |n: &str| {
            req.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("X-Telemetry-TID"),
            Some("6907c830-eed9-4ce9-81ae-76daf8d88f0f")
        );
        assert_eq!(get("Host-Type"), Some(r.get(Header::HostType)));
        assert_eq!(
            get("Cpu-Model"),
            Some("Intel(R) Core(TM) i7-5650U CPU @ 2.20GHz")
        );
        assert_eq!(get("System-Name"), Some(""));
        assert_eq!(get("Content-Type"), Some("application/text"));
        assert_eq!(get("Connection"), None);
        assert_eq!(req.body, r.payload());
        assert_eq!(req.headers.len(), 17);
        let no_ka = encode(&r, &target(PostFormat::Headers), false);
        assert_eq!(no_ka.headers.last().unwrap().0, "Connection");
    }

    #[test]
    fn json_encoding_is_the_original_body() {
        let r = record();
        let req = encode(&r, &target(PostFormat::Json), true);
        assert_eq!(req.headers.len(), 2);
        assert_eq!(
            req.headers[1],
            ("Content-Type".into(), "application/json".into())
        );
        let text = String::from_utf8(req.body).unwrap();
        assert!(text.starts_with(
            "{\"record_format_version\":\"4\",\"classification\":\"org.clearlinux/hello/world\","
        ));
        assert!(text.contains("\"system_name\":\"\","));
        assert!(text.ends_with("\"payload\":\"hello \\\"world\\\"\\n\\tsecond line\"}"));
        assert!(!text.contains(": "));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["cpu_model"], r.get(Header::CpuModel));
        assert_eq!(v.as_object().unwrap().len(), 16);
    }

    #[test]
    fn tidheader_parsing_and_auto_format() {
        let mut c = Config::defaults(Path::new("/"));
        assert_eq!(Target::from_config(&c).format, PostFormat::Json);
        c.tidheader = "X-Telemetry-TID:abc".into();
        c.server = "http://h/v2/collector".into();
        let t = Target::from_config(&c);
        assert_eq!(t.tid, Some(("X-Telemetry-TID".into(), "abc".into())));
        assert_eq!(t.format, PostFormat::Headers);
        c.tidheader = String::new();
        assert_eq!(Target::from_config(&c).tid, None);
    }

    #[test]
    fn outcome_classification() {
        let now = SystemTime::UNIX_EPOCH;
        let ans = |status, ra: Option<&str>, body: &str| Attempt::Answered {
            status,
            retry_after: ra.map(str::to_string),
            body: body.into(),
        };
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(
                classify(&ans(s, None, ""), now),
                Verdict::Delivered { status: s }
            );
        }
        for s in [408, 429, 500, 502, 503, 599, 302, 100] {
            assert!(
                matches!(classify(&ans(s, None, ""), now), Verdict::Retry { .. }),
                "{s}"
            );
        }
        assert_eq!(
            classify(&ans(503, Some("7"), ""), now),
            Verdict::Retry {
                reason: "collector answered 503".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let v = classify(
            &ans(
                400,
                None,
                r#"{"message": "Record-Format-Version is invalid"}"#,
            ),
            now,
        );
        assert_eq!(
            v,
            Verdict::Rejected {
                status: 400,
                message: "Record-Format-Version is invalid".into()
            }
        );
        assert_eq!(v.to_string(), "HTTP 400: Record-Format-Version is invalid");
        assert_eq!(
            classify(&ans(404, None, "\n<html>Not Found</html>\n"), now),
            Verdict::Rejected {
                status: 404,
                message: "<html>Not Found</html>".into()
            }
        );
        assert!(matches!(
            classify(&Attempt::Transport("refused".into()), now),
            Verdict::Retry { .. }
        ));
        assert!(matches!(
            classify(&Attempt::Unsendable("x".into()), now),
            Verdict::Rejected { status: 0, .. }
        ));
        assert!(server_message(&"x".repeat(1000)).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn targets_http_cannot_use_are_configuration_problems() {
        let ok = target(PostFormat::Headers);
        assert_eq!(check_target(&ok), Ok(()));
        let bad_name = Target {
            tid: Some(("X Telemetry TID".into(), "x".into())),
            ..ok.clone()
        };
        assert!(check_target(&bad_name).unwrap_err().contains("header name"));
        let bad_value = Target {
            tid: Some(("X-Telemetry-TID".into(), "a\u{1}b".into())),
            ..ok.clone()
        };
        assert!(check_target(&bad_value)
            .unwrap_err()
            .contains("tidheader value"));
        for server in ["", "localhost/v2/collector", "ftp://h/x", "http://"] {
            let t = Target {
                server: server.into(),
                ..ok.clone()
            };
            assert!(check_target(&t).is_err(), "{server:?}");
        }
    }

    #[test]
    fn missing_or_empty_cainfo_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let s = HttpSettings::default();
        let e = build_agent(Some(&d.path().join("none.pem")), &s).unwrap_err();
        assert!(e.to_string().contains("none.pem"), "{e}");
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "not a pem").unwrap();
        assert!(build_agent(Some(&empty), &s).is_err());
        assert!(build_agent(None, &s).is_ok());
    }

    #[test]
    fn socket_timeouts_change_only_beyond_the_slack() {
        use transport::timeout_differs;
        let ms = Duration::from_millis;
        assert!(!timeout_differs(Some(ms(10_000)), Some(ms(9_999))));
        assert!(!timeout_differs(Some(ms(9_960)), Some(ms(10_000))));
        assert!(timeout_differs(Some(ms(10_000)), Some(ms(9_900))));
        assert!(timeout_differs(Some(ms(100)), Some(ms(10_000))));
        assert!(timeout_differs(None, Some(ms(10))));
        assert!(timeout_differs(Some(ms(10)), None));
        assert!(!timeout_differs(None, None));
    }

    /// A server on 127.0.0.1 that answers `answers` requests per connection (then closes it)
    /// and reports, per connection, how many requests arrived in how many reads.
    fn counting_server(
        answers: usize,
    ) -> (
        std::net::SocketAddr,
        std::sync::mpsc::Receiver<(usize, usize)>,
    ) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in l.incoming().take(8) {
                let Ok(mut c) = conn else { return };
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (mut requests, mut reads) = (0, 0);
                let mut buf = Vec::new();
                while requests < answers {
                    // Request complete: head and a body of its Content-Length.
                    let complete = |b: &[u8]| {
                        let end = b.windows(4).position(|w| w == b"\r\n\r\n")?;
                        let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        (b.len() >= end + 4 + len).then_some(end + 4 + len)
                    };
                    let mut chunk = [0u8; 65536];
                    let n = match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    reads += 1;
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(used) = complete(&buf) {
                        buf.drain(..used);
                        requests += 1;
                        let _ = c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}");
                    }
                }
                // Closed before it is reported, so the client sees the close in time.
                drop(c);
                let _ = tx.send((requests, reads));
            }
        });
        (addr, rx)
    }

    #[test]
    fn a_request_goes_out_in_one_write_and_the_connection_is_reused() {
        let (addr, rx) = counting_server(3);
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = Request {
            url: format!("http://{addr}/v2/collector"),
            headers: vec![("Classification".into(), "a/b/c".into())],
            body: vec![b'x'; 200],
        };
        for _ in 0..3 {
            assert!(matches!(
                post(&agent, &req),
                Attempt::Answered { status: 201, .. }
            ));
        }
        // Three requests over one connection; on loopback each arrived in one read.
        let (requests, reads) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(requests, 3);
        assert_eq!(reads, 3, "head and body were sent apart");
    }

    #[test]
    fn overlapped_work_runs_once_between_the_request_and_its_answer() {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use std::time::Instant;
        // A server that holds each answer for 300 ms after the request arrived.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got_request = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let seen = got_request.clone();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 65536];
            let _ = c.read(&mut buf).unwrap();
            *seen.lock().unwrap() = Some(Instant::now());
            std::thread::sleep(Duration::from_millis(300));
            let _ = c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}");
        });
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = Request {
            url: format!("http://{addr}/v2/collector"),
            headers: vec![("Classification".into(), "a/b/c".into())],
            body: vec![b'x'; 200],
        };
        let runs = Arc::new(AtomicUsize::new(0));
        let at = Arc::new(std::sync::Mutex::new(None::<Instant>));
        let (r, a) = (runs.clone(), at.clone());
        let attempt = post_overlapped(&agent, &req, move || {
            r.fetch_add(1, Ordering::SeqCst);
            *a.lock().unwrap() = Some(Instant::now());
            false
        });
        let answered = Instant::now();
        assert!(matches!(attempt, Attempt::Answered { status: 201, .. }));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let worked = at.lock().unwrap().unwrap();
        assert!(
            answered.duration_since(worked) >= Duration::from_millis(200),
            "ran after the answer"
        );
        // The request had been sent: the server got it no later than ~now + scheduling.
        let arrived = got_request.lock().unwrap().unwrap();
        assert!(
            arrived < worked + Duration::from_millis(100),
            "ran before sending"
        );

        // Nothing sent (connection refused): the work does not run, and does not linger to run
        // in a later request.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = closed.local_addr().unwrap();
        drop(closed);
        let r = runs.clone();
        let refused = Request {
            url: format!("http://{dead}/v2/collector"),
            ..req
        };
        let attempt = post_overlapped(&agent, &refused, move || {
            r.fetch_add(1, Ordering::SeqCst);
            false
        });
        assert!(matches!(attempt, Attempt::Transport(_)));
        run_while_waiting();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_connection_the_server_closed_is_not_reused() {
        // The server closes each connection after one answer: every request needs a new one,
        // and none may fail for trying the closed one.
        let (addr, rx) = counting_server(1);
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = Request {
            url: format!("http://{addr}/"),
            headers: vec![],
            body: b"hello".to_vec(),
        };
        for i in 0..3 {
            let a = post(&agent, &req);
            assert!(
                matches!(a, Attempt::Answered { status: 201, .. }),
                "{i}: {a:?}"
            );
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap().0, 1);
        }
    }

    /// Reads one whole request (head and a body of its Content-Length) from `c`.
    fn read_request(c: &mut std::net::TcpStream) -> bool {
        use std::io::Read;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return true;
                }
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Waits up to `within` for a connection on the non-blocking `l`.
    fn accept_within(l: &std::net::TcpListener, within: Duration) -> Option<std::net::TcpStream> {
        let end = std::time::Instant::now() + within;
        while std::time::Instant::now() < end {
            if let Ok((c, _)) = l.accept() {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    const CLOSE_ANSWER: &[u8] =
        b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";

    fn closing_request(addr: std::net::SocketAddr) -> Request {
        Request {
            url: format!("http://{addr}/v2/collector"),
            headers: vec![("Connection".into(), "close".into())],
            body: vec![b'x'; 200],
        }
    }

    #[test]
    fn the_next_connection_opens_while_a_closing_request_waits() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut a = accept_within(&l, Duration::from_secs(5)).unwrap();
            assert!(read_request(&mut a));
            // Before answering: has the client opened the next connection already?
            let ahead = accept_within(&l, Duration::from_secs(3));
            let opened_ahead = ahead.is_some();
            a.write_all(CLOSE_ANSWER).unwrap();
            drop(a);
            let mut b = ahead
                .or_else(|| accept_within(&l, Duration::from_secs(5)))
                .unwrap();
            assert!(read_request(&mut b), "second request not on the connection");
            b.write_all(CLOSE_ANSWER).unwrap();
            drop(b);
            // Nothing followed the second request: no connection is opened ahead.
            let third = accept_within(&l, Duration::from_millis(300));
            (opened_ahead, third.is_some())
        });
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = closing_request(addr);
        let first = post_overlapped(&agent, &req, || true);
        assert!(
            matches!(first, Attempt::Answered { status: 201, .. }),
            "{first:?}"
        );
        let second = post_overlapped(&agent, &req, || false);
        assert!(
            matches!(second, Attempt::Answered { status: 201, .. }),
            "{second:?}"
        );
        let (opened_ahead, third) = server.join().unwrap();
        assert!(
            opened_ahead,
            "the next connection was not opened during the wait"
        );
        assert!(
            !third,
            "a connection was opened for a request that does not follow"
        );

        // Opened ahead and then not needed: `idle` closes it.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut a = accept_within(&l, Duration::from_secs(5)).unwrap();
            assert!(read_request(&mut a));
            let mut ahead = accept_within(&l, Duration::from_secs(3)).unwrap();
            a.write_all(CLOSE_ANSWER).unwrap();
            drop(a);
            // EOF (closed by `idle`), not the 5 s read timeout.
            let mut byte = [0u8; 1];
            matches!(ahead.read(&mut byte), Ok(0))
        });
        let req = closing_request(addr);
        let first = post_overlapped(&agent, &req, || true);
        assert!(
            matches!(first, Attempt::Answered { status: 201, .. }),
            "{first:?}"
        );
        idle();
        assert!(
            server.join().unwrap(),
            "the connection opened ahead was not closed"
        );
    }

    #[test]
    fn the_next_connection_opens_ahead_when_the_server_closes_unasked() {
        use std::io::Write;
        // uWSGI's http-socket: no `Connection: close` either way, the server closes after each
        // answer. The first close is seen after the first answer; from the second request on
        // the next connection opens while the request waits.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut ahead_seen = Vec::new();
            let mut next = None;
            for _ in 0..3 {
                let mut c = next
                    .take()
                    .or_else(|| accept_within(&l, Duration::from_secs(5)))
                    .unwrap();
                assert!(read_request(&mut c));
                next = accept_within(&l, Duration::from_millis(500));
                ahead_seen.push(next.is_some());
                c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
            }
            ahead_seen
        });
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = Request {
            url: format!("http://{addr}/v2/collector"),
            headers: vec![],
            body: vec![b'x'; 200],
        };
        for i in 0..3 {
            let a = post_overlapped(&agent, &req, move || i < 2);
            assert!(
                matches!(a, Attempt::Answered { status: 201, .. }),
                "{i}: {a:?}"
            );
        }
        idle();
        assert_eq!(server.join().unwrap(), [false, true, false]);
    }

    #[test]
    fn a_connection_opened_ahead_that_the_server_closed_is_not_used() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut a = accept_within(&l, Duration::from_secs(5)).unwrap();
            assert!(read_request(&mut a));
            // The connection opened ahead is closed at once (a server limiting connections).
            drop(accept_within(&l, Duration::from_secs(3)).unwrap());
            std::thread::sleep(Duration::from_millis(50));
            a.write_all(CLOSE_ANSWER).unwrap();
            drop(a);
            let mut c = accept_within(&l, Duration::from_secs(5)).unwrap();
            let got = read_request(&mut c);
            c.write_all(CLOSE_ANSWER).unwrap();
            got
        });
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = closing_request(addr);
        let first = post_overlapped(&agent, &req, || true);
        assert!(
            matches!(first, Attempt::Answered { status: 201, .. }),
            "{first:?}"
        );
        let second = post(&agent, &req);
        assert!(
            matches!(second, Attempt::Answered { status: 201, .. }),
            "{second:?}"
        );
        assert!(server.join().unwrap());
    }

    #[test]
    fn control_characters_make_a_record_unsendable() {
        let agent = build_agent(None, &HttpSettings::default()).unwrap();
        let req = Request {
            url: "http://127.0.0.1:9/".into(),
            headers: vec![("Build".into(), "a\u{1}b".into())],
            body: vec![],
        };
        assert!(matches!(post(&agent, &req), Attempt::Unsendable(_)));
    }
}
