//! Configuration: every key of the original `telemetrics.conf` with its default, plus our own
//! keys, the original INI dialect, and per-key layering (contract §1):
//!
//! built-in defaults < `/usr/share/defaults/telemetrics/telemetrics.conf`
//!                   < `/etc/telemetrics/telemetrics.conf`
//!
//! An explicit file (`-f`, `tm_set_config_file`, `TELEM_CONFIG`) is read on top of the defaults
//! alone. All default paths sit below a root prefix (`TELEM_ROOT`, default `/`).
//!
//! A bad line is an error naming the file and line (and the key, for a bad value). Every key's
//! value is checked by that key's own function in [`KEYS`] when the file is read, so a value that
//! would make a daemon misbehave later (a header line the collector cannot match, a URL that is
//! not one) stops the program at once with the place to fix. An unknown key is a warning, not an
//! error. Messages quote at most [`EXCERPT_CHARS`] characters of what they found, escaped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::env;

/// Default collector URL of the original client.
pub const DEFAULT_SERVER: &str = "https://clr.telemetry.intel.com/v3/collector";
/// Default TID header line of the original client.
pub const DEFAULT_TIDHEADER: &str = "X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f";
/// Vendor defaults file, below the root prefix.
pub const VENDOR_CONFIG: &str = "/usr/share/defaults/telemetrics/telemetrics.conf";
/// Administrator's file, below the root prefix.
pub const ADMIN_CONFIG: &str = "/etc/telemetrics/telemetrics.conf";

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when the problem is on a line.
    pub line: Option<usize>,
    /// The key whose value is wrong, when the problem is a value.
    pub key: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Most characters of a config line or value an error message quotes.
pub const EXCERPT_CHARS: usize = 80;

/// `text` for an error message: in double quotes, control characters (and quotes, backslashes)
/// escaped, at most [`EXCERPT_CHARS`] characters of it, `…` after a cut. A config file can hold
/// anything, and the message goes to terminals and logs.
pub fn excerpt(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == EXCERPT_CHARS {
            out.push('…');
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// What to do with a record that exceeds a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitStrategy {
    /// Keep it and send it later.
    Spool,
    /// Drop it (rate limiting only, never on a network failure).
    Drop,
}

/// How telempostd encodes a record for the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFormat {
    /// Choose by URL: a path ending in `/v3/collector` means JSON, anything else headers.
    Auto,
    /// Metadata as hyphenated HTTP headers, payload as the body (`/v2/collector`).
    Headers,
    /// The original v2.4 JSON body (`/v3/collector`).
    Json,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// A line of a file.
    File(PathBuf, usize),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("built-in default"),
            Source::File(p, l) => write!(f, "{}:{}", p.display(), l),
        }
    }
}

