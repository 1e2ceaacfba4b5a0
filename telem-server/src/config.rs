//! The server's configuration file (TOML), with defaults for every key and the checks
//! `check-config` runs before anything is opened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the packaged unit looks for the configuration.
pub const DEFAULT_PATH: &str = "/etc/telem-server/telem-server.toml";
/// The TID the public backend ships with and telempostd sends by default.
pub const DEFAULT_TID: &str = "6907c830-eed9-4ce9-81ae-76daf8d88f0f";

/// Longest retention age a configuration may give (100 years: beyond it, use 0).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port of the one HTTP listener (collector, query API, health, metrics).
    pub listen: SocketAddr,
    /// The only `X-Telemetry-TID` value accepted.
    pub tid: String,
    /// When set, collector requests must carry `Authorization: Bearer <fleet_token>`.
    pub fleet_token: Option<String>,
    /// Credential for the query API (`Authorization: Bearer <query_token>`); required unless
    /// `listen` is a loopback address.
    pub query_token: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub storage: Storage,
    pub ingest: Ingest,
    pub crash: Crash,
    pub retention: Retention,
    /// HTTPS on the listener when given.
    pub tls: Option<Tls>,
}

/// The listener's certificate and key (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The server certificate, then its chain.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Crash grouping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Crash {
    /// Frames never blamed (`function` or `function [module]`, `*` wildcards); replaces the
    /// default list when given.
    pub skip: Vec<String>,
    /// Entries added to `skip` (the usual way to extend the defaults).
    pub skip_extra: Vec<String>,
}

impl Default for Crash {
    fn default() -> Self {
        Crash {
            skip: crate::crash::DEFAULT_SKIP
                .iter()
                .map(|s| s.to_string())
                .collect(),
            skip_extra: Vec::new(),
        }
    }
}

impl Crash {
    /// The skip list this configuration means.
    pub fn skip_list(&self) -> crate::crash::SkipList {
        crate::crash::SkipList::new(self.skip.iter().chain(&self.skip_extra).map(String::as_str))
    }
}

/// How long records are kept. Nothing is deleted unless configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Days a record is kept after its reception; 0 keeps records forever.
    pub days: u32,
    /// Days per classification pattern (`*` matches any text), e.g.
    /// `"org.clearlinux/hello/*" = 1`; a record matching a pattern is kept by the patterns it
    /// matches (the shortest non-zero age wins), not by `days`; 0 keeps it forever.
    pub classification: BTreeMap<String, u32>,
}

impl Retention {
    /// Whether any rule deletes anything.
    pub fn enabled(&self) -> bool {
        self.days > 0 || self.classification.values().any(|d| *d > 0)
    }
}

