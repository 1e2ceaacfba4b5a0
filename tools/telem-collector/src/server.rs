//! The HTTP side: accept loop, routing, fault injection and the `/_/` control routes.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::state::{unix_now, Fault, RequestLog, State, StoredRecord};
use crate::validate::{header_fields, parse_json, validate, Echo, Fields, HeaderText, Rejection};

type Resp = Response<Full<Bytes>>;

/// Returned from the service to make hyper close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped (fault injection or unreadable request)")]
pub struct Dropped;

/// Serves collector requests on `listener` until `shutdown` completes; open connections
/// are then aborted (a test tool has nothing to drain).
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, state, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given (for tests of HTTPS delivery).
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let state = state.clone();
                    let tls = tls.clone();
                    let ctl = conn_fault::Control::default();
                    let stream = conn_fault::FaultIo::new(stream, ctl.clone());
                    conns.spawn(async move {
                        let svc = service_fn(move |req| handle(state.clone(), ctl.clone(), req));
                        let http = http1::Builder::new();
                        let result = match tls {
                            None => http.serve_connection(TokioIo::new(stream), svc).await,
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(s) => http.serve_connection(TokioIo::new(s), svc).await,
                                Err(e) => {
                                    debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                            },
                        };
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "connection ended");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    conns.shutdown().await;
    Ok(())
}

fn is_collector_path(path: &str) -> bool {
    matches!(path, "/" | "/v2/collector" | "/v3/collector")
}

async fn handle(
    state: Arc<State>,
    ctl: conn_fault::Control,
    req: Request<Incoming>,
) -> Result<Resp, Dropped> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path.starts_with("/_/") {
        let body = read_body(req).await?;
        return Ok(control(&state, &method, &path, &body));
    }
    if !is_collector_path(&path) {
        return Ok(html(
            StatusCode::NOT_FOUND,
            "404 Not Found",
            "The requested URL was not found on the server.",
        ));
    }
    let at = unix_now();
    let instant = Instant::now();
    let headers = normalize_headers(req.headers());
    let body = read_body(req).await?;
    let json = (method == Method::POST && path == "/v3/collector").then(|| parse_json(&body));
    let event_id = match &json {
        Some(Ok((fields, _))) => fields.get("event-id").cloned(),
        _ => headers.get("event-id").cloned(),
    };
    // Logged on arrival, so a request dropped or abandoned mid-delay still shows (status None).
    let index = state.log_request(RequestLog {
        at,
        instant,
        path: path.clone(),
        event_id: event_id.clone(),
        status: None,
    });
    let event = event_id.as_deref().unwrap_or("-");
    let resp = match state.next_fault() {
        Some(Fault::Reset) => {
            info!(%method, %path, event, "request dropped (fault)");
            return Err(Dropped);
        }
        Some(Fault::Status {
            code,
            retry_after,
            message,
        }) => fault_response(code, retry_after, message),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            route(&state, &method, headers, json, &body, at)
        }
        Some(Fault::CloseAfterAnswer { linger }) => {
            info!(%method, %path, event, "connection closes after this answer (fault)");
            ctl.set(conn_fault::After::Close { linger });
            route(&state, &method, headers, json, &body, at)
        }
        Some(Fault::StoreThenStatus(code)) => {
            let stored = route(&state, &method, headers, json, &body, at);
            info!(%method, %path, event, stored = %stored.status(), code, "answer replaced (fault)");
            fault_response(code, None, None)
        }
        Some(Fault::ResetMidAnswer { bytes }) => {
            info!(%method, %path, event, bytes, "answer cut short (fault)");
            ctl.set(conn_fault::After::Truncate { bytes });
            route(&state, &method, headers, json, &body, at)
        }
        None => route(&state, &method, headers, json, &body, at),
    };
    let status = resp.status().as_u16();
    state.set_status(index, status);
    info!(%method, %path, status, event, "request");
    Ok(resp)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Dropped> {
    match req.into_body().collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            debug!(error = %e, "reading request body failed");
            Err(Dropped)
        }
    }
}

/// Header fields as the backend's WSGI layer saw them: names normalized, values Latin-1.
fn normalize_headers(h: &HeaderMap) -> Fields {
    header_fields(
        h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        HeaderText::Latin1,
    )
}