/// The effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    // --- keys of the original ---
    /// Collector URL.
    pub server: String,
    /// Unix socket of telemprobd.
    pub socket_path: PathBuf,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Rate-limit strategy.
    pub rate_limit_strategy: RateLimitStrategy,
    /// CA bundle for TLS; `None` = system roots.
    pub cainfo: Option<PathBuf>,
    /// Full TID header line sent with every POST.
    pub tidheader: String,
    /// Minutes after creation when a spooled record expires.
    pub record_expiry: u64,
    /// Spool quota in KiB; `None` = unlimited.
    pub spool_max_size: Option<u64>,
    /// Seconds between spool scans (clamped to 120..=300 as in the original).
    pub spool_process_time: u64,
    /// Record rate window in minutes (0..=59).
    pub record_window_length: u32,
    /// Byte rate window in minutes (0..=59).
    pub byte_window_length: u32,
    /// Records per window; `None` = no limit.
    pub record_burst_limit: Option<u64>,
    /// Payload bytes per window; `None` = no limit.
    pub byte_burst_limit: Option<u64>,
    /// Master switch for rate limiting.
    pub rate_limit_enabled: bool,
    /// Daemons exit after a while without work (socket/path activation restarts them).
    pub daemon_recycling_enabled: bool,
    /// Keep a copy of each delivered record's body.
    pub record_retention_enabled: bool,
    /// Deliver to the server at all (false = journal locally and delete).
    pub record_server_delivery_enabled: bool,
    // --- keys we add ---
    /// Body format for the collector.
    pub post_format: PostFormat,
    /// How long `tm_send_record` waits for telemprobd's status, in milliseconds. The default,
    /// 5 s, outlasts the slowest durable write measured on a loaded disk (0.65 s while another
    /// process wrote 2 GB) several times over, so a timeout means a daemon that is stopped or
    /// a disk that is failing, not one that is busy.
    pub send_timeout_ms: u64,
    /// Presence means opted in.
    pub opt_in_file: PathBuf,
    /// Static machine id override.
    pub static_machine_id_file: PathBuf,
    /// Presence lifts the probes' privacy filters.
    pub no_privacy_filters_file: PathBuf,
    /// Rotating machine id.
    pub machine_id_file: PathBuf,
    /// Local record journal.
    pub journal_file: PathBuf,
    /// Retained bodies of delivered records.
    pub retention_dir: PathBuf,
    /// Daemon state (status counters, probe cursors).
    pub state_dir: PathBuf,
    /// Probe caches (pstore copies, crash flood control).
    pub cache_dir: PathBuf,

    /// Where each key's value came from.
    pub sources: BTreeMap<&'static str, Source>,
    /// Non-fatal problems seen while reading (unknown keys, clamped values).
    pub warnings: Vec<String>,
    /// The explicit file this config was read from, if any (sent as `CFG:` by the library).
    pub explicit_file: Option<PathBuf>,
    /// The root prefix the default paths were built from.
    pub root: PathBuf,
}

type Setter = fn(&mut Config, &str) -> Result<Option<String>, String>;

/// Every key: name and how to set it from a string. A setter returns an optional warning.
const KEYS: &[(&str, Setter)] = &[
    ("server", |c, v| {
        c.server = collector_url(v)?;
        Ok(None)
    }),
    ("socket_path", |c, v| set_path(&mut c.socket_path, v)),
    ("spool_dir", |c, v| set_path(&mut c.spool_dir, v)),
    ("rate_limit_strategy", |c, v| {
        c.rate_limit_strategy = match v.to_ascii_lowercase().as_str() {
            "spool" => RateLimitStrategy::Spool,
            "drop" => RateLimitStrategy::Drop,
            _ => return Err(format!("{} is not 'spool' or 'drop'", excerpt(v))),
        };
        Ok(None)
    }),
    ("cainfo", |c, v| {
        c.cainfo = if v.is_empty() {
            None
        } else {
            Some(absolute(v)?)
        };
        Ok(None)
    }),
    ("tidheader", |c, v| {
        c.tidheader = header_line(v)?;
        Ok(None)
    }),
    ("record_expiry", |c, v| {
        c.record_expiry = non_negative(v)?;
        Ok(None)
    }),
    ("spool_max_size", |c, v| {
        c.spool_max_size = limit(v)?;
        Ok(None)
    }),
    ("spool_process_time", |c, v| {
        let n = non_negative(v)?;
        c.spool_process_time = n.clamp(120, 300);
        Ok((c.spool_process_time != n).then(|| {
            format!(
                "spool_process_time {n} is outside 120..300; using {}",
                c.spool_process_time
            )
        }))
    }),
    ("record_window_length", |c, v| {
        c.record_window_length = window(v)?;
        Ok(None)
    }),
    ("byte_window_length", |c, v| {
        c.byte_window_length = window(v)?;
        Ok(None)
    }),
    ("record_burst_limit", |c, v| {
        c.record_burst_limit = limit(v)?;
        Ok(None)
    }),
    ("byte_burst_limit", |c, v| {
        c.byte_burst_limit = limit(v)?;
        Ok(None)
    }),
    ("rate_limit_enabled", |c, v| {
        c.rate_limit_enabled = boolean(v)?;
        Ok(None)
    }),
    ("daemon_recycling_enabled", |c, v| {
        c.daemon_recycling_enabled = boolean(v)?;
        Ok(None)
    }),
    ("record_retention_enabled", |c, v| {
        c.record_retention_enabled = boolean(v)?;
        Ok(None)
    }),
    ("record_server_delivery_enabled", |c, v| {
        c.record_server_delivery_enabled = boolean(v)?;
        Ok(None)
    }),
    ("post_format", |c, v| {
        c.post_format = match v.to_ascii_lowercase().as_str() {
            "" | "auto" => PostFormat::Auto,
            "headers" => PostFormat::Headers,
            "json" => PostFormat::Json,
            _ => return Err(format!("{} is not 'headers', 'json' or 'auto'", excerpt(v))),
        };
        Ok(None)
    }),
    ("send_timeout_ms", |c, v| {
        c.send_timeout_ms = non_negative(v)?;
        Ok(None)
    }),
    ("opt_in_file", |c, v| set_path(&mut c.opt_in_file, v)),
    ("static_machine_id_file", |c, v| {
        set_path(&mut c.static_machine_id_file, v)
    }),
    ("no_privacy_filters_file", |c, v| {
        set_path(&mut c.no_privacy_filters_file, v)
    }),
    ("machine_id_file", |c, v| {
        set_path(&mut c.machine_id_file, v)
    }),
    ("journal_file", |c, v| set_path(&mut c.journal_file, v)),
    ("retention_dir", |c, v| set_path(&mut c.retention_dir, v)),
    ("state_dir", |c, v| set_path(&mut c.state_dir, v)),
    ("cache_dir", |c, v| set_path(&mut c.cache_dir, v)),
];