/// Which engine holds the records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    pub engine: Engine,
    /// SQLite database file (engine "sqlite").
    pub path: PathBuf,
    /// PostgreSQL connection URL (engine "postgres").
    pub url: Option<String>,
    /// Most connections the pool opens.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Group commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    /// Most records committed in one transaction.
    pub batch_max: usize,
    /// Records waiting for the writer before new requests wait for room (backpressure).
    pub queue: usize,
    /// Writer tasks committing side by side (more than one only helps PostgreSQL).
    pub writers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tid: DEFAULT_TID.to_string(),
            fleet_token: None,
            query_token: None,
            max_body_bytes: 1 << 20,
            storage: Storage::default(),
            ingest: Ingest::default(),
            crash: Crash::default(),
            retention: Retention::default(),
            tls: None,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            engine: Engine::Sqlite,
            path: PathBuf::from("/var/lib/telem-server/records.db"),
            url: None,
            max_connections: 8,
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            batch_max: 256,
            queue: 4096,
            writers: 1,
        }
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// The checks that need no I/O: every rule a key's documentation states.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.tid.is_empty() {
            return bad("tid must not be empty".into());
        }
        for (key, tok) in [
            ("fleet_token", &self.fleet_token),
            ("query_token", &self.query_token),
        ] {
            if tok.as_deref().is_some_and(|t| t.len() < 16) {
                return bad(format!("{key} must be at least 16 characters"));
            }
        }
        if !self.listen.ip().is_loopback() && self.query_token.is_none() {
            return bad(format!(
                "listen {} is not a loopback address: set query_token so the query API needs a credential",
                self.listen
            ));
        }
        if self.storage.engine == Engine::Postgres && self.storage.url.is_none() {
            return bad("storage.engine = \"postgres\" needs storage.url".into());
        }
        if self.storage.engine == Engine::Sqlite && self.storage.path.as_os_str().is_empty() {
            return bad("storage.engine = \"sqlite\" needs storage.path".into());
        }
        if self.storage.max_connections == 0 {
            return bad("storage.max_connections must be at least 1".into());
        }
        if self.ingest.batch_max == 0 || self.ingest.queue == 0 || self.ingest.writers == 0 {
            return bad(
                "ingest.batch_max, ingest.queue and ingest.writers must be at least 1".into(),
            );
        }
        if self
            .crash
            .skip
            .iter()
            .chain(&self.crash.skip_extra)
            .any(|e| e.trim().is_empty())
        {
            return bad("crash.skip entries must not be empty".into());
        }
        let too_long = |d: u32| d > MAX_RETENTION_DAYS;
        if too_long(self.retention.days)
            || self.retention.classification.values().any(|d| too_long(*d))
        {
            return bad(format!(
                "retention ages are at most {MAX_RETENTION_DAYS} days (0 keeps forever)"
            ));
        }
        if self.retention.classification.keys().any(|k| k.is_empty()) {
            return bad("retention.classification patterns must not be empty".into());
        }
        Ok(())
    }

    /// Whether a token set in this configuration crosses the network in clear text: a listener
    /// beyond loopback without TLS.
    pub fn tokens_in_clear(&self) -> bool {
        self.tls.is_none()
            && !self.listen.ip().is_loopback()
            && (self.query_token.is_some() || self.fleet_token.is_some())
    }

    /// How long a start waits for the database before giving up.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        let c: Config = toml::from_str(s).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = parse("").unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.storage.engine, Engine::Sqlite);
    }

    #[test]
    fn public_listener_needs_a_query_token() {
        let e = parse("listen = \"0.0.0.0:8080\"").unwrap_err();
        assert!(e.contains("query_token"), "{e}");
        parse("listen = \"0.0.0.0:8080\"\nquery_token = \"0123456789abcdef\"").unwrap();
    }

    #[test]
    fn postgres_needs_a_url_and_unknown_keys_fail() {
        assert!(parse("[storage]\nengine = \"postgres\"").is_err());
        assert!(parse("[storage]\nengine = \"postgres\"\nurl = \"postgres://x/y\"").is_ok());
        assert!(parse("lisen = \"127.0.0.1:1\"").is_err());
        assert!(parse("fleet_token = \"short\"").is_err());
    }

    #[test]
    fn ingest_writers_default_to_one_and_are_at_least_one() {
        assert_eq!(parse("").unwrap().ingest.writers, 1);
        assert_eq!(parse("[ingest]\nwriters = 3").unwrap().ingest.writers, 3);
        assert!(parse("[ingest]\nwriters = 0").is_err());
    }

    #[test]
    fn crash_and_retention_keys() {
        let c = parse("[crash]\nskip_extra = [\"my_abort\"]\n[retention]\ndays = 35\n[retention.classification]\n\"org.clearlinux/hello/*\" = 1").unwrap();
        assert!(c.crash.skip_list().skips("my_abort", "/usr/bin/x"));
        assert!(c.crash.skip_list().skips("abort", "/usr/lib64/libc.so.6"));
        assert_eq!(c.retention.days, 35);
        assert!(c.retention.enabled());
        assert!(!parse("").unwrap().retention.enabled());
        let c = parse("[crash]\nskip = [\"only_this\"]").unwrap();
        assert!(!c.crash.skip_list().skips("abort", "/usr/lib64/libc.so.6"));
        assert!(parse("[retention]\ndays = 40000").is_err());
        assert!(parse("[crash]\nskip = [\"\"]").is_err());
    }

    #[test]
    fn tls_needs_both_files_and_tokens_in_clear_are_told() {
        let c = parse("[tls]\ncert = \"/etc/c.pem\"\nkey = \"/etc/k.pem\"").unwrap();
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/etc/k.pem"));
        assert!(parse("[tls]\ncert = \"/etc/c.pem\"").is_err());
        let public = "listen = \"0.0.0.0:8080\"\nquery_token = \"0123456789abcdef\"\n";
        assert!(parse(public).unwrap().tokens_in_clear());
        let tls = format!("{public}[tls]\ncert = \"c\"\nkey = \"k\"");
        assert!(!parse(&tls).unwrap().tokens_in_clear());
        assert!(!parse("query_token = \"0123456789abcdef\"")
            .unwrap()
            .tokens_in_clear());
    }
}
