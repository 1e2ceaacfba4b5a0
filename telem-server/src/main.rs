//! `telem-server`: wiring only (arguments, logging, signals); the server is the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use telem_server::config::{Config, DEFAULT_PATH};
use tracing_subscriber::EnvFilter;

/// Telemetry backend: receives records over the collector protocol, stores each once in SQLite
/// or PostgreSQL, and answers queries (see docs/server.md).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short, long, env = "TELEM_SERVER_CONFIG", default_value = DEFAULT_PATH, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Read and check the configuration, print it as understood, and exit.
    CheckConfig,
    /// Recompute the crash signature of every stored record with the configured skip list
    /// (after `crash.skip` changed), print what changed, and exit.
    Regroup,
    /// Delete the records older than the configured retention now, print the counts, and exit.
    Purge,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = Config::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("{}: ok", cli.config.display());
            println!("listen = {}", cfg.listen);
            match &cfg.tls {
                Some(t) => {
                    telem_server::tls::server_config(&t.cert, &t.key)?;
                    println!(
                        "tls: HTTPS with {} and {}",
                        t.cert.display(),
                        t.key.display()
                    );
                }
                None => println!("tls: none (plain HTTP)"),
            }
            if cfg.tokens_in_clear() {
                println!(
                    "warning: no [tls] on a listener beyond loopback: the tokens travel in clear text"
                );
            }
            println!("storage.engine = {:?}", cfg.storage.engine);
            println!(
                "query API credential: {}",
                if cfg.query_token.is_some() {
                    "required"
                } else {
                    "none (loopback only)"
                }
            );
            println!(
                "fleet token: {}",
                if cfg.fleet_token.is_some() {
                    "required"
                } else {
                    "not required"
                }
            );
            let skip = cfg.crash.skip.len() + cfg.crash.skip_extra.len();
            println!("crash skip list: {skip} entries");
            if cfg.retention.enabled() {
                println!("retention: {} days (0 = forever)", cfg.retention.days);
                for (pattern, days) in &cfg.retention.classification {
                    println!("retention: {pattern}: {days} days");
                }
            } else {
                println!("retention: records kept forever");
            }
            Ok(())
        }
        Command::Serve => serve(cfg),
        Command::Regroup => once(&cfg, |store, cfg| async move {
            // The configured list with the edits made through the API, as a running server has it.
            let configured: Vec<String> = cfg
                .crash
                .skip
                .iter()
                .chain(&cfg.crash.skip_extra)
                .cloned()
                .collect();
            let skip = store.effective_skip(&configured).await?;
            let done = store.regroup(&skip).await?;
            println!(
                "regrouped: {} records with a backtrace, {} changed",
                done.examined, done.changed
            );
            Ok(())
        }),
        Command::Purge => once(&cfg, |store, cfg| async move {
            if !cfg.retention.enabled() {
                println!("retention: nothing configured, nothing deleted");
                return Ok(());
            }
            for p in telem_server::retention::purge_once(&store, &cfg.retention).await? {
                println!(
                    "purged {} records of {} older than {} days",
                    p.deleted,
                    p.classification
                        .as_deref()
                        .unwrap_or("other classifications"),
                    p.days
                );
            }
            Ok(())
        }),
    }
}

/// Opens the store, runs `job` on it, closes it: the one-shot commands.
fn once<F, Fut>(cfg: &Config, job: F) -> anyhow::Result<()>
where
    F: FnOnce(telem_server::store::Store, Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let store = telem_server::store::Store::open(cfg)
            .await
            .context("opening the store")?;
        let r = job(store.clone(), cfg.clone()).await;
        store.close().await;
        r
    })
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        telem_server::run(&cfg, listener, shutdown_signal())
            .await
            .context("telem-server")
    })
}

/// SIGTERM (systemd) or SIGINT (a terminal).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