/// Names of every key, in documentation order.
pub fn key_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
}

/// The collector URL: `http://` or `https://`, a host, and nothing a request line cannot carry.
fn collector_url(v: &str) -> Result<String, String> {
    let lower = v.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    else {
        return Err(format!("{} is not an http:// or https:// URL", excerpt(v)));
    };
    if let Some(c) = v.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{} holds {}, which a URL cannot",
            excerpt(v),
            excerpt(&c.to_string())
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{} has no host", excerpt(v)));
    }
    Ok(v.to_string())
}

/// The TID header line, `Name: value`, or empty for none. The name must be an HTTP token and the
/// value non-empty visible ASCII (spaces and tabs inside allowed): anything else makes every POST
/// carry a header the collector does not match, and every record be refused.
fn header_line(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Ok(String::new());
    }
    let Some((name, value)) = v.split_once(':') else {
        return Err(format!(
            "{} is not an HTTP header line (name: value)",
            excerpt(v)
        ));
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "header name {} is not an HTTP token (letters, digits, - and no spaces)",
            excerpt(name)
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(format!("header {} has an empty value", excerpt(name)));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(format!(
            "header value {} holds {}, which an HTTP header cannot",
            excerpt(value),
            excerpt(&c.to_string())
        ));
    }
    Ok(v.to_string())
}

fn absolute(v: &str) -> Result<PathBuf, String> {
    if v.starts_with('/') {
        Ok(PathBuf::from(v))
    } else {
        Err(format!("{} is not an absolute path", excerpt(v)))
    }
}

fn set_path(slot: &mut PathBuf, v: &str) -> Result<Option<String>, String> {
    *slot = absolute(v)?;
    Ok(None)
}

fn integer(v: &str) -> Result<i64, String> {
    v.parse::<i64>()
        .map_err(|e| format!("{} is not an integer ({e})", excerpt(v)))
}

fn non_negative(v: &str) -> Result<u64, String> {
    let n = integer(v)?;
    u64::try_from(n).map_err(|_| format!("{} must not be negative", excerpt(v)))
}

/// A limit where any negative number means "no limit" (the original's `-1`).
fn limit(v: &str) -> Result<Option<u64>, String> {
    let n = integer(v)?;
    Ok(u64::try_from(n).ok())
}

