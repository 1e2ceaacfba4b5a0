//! Command line of telempostd. A library module so that `telem-docgen` renders the man page
//! and shell completions from the definition the binary parses with.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use telemetry::service_args::config_file_only;

use crate::Tuning;

/// Delivers spooled telemetry records to the collector.
///
/// The tuning options exist for tests and benchmarks; production uses the defaults.
#[derive(Debug, PartialEq, Eq, Parser)]
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
    /// The command line `args` (program name first, as `std::env::args_os`): the shapes a
    /// service uses — none, or only `-f FILE` — read directly, everything else by clap.
    ///
    /// Why a fast path: [`telemetry::service_args`]; the test below checks that clap agrees.
    pub fn from_args(args: &[OsString]) -> Result<Cli, clap::Error> {
        match quick_parse(args) {
            Some(cli) => Ok(cli),
            None => Cli::try_parse_from(args),
        }
    }

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

/// The command lines a service manager gives ([`config_file_only`]) with every other option
/// at its default; `None` for anything else.
fn quick_parse(args: &[OsString]) -> Option<Cli> {
    let config_file = config_file_only(args)?;
    Some(Cli {
        config_file,
        http_timeout_ms: None,
        connect_timeout_ms: None,
        retry_base_ms: None,
        retry_cap_ms: None,
        scan_interval_ms: None,
        idle_exit_secs: None,
        no_keepalive: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::CommandFactory;
    use telemetry::service_args::fast_path_agrees;

    #[test]
    fn fast_path_gives_what_clap_gives() {
        Cli::command().debug_assert();
        let vocabulary = [
            "-f",
            "--config-file",
            "--config_file",
            "--config-file=/a",
            "/x.conf",
            "-",
            "",
            "--http-timeout-ms",
            "7",
            "--no-keepalive",
            "--idle-exit-secs",
            "-h",
            "--help",
            "-V",
            "--bogus",
        ];
        let fast = fast_path_agrees("telempostd", &vocabulary, quick_parse, |a| {
            Cli::try_parse_from(a).ok()
        })
        .unwrap();
        // No argument, and -f under its three names with each of the two plain values.
        assert_eq!(fast, 7);
        let args: Vec<OsString> = ["telempostd", "-f", "/etc/t.conf"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            Cli::from_args(&args).unwrap().config_file,
            Some(PathBuf::from("/etc/t.conf"))
        );
        let help: Vec<OsString> = ["telempostd", "--help"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(!Cli::from_args(&help).unwrap_err().use_stderr());
    }
}
