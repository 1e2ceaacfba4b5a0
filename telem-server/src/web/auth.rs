//! Who may see the pages: a login with the query token, a stateless signed session cookie, and
//! CSRF tokens for every form.
//!
//! The signing key is derived from the query token, so every server behind a load balancer
//! accepts the cookies of the others and changing the token logs everyone out. Without a query
//! token (loopback only) the pages are open and the key is random per process: forms still carry
//! and check a CSRF token.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::Sha256;

use super::layout::{render, Layout};
use super::Web;
use crate::store::schema::unix_now;

type HmacSha256 = Hmac<Sha256>;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "telem_session";

/// How long a session lasts after login.
pub const SESSION_SECS: i64 = 12 * 3600;

/// The signing key of sessions and CSRF tokens.
#[derive(Clone)]
pub struct Keys {
    key: [u8; 32],
    /// Whether a session is needed (a query token is configured).
    required: bool,
}

fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable_mac(),
    };
    for p in parts {
        // Length-prefixed, so no two part lists sign the same bytes.
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

#[cold]
fn unreachable_mac() -> HmacSha256 {
    // Not reachable (see above); a fixed key keeps the signature total without a panic.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// `a == b` in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Keys {
    pub fn new(query_token: Option<&str>) -> Keys {
        match query_token {
            Some(t) => {
                let key = mac_of(t.as_bytes(), &[b"telem-server web session key"])
                    .finalize()
                    .into_bytes()
                    .into();
                Keys {
                    key,
                    required: true,
                }
            }
            None => {
                let mut key = [0u8; 32];
                if getrandom::fill(&mut key).is_err() {
                    // Open pages on loopback: a weaker key only weakens the CSRF check there.
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    key = mac_of(&t.to_be_bytes(), &[&std::process::id().to_be_bytes()])
                        .finalize()
                        .into_bytes()
                        .into();
                }
                Keys {
                    key,
                    required: false,
                }
            }
        }
    }

    /// Whether the pages need a session.
    pub fn required(&self) -> bool {
        self.required
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        mac_of(&self.key, parts)
    }

    /// Whether `given` is the query token, in constant time (both sides are MACed first, so not
    /// even the length leaks).
    fn token_ok(&self, given: &str, token: &str) -> bool {
        let want = self
            .mac(&[b"token", token.as_bytes()])
            .finalize()
            .into_bytes();
        self.mac(&[b"token", given.as_bytes()])
            .verify_slice(&want)
            .is_ok()
    }

    /// A new session cookie value valid until `now + SESSION_SECS`:
    /// `<expiry>.<nonce>.<mac>` (hex nonce and MAC).
    pub fn new_session(&self, now: i64) -> String {
        let mut nonce = [0u8; 16];
        let _ = getrandom::fill(&mut nonce);
        let head = format!("{}.{}", now.saturating_add(SESSION_SECS), hex(&nonce));
        let sig = self
            .mac(&[b"session", head.as_bytes()])
            .finalize()
            .into_bytes();
        format!("{head}.{}", hex(&sig))
    }

    /// Whether `value` is a session cookie this key signed that has not expired at `now`.
    pub fn session_ok(&self, value: &str, now: i64) -> bool {
        let Some((head, sig)) = value.rsplit_once('.') else {
            return false;
        };
        let Some(sig) = unhex(sig) else {
            return false;
        };
        if self
            .mac(&[b"session", head.as_bytes()])
            .verify_slice(&sig)
            .is_err()
        {
            return false;
        }
        head.split_once('.')
            .and_then(|(exp, _)| exp.parse::<i64>().ok())
            .is_some_and(|exp| now < exp)
    }

    /// The CSRF token of a session (or of no session: the login form and open pages).
    pub fn csrf(&self, session: Option<&str>) -> String {
        let s = session.unwrap_or("");
        hex(&self.mac(&[b"csrf", s.as_bytes()]).finalize().into_bytes())
    }
}

/// The value of the session cookie in `headers`, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v)
}

/// Whether `headers` carry a valid session for the server with `query_token` (the query API
/// accepts it beside `Authorization: Bearer`, so the pages' export and JSON links work).
pub fn session_ok(headers: &HeaderMap, query_token: &str) -> bool {
    session_cookie(headers).is_some_and(|c| Keys::new(Some(query_token)).session_ok(c, unix_now()))
}

/// Marks a request that arrived over TLS (a TLS listener inserts it as a request extension):
/// the session cookie then gets `Secure`. A proxy's `X-Forwarded-Proto: https` does the same.
#[derive(Debug, Clone, Copy)]
pub struct ServedOverTls;

fn over_tls(parts_headers: &HeaderMap, ext: &axum::http::Extensions) -> bool {
    ext.get::<ServedOverTls>().is_some()
        || parts_headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// A logged-in visitor (or anyone, when no query token is configured), with the CSRF token its
/// forms carry. Without a valid session the request is answered with a 303 to `/login`.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
}

/// A path safe to redirect to after login: local, not `//host` or `/\host`, and only visible
/// ASCII (browsers drop tabs and line breaks from a URL, so `/<tab>/host` would be `//host`).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n
        }
        _ => "/",
    }
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