fn route(
    state: &State,
    method: &Method,
    headers: Fields,
    json: Option<Result<(Fields, String), String>>,
    body: &[u8],
    at: f64,
) -> Resp {
    if method == Method::GET || method == Method::HEAD {
        let mut r = html(
            StatusCode::FOUND,
            "Redirecting...",
            "Redirecting to /telemetryui.",
        );
        r.headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/telemetryui"));
        return r;
    }
    if method != Method::POST {
        return html(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 Method Not Allowed",
            "The method is not allowed for the requested URL.",
        );
    }
    match json {
        Some(Err(msg)) => json_message(StatusCode::BAD_REQUEST, &msg),
        Some(Ok((fields, payload))) => {
            // The TID and the external flag still travel as HTTP headers.
            let mut merged = headers.clone();
            merged.extend(fields.clone());
            let mut checked = fields;
            checked.remove("x-telemetry-tid");
            for name in ["x-telemetry-tid", "x-clr-external"] {
                if let Some(v) = headers.get(name) {
                    checked.insert(name.to_string(), v.clone());
                }
            }
            ingest(state, "json", Some(&checked), merged, payload, at)
        }
        None => {
            // Flask consumes form bodies: upstream stores an empty payload for these.
            let ct = headers
                .get("content-type")
                .map(|c| c.to_ascii_lowercase())
                .unwrap_or_default();
            let payload = if ct.starts_with("application/x-www-form-urlencoded")
                || ct.starts_with("multipart/form-data")
            {
                String::new()
            } else {
                decode_payload(body)
            };
            ingest(state, "headers", None, headers, payload, at)
        }
    }
}

