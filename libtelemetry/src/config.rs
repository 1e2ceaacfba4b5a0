//! Configuration: every key of the original `telemetrics.conf` with its default, plus our own
//! keys, the original INI dialect, and per-key layering (docs/configuration.md):
//!
//! built-in defaults < `/usr/share/defaults/telemetrics/telemetrics.conf`
//!                   < `/etc/telemetrics/telemetrics.conf`
//!
//! An explicit file (`-f`, `tm_set_config_file`, `TELEM_CONFIG`) is read on top of the defaults
//! alone. All default paths sit below a root prefix (`TELEM_ROOT`, default `/`).
//!
//! Every key's value is read by that key's own function in [`KEYS`] when the file is read. A
//! value the original client accepted starts every program with the value the original would
//! have used (or the default, where that value would do harm: an expiry of 0 deletes every
//! record) and a warning naming file, line, key and what was assumed. A line or value neither
//! could use (a boolean that is not one, a URL or header line HTTP cannot carry, a line that is
//! not `key = value`) is an error for that line only: [`Config::load_with_diagnostics`] keeps
//! every other key and lists the problems; [`Config::load`] returns the first error, which the
//! daemons and tools refuse to start with. Messages quote at most [`EXCERPT_CHARS`] characters of
//! what they found, escaped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::env;

mod values;

/// Default collector URL of the original client.
pub const DEFAULT_SERVER: &str = "https://clr.telemetry.intel.com/v3/collector";
/// Default TID header line of the original client.
pub const DEFAULT_TIDHEADER: &str = "X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f";
/// How long `tm_send_record` waits by default: well above the slowest durable write measured on
/// a loaded disk (0.65 s), so a busy disk does not make senders give up on stored records.
pub const DEFAULT_SEND_TIMEOUT_MS: u64 = 5000;
/// rasprobe's flood-control window, seconds: a failing DIMM's storm of corrected errors becomes
/// one record a minute per source.
pub const DEFAULT_RAS_STORM_WINDOW: u64 = 60;
/// Uncorrected-error records rasprobe sends at once per source and window.
pub const DEFAULT_RAS_UNCORRECTED_LIMIT: u32 = 10;
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

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The value was used as the original would have used it, or replaced by the default; the
    /// message says which.
    Warning,
    /// The line or value could not be used at all; the key keeps its previous value.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found while reading configuration files: where, which key, and what was done.
/// Displayed as `file:line: key: message`, like [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Warning or error.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when the problem is on a line.
    pub line: Option<usize>,
    /// The key whose value is questionable, when the problem is a value.
    pub key: Option<&'static str>,
    /// What is wrong, and for a warning what was assumed.
    pub message: String,
}

impl Diagnostic {
    /// The same place and message as an error.
    pub fn into_error(self) -> ConfigError {
        ConfigError {
            file: self.file,
            line: self.line,
            key: self.key,
            message: self.message,
        }
    }

    /// A file that could not be read: "does not exist" for a missing one, else the OS reason.
    fn unreadable(file: &Path, e: &io::Error, severity: Severity) -> Diagnostic {
        let message = if e.kind() == io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read: {e}")
        };
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line: None,
            key: None,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.clone().into_error().fmt(f)
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
    /// rasprobe: seconds in which errors of one kind on one source become one record (also how
    /// often the thermal counters are read).
    pub ras_storm_window: u64,
    /// rasprobe: uncorrected-error records sent at once per source and window; more are counted
    /// into one record at the window's end.
    pub ras_uncorrected_limit: u32,

    /// Where each key's value came from.
    pub sources: BTreeMap<&'static str, Source>,
    /// Warnings seen while reading (unknown keys, values read as the original read them, clamped
    /// values), each `file:line: key: message`.
    pub warnings: Vec<String>,
    /// The explicit file this config was read from, if any (sent as `CFG:` by the library).
    pub explicit_file: Option<PathBuf>,
    /// The root prefix the default paths were built from.
    pub root: PathBuf,
}

type Setter = fn(&mut Config, &str) -> Result<Option<String>, String>;