impl<S> FromRequestParts<S> for Session
where
    S: Send + Sync,
    Web: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let web = Web::from_ref(state);
        let keys = &web.keys;
        if !keys.required {
            return Ok(Session {
                csrf: keys.csrf(None),
            });
        }
        match session_cookie(&parts.headers).filter(|c| keys.session_ok(c, unix_now())) {
            Some(c) => Ok(Session {
                csrf: keys.csrf(Some(c)),
            }),
            None => {
                let here = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                Err(see_other(&format!("/login?next={}", encode(&here))))
            }
        }
    }
}

/// A POST form whose `csrf` field matched the session's token; `T` reads the other fields (and
/// must not deny unknown ones: `csrf` is among them). A wrong or missing token is a 403 and the
/// handler never runs.
#[derive(Debug, Clone)]
pub struct CsrfForm<T>(pub T);

/// Largest form body the pages accept.
const MAX_FORM: usize = 64 * 1024;

impl<S, T> FromRequest<S> for CsrfForm<T>
where
    S: Send + Sync,
    Web: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let body = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| forbidden_or_bad(StatusCode::PAYLOAD_TOO_LARGE, "form too large"))?;
        if let Err(r) = check_csrf(&body, &session.csrf) {
            return Err(*r);
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(CsrfForm)
            .map_err(|e| forbidden_or_bad(StatusCode::BAD_REQUEST, &e.to_string()))
    }
}

/// Whether the form `body` carries `want` as its `csrf` field; the refusal otherwise.
fn check_csrf(body: &Bytes, want: &str) -> Result<(), Box<Response>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| Box::new(forbidden_or_bad(StatusCode::BAD_REQUEST, &e.to_string())))?;
    let given = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map_or("", |(_, v)| v.as_str());
    if same(given.as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        Err(Box::new(forbidden_or_bad(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the page and try again.",
        )))
    }
}

fn forbidden_or_bad(status: StatusCode, msg: &str) -> Response {
    super::error_page(status, msg)
}

/// The login page's template.
#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    next: String,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

pub(super) async fn login_form(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let next = local_path(q.next.as_deref()).to_string();
    let logged_in = session_cookie(&headers).is_some_and(|c| web.keys.session_ok(c, unix_now()));
    if !web.keys.required || logged_in {
        return see_other(&next);
    }
    login_page(&web, next, None, StatusCode::OK)
}

fn login_page(
    web: &Web,
    next: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let page = LoginPage {
        layout: Layout::new("Log in", "", web.keys.csrf(None), false),
        next,
        error,
    };
    let mut r = render(&page);
    *r.status_mut() = status;
    r
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub(super) async fn login(
    State(web): State<Web>,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    Form(f): Form<LoginForm>,
) -> Response {
    if !same(f.csrf.as_bytes(), web.keys.csrf(None).as_bytes()) {
        return forbidden_or_bad(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the page and try again.",
        );
    }
    let next = local_path(f.next.as_deref()).to_string();
    let Some(token) = web.app.query_token.as_deref() else {
        return see_other(&next);
    };
    if !web.keys.token_ok(&f.token, token) {
        return login_page(
            &web,
            next,
            Some("That token is not the query token."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let value = web.keys.new_session(unix_now());
    let secure = if over_tls(&headers, &req_ext) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE_NAME}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECS}{secure}"
    );
    let mut r = see_other(&next);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(super) struct Nothing {}

pub(super) async fn logout(
    State(web): State<Web>,
    headers: HeaderMap,
    req_ext: axum::http::Extensions,
    CsrfForm(Nothing {}): CsrfForm<Nothing>,
) -> Response {
    if !web.keys.required {
        return see_other("/");
    }
    let secure = if over_tls(&headers, &req_ext) {
        "; Secure"
    } else {
        ""
    };
    let mut r = see_other("/login");
    let cookie = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sessions_verify_and_expire() {
        let k = Keys::new(Some("0123456789abcdef"));
        let s = k.new_session(1000);
        assert!(k.session_ok(&s, 1000));
        assert!(!k.session_ok(&s, 1000 + SESSION_SECS));
        // Another token's key refuses it: changing the token logs everyone out.
        assert!(!Keys::new(Some("another-token-000")).session_ok(&s, 1000));
        // A changed expiry breaks the signature.
        let (_, rest) = s.split_once('.').unwrap();
        assert!(!k.session_ok(&format!("99999999999.{rest}"), 1000));
        assert!(!k.session_ok("garbage", 1000));
        assert!(!k.session_ok("", 1000));
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let k = Keys::new(Some("0123456789abcdef"));
        let a = k.new_session(0);
        let b = k.new_session(0);
        assert_ne!(a, b);
        assert_ne!(k.csrf(Some(&a)), k.csrf(Some(&b)));
        assert_eq!(k.csrf(Some(&a)), k.csrf(Some(&a)));
        assert_ne!(k.csrf(None), k.csrf(Some(&a)));
    }

    #[test]
    fn tokens_compare_whole() {
        let k = Keys::new(Some("secret-token"));
        assert!(k.token_ok("secret-token", "secret-token"));
        assert!(!k.token_ok("secret-toke", "secret-token"));
        assert!(!k.token_ok("", "secret-token"));
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/records?x=1")), "/records?x=1");
        // Browsers drop tabs and line breaks from a URL: `/<tab>/host` would become `//host`.
        for bad in [
            "//evil.example",
            "/\\evil",
            "https://evil.example",
            "",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; telem_session=xyz; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("xyz"));
    }
}