/// UTF-8 when valid, else Latin-1 (every byte is a char), as upstream.
fn decode_payload(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => body.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Validates `checked` (the stored headers themselves when `None`), stores and echoes the record.
fn ingest(
    state: &State,
    format: &str,
    checked: Option<&Fields>,
    stored_headers: BTreeMap<String, String>,
    payload: String,
    at: f64,
) -> Resp {
    let acc = match validate(checked.unwrap_or(&stored_headers), state.tid()) {
        Ok(a) => a,
        Err(Rejection::BadRequest(msg)) => return json_message(StatusCode::BAD_REQUEST, &msg),
        Err(Rejection::ServerError(why)) => {
            debug!(why, "answering 500 as upstream does");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
                "The server encountered an internal error.",
            );
        }
    };
    let rec = StoredRecord {
        format: format.to_string(),
        headers: stored_headers,
        payload: payload.clone(),
        received: at,
    };
    let id = match state.store(rec) {
        Ok(id) => id,
        Err(e) => {
            warn!(error = %e, "storing record failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error",
                "Storing the record failed.",
            );
        }
    };
    let echo = Echo::new(
        &acc,
        &payload,
        i64::try_from(id).unwrap_or(i64::MAX),
        at as u64,
    );
    match serde_json::to_vec(&echo) {
        Ok(b) => plain(StatusCode::CREATED, Bytes::from(b), "application/json"),
        Err(e) => json_message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn fault_response(code: u16, retry_after: Option<u64>, message: Option<String>) -> Resp {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match message {
        Some(m) => json_message(status, &m),
        None => plain(status, Bytes::new(), "text/plain"),
    };
    if let Some(secs) = retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// Body of `POST /_/fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultSpec {
    status: Option<u16>,
    retry_after: Option<u64>,
    message: Option<String>,
    delay_ms: Option<u64>,
    #[serde(default)]
    reset: bool,
    #[serde(default = "one")]
    times: usize,
}

fn one() -> usize {
    1
}

impl FaultSpec {
    fn into_fault(self) -> Result<(Fault, usize), String> {
        let fault = match (self.status, self.delay_ms, self.reset) {
            (Some(code), None, false) => {
                StatusCode::from_u16(code).map_err(|_| format!("bad status {code}"))?;
                Fault::Status {
                    code,
                    retry_after: self.retry_after,
                    message: self.message,
                }
            }
            (None, Some(ms), false) => Fault::Delay(Duration::from_millis(ms)),
            (None, None, true) => Fault::Reset,
            _ => return Err("give exactly one of status, delay_ms, reset".into()),
        };
        Ok((fault, self.times))
    }
}

fn control(state: &State, method: &Method, path: &str, body: &[u8]) -> Resp {
    let list = |v: serde_json::Result<Vec<u8>>| match v {
        Ok(b) => plain(StatusCode::OK, Bytes::from(b), "application/json"),
        Err(e) => json_message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match (method, path) {
        (&Method::GET, "/_/records") => list(serde_json::to_vec(&state.records())),
        (&Method::GET, "/_/requests") => list(serde_json::to_vec(&state.requests())),
        (&Method::GET, "/_/state") => list(serde_json::to_vec(&state.summary())),
        (&Method::POST, "/_/fault") => {
            let spec = serde_json::from_slice::<FaultSpec>(body).map_err(|e| e.to_string());
            match spec.and_then(FaultSpec::into_fault) {
                Ok((fault, times)) => {
                    state.push_fault(fault, times);
                    json_message(StatusCode::OK, "fault queued")
                }
                Err(e) => json_message(StatusCode::BAD_REQUEST, &e),
            }
        }
        (&Method::DELETE, "/_/fault") => {
            state.clear_faults();
            json_message(StatusCode::OK, "faults cleared")
        }
        _ => json_message(StatusCode::NOT_FOUND, "unknown control route"),
    }
}

fn plain(status: StatusCode, body: Bytes, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Resp {
    plain(status, Bytes::from(v.to_string()), "application/json")
}

fn json_message(status: StatusCode, msg: &str) -> Resp {
    json_response(status, &serde_json::json!({ "message": msg }))
}

fn html(status: StatusCode, title: &str, text: &str) -> Resp {
    let body = format!("<!doctype html>\n<html lang=en>\n<title>{title}</title>\n<h1>{title}</h1>\n<p>{text}</p>\n");
    plain(status, Bytes::from(body), "text/html; charset=utf-8")
}

/// Faults that act on the connection rather than on the answer: closing it after an answer,
/// cutting an answer short. The handler arms a [`Control`]; the [`FaultIo`] under hyper acts on
/// it when the answer is written (hyper writes it after the handler returned).
mod conn_fault {
    use std::io;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::net::TcpStream;

    /// What to do to the connection with the next answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum After {
        /// Write the answer, then read nothing more and close `linger` later.
        Close { linger: Duration },
        /// Write only this many bytes of the answer, then close.
        Truncate { bytes: usize },
    }

    /// Set by the handler, read by the connection's I/O.
    #[derive(Debug, Clone, Default)]
    pub struct Control(Arc<Mutex<Option<After>>>);

    impl Control {
        pub fn set(&self, after: After) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(after);
        }

        fn get(&self) -> Option<After> {
            *self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    /// A TCP stream that carries out the armed fault.
    pub struct FaultIo {
        stream: Option<TcpStream>,
        ctl: Control,
        /// Answer bytes written since the fault was armed.
        written: usize,
        /// The answer is out: reads see end-of-file, writes fail.
        done: bool,
        linger: Duration,
    }

    impl FaultIo {
        pub fn new(stream: TcpStream, ctl: Control) -> FaultIo {
            FaultIo {
                stream: Some(stream),
                ctl,
                written: 0,
                done: false,
                linger: Duration::ZERO,
            }
        }

        fn stream(&mut self) -> io::Result<&mut TcpStream> {
            self.stream
                .as_mut()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
        }
    }

    fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "closed by fault injection")
    }

    impl AsyncRead for FaultIo {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.done {
                // End of file: hyper ends the connection; what the client sent meanwhile stays
                // unread, so the close is a reset, as with a server that closed.
                return Poll::Ready(Ok(()));
            }
            Pin::new(self.stream()?).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for FaultIo {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.done {
                return Poll::Ready(Err(closed()));
            }
            let this = &mut *self;
            let limit = match this.ctl.get() {
                Some(After::Truncate { bytes }) => bytes.saturating_sub(this.written),
                _ => buf.len(),
            };
            if limit == 0 {
                this.done = true;
                this.stream = None;
                return Poll::Ready(Err(closed()));
            }
            let n = buf.len().min(limit);
            let stream = this.stream()?;
            match Pin::new(stream).poll_write(cx, &buf[..n]) {
                Poll::Ready(Ok(w)) => {
                    if this.ctl.get().is_some() {
                        this.written += w;
                    }
                    Poll::Ready(Ok(w))
                }
                other => other,
            }
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            let res = Pin::new(self.stream()?).poll_flush(cx);
            if let (Poll::Ready(Ok(())), Some(After::Close { linger })) = (&res, self.ctl.get()) {
                if self.written > 0 {
                    self.done = true;
                    self.linger = linger;
                }
            }
            res
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            Pin::new(self.stream()?).poll_shutdown(cx)
        }
    }

    impl Drop for FaultIo {
        fn drop(&mut self) {
            if let Some(s) = self.stream.take() {
                if !self.linger.is_zero() {
                    let linger = self.linger;
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        rt.spawn(async move {
                            tokio::time::sleep(linger).await;
                            drop(s);
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn json_body_fields_are_hyphenated() {
        let (f, p) = parse_json(br#"{"record_format_version":"4","payload":"hi\n"}"#).unwrap();
        assert_eq!(
            f.get("record-format-version").map(String::as_str),
            Some("4")
        );
        assert_eq!(p, "hi\n");
        assert!(parse_json(br#"{"severity":1,"payload":""}"#).is_err());
        assert!(parse_json(br#"{"severity":"1"}"#).is_err());
        assert!(parse_json(b"[]").is_err());
    }

    #[test]
    fn latin1_fallback() {
        assert_eq!(decode_payload(b"caf\xc3\xa9"), "caf\u{e9}");
        assert_eq!(decode_payload(b"caf\xe9"), "caf\u{e9}");
    }

    #[test]
    fn fault_spec_needs_exactly_one_kind() {
        let f: FaultSpec =
            serde_json::from_str(r#"{"status":503,"retry_after":2,"times":3}"#).unwrap();
        let (fault, times) = f.into_fault().unwrap();
        assert_eq!(
            fault,
            Fault::Status {
                code: 503,
                retry_after: Some(2),
                message: None
            }
        );
        assert_eq!(times, 3);
        let f: FaultSpec = serde_json::from_str(r#"{"status":503,"reset":true}"#).unwrap();
        assert!(f.into_fault().is_err());
        let f: FaultSpec = serde_json::from_str(r#"{"delay_ms":5}"#).unwrap();
        assert_eq!(
            f.into_fault().unwrap(),
            (Fault::Delay(Duration::from_millis(5)), 1)
        );
    }
}
