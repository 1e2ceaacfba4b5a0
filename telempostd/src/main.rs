//! telempostd: delivers spooled records to the telemetry collector. Wiring only: arguments,
//! configuration, logging, runtime, signals, then `telempostd::run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use telemetry::Config;
use telempostd::{Exit, Options, Tuning};
use tokio::signal::unix::{signal, SignalKind};

/// Delivers spooled telemetry records to the collector.
///
/// The tuning options exist for tests and benchmarks; production uses the defaults.
#[derive(Debug, Parser)]
#[command(name = "telempostd", version)]
struct Cli {
    /// Configuration file, read on top of the built-in defaults alone.
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    config_file: Option<PathBuf>,
    /// Whole-request HTTP timeout in milliseconds (default 10000).
    #[arg(long, value_name = "MS")]
    http_timeout_ms: Option<u64>,
    /// TCP connect timeout in milliseconds (default 5000).
    #[arg(long, value_name = "MS")]
    connect_timeout_ms: Option<u64>,
    /// First retry delay, and the floor of every retry delay, in milliseconds (default 1000).
    #[arg(long, value_name = "MS")]
    retry_base_ms: Option<u64>,
    /// Largest retry delay in milliseconds (default: spool_process_time).
    #[arg(long, value_name = "MS")]
    retry_cap_ms: Option<u64>,
    /// Time between full spool scans in milliseconds (default: spool_process_time).
    #[arg(long, value_name = "MS")]
    scan_interval_ms: Option<u64>,
    /// Idle seconds before exiting when daemon_recycling_enabled (default 300).
    #[arg(long, value_name = "SECS")]
    idle_exit_secs: Option<u64>,
    /// Open a new connection for every record (benchmark comparison only).
    #[arg(long)]
    no_keepalive: bool,
}

impl Cli {
    fn tuning(&self) -> Tuning {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    telempostd::logging::init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("telempostd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config_file.as_deref()).context("loading the configuration")?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // One thread for the loop, one blocking thread for the HTTP call: small and sufficient,
    // since records go out one at a time.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .context("starting the runtime")?;
    let opts = Options {
        config,
        config_file: cli.config_file.clone(),
        tuning: cli.tuning(),
        reload_on_sighup: true,
    };
    let exit = rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("catching SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        telempostd::run(opts, shutdown)
            .await
            .map_err(anyhow::Error::from)
    })?;
    match exit {
        Exit::Shutdown | Exit::Idle => Ok(ExitCode::SUCCESS),
    }
}
