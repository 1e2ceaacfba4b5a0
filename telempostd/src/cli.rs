//! Command line of telempostd. A library module so that `telem-docgen` renders the man page
//! and shell completions from the definition the binary parses with.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::Tuning;

/// Delivers spooled telemetry records to the collector.
///
/// The tuning options exist for tests and benchmarks; production uses the defaults.
#[derive(Debug, Parser)]
#[command(name = "telempostd", version = telemetry::VERSION_TEXT)]
pub struct Cli {
    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files).
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,
    /// Whole-request HTTP timeout in milliseconds [default: 10000]
    #[arg(long, value_name = "MS")]
    pub http_timeout_ms: Option<u64>,
    /// TCP connect timeout in milliseconds [default: 5000]
    #[arg(long, value_name = "MS")]
    pub connect_timeout_ms: Option<u64>,
    /// First retry delay, and the floor of every retry delay, in milliseconds [default: 1000]
    #[arg(long, value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Largest retry delay in milliseconds [default: spool_process_time, from the configuration]
    #[arg(long, value_name = "MS")]
    pub retry_cap_ms: Option<u64>,
    /// Time between full spool scans in milliseconds [default: spool_process_time, from the configuration]
    #[arg(long, value_name = "MS")]
    pub scan_interval_ms: Option<u64>,
    /// Seconds without work after which the daemon exits when `daemon_recycling_enabled` is
    /// set (the path unit starts it again on demand) [default: 300]
    #[arg(long, value_name = "SECS")]
    pub idle_exit_secs: Option<u64>,
    /// Open a new connection for every record (benchmark comparison only).
    #[arg(long)]
    pub no_keepalive: bool,
}

impl Cli {
    /// The tuning knobs given on the command line, defaults for the rest.
    pub fn tuning(&self) -> Tuning {
        let ms = Duration::from_millis;
        let d = Tuning::default();
        Tuning {
            http_timeout: self.http_timeout_ms.map_or(d.http_timeout, ms),
            connect_timeout: self.connect_timeout_ms.map_or(d.connect_timeout, ms),
            retry_base: self.retry_base_ms.map_or(d.retry_base, ms),
            retry_cap: self.retry_cap_ms.map(ms),
            scan_interval: self.scan_interval_ms.map(ms),
            idle_exit: self.idle_exit_secs.map_or(d.idle_exit, Duration::from_secs),
            keepalive: !self.no_keepalive,
        }
    }
}