fn window(v: &str) -> Result<u32, String> {
    match integer(v)? {
        n @ 0..=59 => Ok(n as u32),
        _ => Err(format!(
            "{} is not a window length from 0 to 59 minutes",
            excerpt(v)
        )),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!(
            "{} is not a boolean (true, false, 1 or 0)",
            excerpt(v)
        )),
    }
}

/// Joins an absolute path below a root prefix.
pub fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

impl Config {
    /// The built-in defaults, with every path below `root`.
    pub fn defaults(root: &Path) -> Config {
        let p = |abs: &str| under(root, abs);
        Config {
            server: DEFAULT_SERVER.to_string(),
            socket_path: p("/run/telem-0"),
            spool_dir: p("/var/spool/telemetry"),
            rate_limit_strategy: RateLimitStrategy::Spool,
            cainfo: None,
            tidheader: DEFAULT_TIDHEADER.to_string(),
            record_expiry: 1200,
            spool_max_size: Some(5120),
            spool_process_time: 120,
            record_window_length: 15,
            byte_window_length: 20,
            record_burst_limit: Some(1000),
            byte_burst_limit: None,
            rate_limit_enabled: true,
            daemon_recycling_enabled: true,
            record_retention_enabled: false,
            record_server_delivery_enabled: true,
            post_format: PostFormat::Auto,
            send_timeout_ms: 5000,
            opt_in_file: p("/etc/telemetrics/opt-in"),
            static_machine_id_file: p("/etc/telemetrics/opt-in-static-machine-id"),
            no_privacy_filters_file: p("/etc/telemetrics/opt-in-no-privacy-filters"),
            machine_id_file: p("/var/lib/telemetry/machine_id"),
            journal_file: p("/var/log/telemetry/journal"),
            retention_dir: p("/var/log/telemetry/records"),
            state_dir: p("/var/lib/telemetry"),
            cache_dir: p("/var/cache/telemetry"),
            sources: KEYS.iter().map(|(k, _)| (*k, Source::Default)).collect(),
            warnings: Vec::new(),
            explicit_file: None,
            root: root.to_path_buf(),
        }
    }

