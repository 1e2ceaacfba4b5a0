//! `telem-collector`: wiring only. Arguments → state → listener → serve until SIGTERM/SIGINT.

mod cli;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use telem_collector::{serve, Options, State};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let state = Arc::new(
        State::new(Options {
            tid: cli.tid,
            store: cli.store.clone(),
        })
        .with_context(|| format!("opening store file {:?}", cli.store))?,
    );
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    if let Some(p) = &cli.port_file {
        write_atomically(p, &format!("{}\n", addr.port()))
            .with_context(|| format!("writing port file {}", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "telem-collector listening on http://{addr}")?;
    out.flush()?;
    drop(out);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received, stopping");
    };
    serve(listener, state, stop).await?;
    Ok(())
}

/// Readers polling for the file never see it empty or half-written.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
