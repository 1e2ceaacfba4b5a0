//! telemprobd binary: arguments → logging → config → signals → socket → `server::run`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use telemetry::Config;
use telemprobd::cli::Cli;
use telemprobd::shutdown::{Event, Signals};
use telemprobd::{listener, server};
use tokio::sync::{oneshot, watch};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // -h and -V succeed; anything else is a usage error, exit 1 as the original.
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    daemon_logging::init("telemprobd");
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config_file.as_deref()).context("configuration not valid")?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // One thread serves every client; the spool writer has its own. Small and enough: the work
    // per record is a few microseconds of parsing, the rest is waiting for the disk.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Signals first, so a SIGTERM right after the socket appears is a clean stop.
        let mut signals = Signals::new().context("installing signal handlers")?;
        // Still single-threaded here: reading (and clearing) LISTEN_FDS is safe.
        let bound = listener::activate_or_bind(&config.socket_path, cli.socket_mode)
            .context("setting up the socket")?;
        let listener = bound.into_listener().context("registering the socket")?;
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let explicit = cli.config_file.clone();
        tokio::spawn(async move {
            loop {
                match signals.recv().await {
                    Event::Stop(name) => {
                        tracing::info!(signal = name, "stopping");
                        let _ = stop_tx.send(());
                        return;
                    }
                    Event::Reload => {
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
                        match Config::load(explicit.as_deref()) {
                            Ok(c) => {
                                tracing::info!("SIGHUP: configuration reloaded");
                                let _ = config_tx.send(Arc::new(c));
                            }
                            Err(e) => {
                                tracing::error!("SIGHUP: {e}; keeping the running configuration")
                            }
                        }
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
                    }
                }
            }
        });
        let options = cli.options();
        server::run(listener, config_rx, options, async {
            let _ = stop_rx.await;
        })
        .await
        .context("serving")?;
        Ok(())
    })
}