/// Every key: name and how to set it from a string. A setter returns an optional warning (what
/// it assumed), or an error when the value cannot be used at all.
const KEYS: &[(&str, Setter)] = &[
    ("server", |c, v| {
        c.server = values::collector_url(v)?;
        Ok(None)
    }),
    ("socket_path", |c, v| set_path(&mut c.socket_path, v)),
    ("spool_dir", |c, v| set_path(&mut c.spool_dir, v)),
    ("rate_limit_strategy", |c, v| {
        // The original used `spool` for anything but `drop`.
        let (s, note) = match v.to_ascii_lowercase().as_str() {
            "spool" => (RateLimitStrategy::Spool, None),
            "drop" => (RateLimitStrategy::Drop, None),
            _ => (
                RateLimitStrategy::Spool,
                Some(format!(
                    "{} is not 'spool' or 'drop'; using 'spool', as the original did",
                    excerpt(v)
                )),
            ),
        };
        c.rate_limit_strategy = s;
        Ok(note)
    }),
    ("cainfo", |c, v| {
        if v.is_empty() {
            c.cainfo = None;
            return Ok(None);
        }
        let (p, note) = values::path(v)?;
        c.cainfo = Some(p);
        Ok(note)
    }),
    ("tidheader", |c, v| {
        c.tidheader = values::header_line(v)?;
        Ok(None)
    }),
    ("record_expiry", |c, v| {
        let (n, note) = values::int_or_default(
            v,
            1200,
            |n| n > 0,
            "an expiry that would delete every record at once",
        )?;
        c.record_expiry = u64::try_from(n).unwrap_or(1200);
        Ok(note)
    }),
    ("spool_max_size", |c, v| {
        let (n, note) = values::limit(v, Some(5120))?;
        c.spool_max_size = n;
        Ok(note)
    }),
    ("spool_process_time", |c, v| {
        let (n, note) = values::int_in(v, i64::MIN..=i64::MAX, "a number of seconds")?;
        let clamped = n.clamp(120, 300);
        c.spool_process_time = u64::try_from(clamped).unwrap_or(120);
        let clamp_note =
            (clamped != n).then(|| format!("{n} is outside 120..300 seconds; using {clamped}"));
        Ok(match (note, clamp_note) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        })
    }),
    ("record_window_length", |c, v| {
        let (n, note) = window(v)?;
        c.record_window_length = n;
        Ok(note)
    }),
    ("byte_window_length", |c, v| {
        let (n, note) = window(v)?;
        c.byte_window_length = n;
        Ok(note)
    }),
    ("record_burst_limit", |c, v| {
        let (n, note) = values::limit(v, Some(1000))?;
        c.record_burst_limit = n;
        Ok(note)
    }),
    ("byte_burst_limit", |c, v| {
        let (n, note) = values::limit(v, None)?;
        c.byte_burst_limit = n;
        Ok(note)
    }),
    ("rate_limit_enabled", |c, v| {
        c.rate_limit_enabled = values::boolean(v)?;
        Ok(None)
    }),
    ("daemon_recycling_enabled", |c, v| {
        c.daemon_recycling_enabled = values::boolean(v)?;
        Ok(None)
    }),
    ("record_retention_enabled", |c, v| {
        c.record_retention_enabled = values::boolean(v)?;
        Ok(None)
    }),
    ("record_server_delivery_enabled", |c, v| {
        c.record_server_delivery_enabled = values::boolean(v)?;
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
        let default = DEFAULT_SEND_TIMEOUT_MS as i64;
        let (n, note) =
            values::int_or_default(v, default, |n| n >= 0, "a wait cannot be negative")?;
        c.send_timeout_ms = u64::try_from(n).unwrap_or(DEFAULT_SEND_TIMEOUT_MS);
        Ok(note)
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
    ("ras_storm_window", |c, v| {
        let (n, note) = values::int_in(v, 1..=86_400, "a window in seconds")?;
        c.ras_storm_window = u64::try_from(n).unwrap_or(DEFAULT_RAS_STORM_WINDOW);
        Ok(note)
    }),
    ("ras_uncorrected_limit", |c, v| {
        let (n, note) = values::int_in(v, 1..=1000, "a number of records")?;
        c.ras_uncorrected_limit = u32::try_from(n).unwrap_or(DEFAULT_RAS_UNCORRECTED_LIMIT);
        Ok(note)
    }),
];

fn set_path(slot: &mut PathBuf, v: &str) -> Result<Option<String>, String> {
    let (p, note) = values::path(v)?;
    *slot = p;
    Ok(note)
}

fn window(v: &str) -> values::Read<u32> {
    let (n, note) = values::int_in(v, 0..=59, "a window length in minutes")?;
    Ok((u32::try_from(n).unwrap_or(0), note))
}

/// Names of every key, in documentation order.
pub fn key_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(k, _)| *k)
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
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            opt_in_file: p("/etc/telemetrics/opt-in"),
            static_machine_id_file: p("/etc/telemetrics/opt-in-static-machine-id"),
            no_privacy_filters_file: p("/etc/telemetrics/opt-in-no-privacy-filters"),
            machine_id_file: p("/var/lib/telemetry/machine_id"),
            journal_file: p("/var/log/telemetry/journal"),
            retention_dir: p("/var/log/telemetry/records"),
            state_dir: p("/var/lib/telemetry"),
            cache_dir: p("/var/cache/telemetry"),
            ras_storm_window: DEFAULT_RAS_STORM_WINDOW,
            ras_uncorrected_limit: DEFAULT_RAS_UNCORRECTED_LIMIT,
            sources: KEYS.iter().map(|(k, _)| (*k, Source::Default)).collect(),
            warnings: Vec::new(),
            explicit_file: None,
            root: root.to_path_buf(),
        }
    }

    /// Loads the effective configuration the way every program does: `explicit` if given, else
    /// `TELEM_CONFIG` if set (each on top of the defaults alone), else the layered files; all
    /// default paths below `TELEM_ROOT`. Any error (see [`Config::load_with_diagnostics`]) is
    /// returned, the first one found; warnings are in [`Config::warnings`].
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let root = env::root();
        Config::load_from(&root, Config::explicit_or_env(explicit).as_deref())
    }

    /// Loads like [`Config::load`] but never fails: every key that could be read is set, a key
    /// (or line) in error keeps its previous value, a file that cannot be read sets nothing, and
    /// every problem is in the list, errors and warnings, in file order.
    pub fn load_with_diagnostics(explicit: Option<&Path>) -> (Config, Vec<Diagnostic>) {
        let root = env::root();
        Config::load_from_with_diagnostics(&root, Config::explicit_or_env(explicit).as_deref())
    }

    fn explicit_or_env(explicit: Option<&Path>) -> Option<PathBuf> {
        explicit.map(Path::to_path_buf).or_else(|| {
            std::env::var_os(env::CONFIG)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// [`Config::load`] with the root and explicit file given.
    pub fn load_from(root: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let (c, diagnostics) = Config::load_from_with_diagnostics(root, explicit);
        match diagnostics
            .into_iter()
            .find(|d| d.severity == Severity::Error)
        {
            Some(d) => Err(d.into_error()),
            None => Ok(c),
        }
    }

    /// [`Config::load_with_diagnostics`] with the root and explicit file given.
    pub fn load_from_with_diagnostics(
        root: &Path,
        explicit: Option<&Path>,
    ) -> (Config, Vec<Diagnostic>) {
        let mut c = Config::defaults(root);
        let mut diagnostics = Vec::new();
        match explicit {
            Some(f) => {
                // The caller chose this file: records carry its path even when it cannot be read.
                c.explicit_file = Some(f.to_path_buf());
                match fs::read(f) {
                    Ok(bytes) => diagnostics.extend(c.apply_bytes_lenient(&bytes, f)),
                    Err(e) => diagnostics.push(Diagnostic::unreadable(f, &e, Severity::Error)),
                }
            }
            None => {
                for f in [under(root, VENDOR_CONFIG), under(root, ADMIN_CONFIG)] {
                    match fs::read(&f) {
                        Ok(bytes) => diagnostics.extend(c.apply_bytes_lenient(&bytes, &f)),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            let d = Diagnostic::unreadable(&f, &e, Severity::Warning);
                            c.warnings
                                .push(format!("{d}; its settings are not applied"));
                            diagnostics.push(d);
                        }
                    }
                }
            }
        }
        (c, diagnostics)
    }

    /// Reads one file on top of the current values. The file must exist.
    pub fn apply_file(&mut self, file: &Path) -> Result<(), ConfigError> {
        let bytes = fs::read(file)
            .map_err(|e| Diagnostic::unreadable(file, &e, Severity::Error).into_error())?;
        self.apply_bytes(&bytes, file)
    }

    /// Parses INI text on top of the current values. On error nothing is changed.
    pub fn apply_bytes(&mut self, bytes: &[u8], origin: &Path) -> Result<(), ConfigError> {
        let mut next = self.clone();
        let diagnostics = next.apply_bytes_lenient(bytes, origin);
        if let Some(d) = diagnostics
            .into_iter()
            .find(|d| d.severity == Severity::Error)
        {
            return Err(d.into_error());
        }
        *self = next;
        Ok(())
    }

    /// Parses INI text on top of the current values, line by line: a line or value that cannot
    /// be used is an error and changes nothing, every other line applies. Warnings are also
    /// added to [`Config::warnings`].
    pub fn apply_bytes_lenient(&mut self, bytes: &[u8], origin: &Path) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut section: Option<String> = None;
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let n = i + 1;
            let at = |severity, key, message| Diagnostic {
                severity,
                file: origin.to_path_buf(),
                line: Some(n),
                key,
                message,
            };
            let Ok(raw) = std::str::from_utf8(raw) else {
                out.push(at(
                    Severity::Error,
                    None,
                    "not valid UTF-8; line ignored".into(),
                ));
                continue;
            };
            let line = raw.trim_matches([' ', '\t', '\r']);
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                match rest.strip_suffix(']') {
                    Some(name) => section = Some(name.trim().to_string()),
                    None => {
                        // Keys below a broken header belong to no section we can name.
                        section = None;
                        out.push(at(
                            Severity::Error,
                            None,
                            format!("section header {} does not end with ']'", excerpt(line)),
                        ));
                    }
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                out.push(at(
                    Severity::Error,
                    None,
                    format!("{} is not 'key = value'", excerpt(line)),
                ));
                continue;
            };
            let key = key.trim_matches([' ', '\t']);
            let value = unescape(value.trim_matches([' ', '\t']));
            if key.is_empty() {
                out.push(at(Severity::Error, None, "empty key".to_string()));
                continue;
            }
            let Some(sec) = &section else {
                out.push(at(
                    Severity::Error,
                    None,
                    format!("key {} before any [section]", excerpt(key)),
                ));
                continue;
            };
            if sec != "settings" {
                out.push(at(
                    Severity::Warning,
                    None,
                    format!(
                        "section {} is not used; key {} ignored",
                        excerpt(&format!("[{sec}]")),
                        excerpt(key)
                    ),
                ));
                continue;
            }
            let Some((k, set)) = KEYS.iter().find(|(k, _)| *k == key) else {
                out.push(at(
                    Severity::Warning,
                    None,
                    format!("unknown key {} ignored", excerpt(key)),
                ));
                continue;
            };
            // A setter changes nothing when it fails, so the key keeps its previous value.
            match set(self, &value) {
                Ok(note) => {
                    self.sources
                        .insert(k, Source::File(origin.to_path_buf(), n));
                    if let Some(w) = note {
                        out.push(at(Severity::Warning, Some(k), w));
                    }
                }
                Err(message) => out.push(at(Severity::Error, Some(k), message)),
            }
        }
        self.warnings.extend(
            out.iter()
                .filter(|d| d.severity == Severity::Warning)
                .map(Diagnostic::to_string),
        );
        out
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
            "ras_storm_window" => self.ras_storm_window.to_string(),
            "ras_uncorrected_limit" => self.ras_uncorrected_limit.to_string(),
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