    /// Loads the effective configuration the way every program does: `explicit` if given, else
    /// `TELEM_CONFIG` if set (each on top of the defaults alone), else the layered files; all
    /// default paths below `TELEM_ROOT`.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let root = env::root();
        let from_env = std::env::var_os(env::CONFIG)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Config::load_from(&root, explicit.or(from_env.as_deref()))
    }

    /// [`Config::load`] with the root and explicit file given.
    pub fn load_from(root: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut c = Config::defaults(root);
        match explicit {
            Some(f) => {
                c.apply_file(f)?;
                c.explicit_file = Some(f.to_path_buf());
            }
            None => {
                for f in [under(root, VENDOR_CONFIG), under(root, ADMIN_CONFIG)] {
                    match fs::read(&f) {
                        Ok(bytes) => c.apply_bytes(&bytes, &f)?,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => c.warnings.push(format!(
                            "{}: not read ({e}); its settings are not applied",
                            f.display()
                        )),
                    }
                }
            }
        }
        Ok(c)
    }

    /// Reads one file on top of the current values. The file must exist.
    pub fn apply_file(&mut self, file: &Path) -> Result<(), ConfigError> {
        let bytes = fs::read(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        self.apply_bytes(&bytes, file)
    }

    /// Parses INI text on top of the current values. On error nothing is changed.
    pub fn apply_bytes(&mut self, bytes: &[u8], origin: &Path) -> Result<(), ConfigError> {
        let err = |line: usize, message: String| ConfigError {
            file: origin.to_path_buf(),
            line: Some(line),
            key: None,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            err(line, "not valid UTF-8".to_string())
        })?;
        let mut next = self.clone();
        let mut section: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_matches([' ', '\t', '\r']);
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.strip_suffix(']').ok_or_else(|| {
                    err(
                        n,
                        format!("section header {} does not end with ']'", excerpt(line)),
                    )
                })?;
                section = Some(name.trim().to_string());
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(n, format!("{} is not 'key = value'", excerpt(line))))?;
            let key = key.trim_matches([' ', '\t']);
            let value = unescape(value.trim_matches([' ', '\t']));
            if key.is_empty() {
                return Err(err(n, "empty key".to_string()));
            }
            let Some(sec) = &section else {
                return Err(err(n, format!("key {} before any [section]", excerpt(key))));
            };
            if sec != "settings" {
                next.warnings.push(format!(
                    "{}:{n}: section {} is not used; key {} ignored",
                    origin.display(),
                    excerpt(&format!("[{sec}]")),
                    excerpt(key)
                ));
                continue;
            }
            match KEYS.iter().find(|(k, _)| *k == key) {
                None => next.warnings.push(format!(
                    "{}:{n}: unknown key {} ignored",
                    origin.display(),
                    excerpt(key)
                )),
                Some((k, set)) => {
                    let warning = set(&mut next, &value).map_err(|message| ConfigError {
                        key: Some(k),
                        ..err(n, message)
                    })?;
                    if let Some(w) = warning {
                        next.warnings.push(format!("{}:{n}: {w}", origin.display()));
                    }
                    next.sources
                        .insert(k, Source::File(origin.to_path_buf(), n));
                }
            }
        }
        *self = next;
        Ok(())
    }

    /// The post format actually used for `server`.
    pub fn effective_post_format(&self) -> PostFormat {
        match self.post_format {
            PostFormat::Auto => {
                let path = self.server.split(['?', '#']).next().unwrap_or("");
                if path.trim_end_matches('/').ends_with("/v3/collector") {
                    PostFormat::Json
                } else {
                    PostFormat::Headers
                }
            }
            f => f,
        }
    }

    /// The value of a key as text, as it would be written in the file.
    pub fn value_of(&self, key: &str) -> Option<String> {
        let p = |p: &Path| p.display().to_string();
        let opt = |o: Option<u64>| o.map_or("-1".to_string(), |v| v.to_string());
        Some(match key {
            "server" => self.server.clone(),
            "socket_path" => p(&self.socket_path),
            "spool_dir" => p(&self.spool_dir),
            "rate_limit_strategy" => match self.rate_limit_strategy {
                RateLimitStrategy::Spool => "spool".into(),
                RateLimitStrategy::Drop => "drop".into(),
            },
            "cainfo" => self.cainfo.as_deref().map(p).unwrap_or_default(),
            "tidheader" => self.tidheader.clone(),
            "record_expiry" => self.record_expiry.to_string(),
            "spool_max_size" => opt(self.spool_max_size),
            "spool_process_time" => self.spool_process_time.to_string(),
            "record_window_length" => self.record_window_length.to_string(),
            "byte_window_length" => self.byte_window_length.to_string(),
            "record_burst_limit" => opt(self.record_burst_limit),
            "byte_burst_limit" => opt(self.byte_burst_limit),
            "rate_limit_enabled" => self.rate_limit_enabled.to_string(),
            "daemon_recycling_enabled" => self.daemon_recycling_enabled.to_string(),
            "record_retention_enabled" => self.record_retention_enabled.to_string(),
            "record_server_delivery_enabled" => self.record_server_delivery_enabled.to_string(),
            "post_format" => match self.post_format {
                PostFormat::Auto => "auto".into(),
                PostFormat::Headers => "headers".into(),
                PostFormat::Json => "json".into(),
            },
            "send_timeout_ms" => self.send_timeout_ms.to_string(),
            "opt_in_file" => p(&self.opt_in_file),
            "static_machine_id_file" => p(&self.static_machine_id_file),
            "no_privacy_filters_file" => p(&self.no_privacy_filters_file),
            "machine_id_file" => p(&self.machine_id_file),
            "journal_file" => p(&self.journal_file),
            "retention_dir" => p(&self.retention_dir),
            "state_dir" => p(&self.state_dir),
            "cache_dir" => p(&self.cache_dir),
            _ => return None,
        })
    }
}

/// The original's value unescaping: `\s` is a space; a backslash before any other character is
/// dropped (so `\\` is one backslash); a trailing lone backslash is dropped.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('s') => out.push(' '),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
