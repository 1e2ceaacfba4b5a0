//! telempostd: delivers spooled records to the telemetry collector. Wiring only: arguments,
//! configuration, logging, runtime, signals, then `telempostd::run`.

use std::process::ExitCode;

use anyhow::Context as _;
use telemetry::Config;
use telempostd::cli::Cli;
use telempostd::{Exit, Options};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // -h and -V succeed; a usage error exits 1 as the original's (clap's default is 2).
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    daemon_logging::init("telempostd");
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Once, where the logs go (stderr, or the journal under systemd), as telemprobd.
            tracing::error!("{e:#}");
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
