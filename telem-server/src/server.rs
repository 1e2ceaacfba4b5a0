//! Running a server: open the store, start the writer, serve until the shutdown future ends,
//! then drain the writer so every answered record is committed.

use std::future::Future;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::http::{router, AppState};
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Serves `cfg` on `listener` until `shutdown` completes.
pub async fn run(
    cfg: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // The certificate first: a server that cannot serve what it is configured for does not start.
    let tls = match &cfg.tls {
        Some(t) => Some(crate::tls::server_config(&t.cert, &t.key)?),
        None => None,
    };
    if cfg.tokens_in_clear() {
        warn!(
            listen = %cfg.listen,
            "no [tls] on a listener beyond loopback: the tokens travel in clear text"
        );
    }
    let store = Store::open(cfg).await?;
    info!(
        engine = ?cfg.storage.engine,
        schema = store.schema_version().await?,
        "store ready"
    );
    let metrics = Arc::new(Metrics::default());
    let (ingest, writer) = Ingest::start(
        store.clone(),
        metrics.clone(),
        cfg.ingest.batch_max,
        cfg.ingest.queue,
        // One writer unless configured: with 8 senders on 2 cores a second PostgreSQL writer
        // lowered the rate by about a tenth (fewer records per commit; docs/benchmarks.md).
        cfg.ingest.writers,
    );
    let state = Arc::new(AppState {
        tid: cfg.tid.clone(),
        fleet_token: cfg.fleet_token.clone(),
        query_token: cfg.query_token.clone(),
        ingest,
        store: store.clone(),
        metrics,
        skip: crate::crash::Grouping::new(
            cfg.crash
                .skip
                .iter()
                .chain(&cfg.crash.skip_extra)
                .cloned()
                .collect(),
        ),
    });
    state.skip.set_edits(&store.skip_edits().await?);
    // Holds only a weak reference: the writer below ends when the last strong one is gone.
    let skip_reload = tokio::spawn(crate::api::crash_groups::reload_skip_edits(Arc::downgrade(
        &state,
    )));
    let purge = cfg.retention.enabled().then(|| {
        tokio::spawn(crate::retention::run_daily(
            store.clone(),
            cfg.retention.clone(),
        ))
    });
    let fold = tokio::spawn(crate::store::day_summary::fold_periodically(store.clone()));
    let app = router(state, cfg.max_body_bytes);
    match tls {
        Some(tls) => {
            info!(addr = %listener.local_addr()?, tls = true, "listening");
            let listener = crate::tls::TlsListener::new(listener, tls)?;
            // The session cookie gets `Secure` on pages served over TLS.
            let app = app.layer(axum::Extension(crate::web::auth::ServedOverTls));
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        None => {
            info!(addr = %listener.local_addr()?, tls = false, "listening");
            // As on the TLS path: a response written in pieces must not wait for the client's
            // delayed ACK (Nagle); axum::serve leaves the option as the kernel sets it (off).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    debug!(error = %e, "TCP_NODELAY not set");
                }
            });
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    skip_reload.abort();
    let _ = skip_reload.await;
    fold.abort();
    let _ = fold.await;
    // The router (and with it every Ingest handle) is gone: the writer finishes its queue.
    let _ = writer.await;
    if let Some(p) = purge {
        p.abort();
        let _ = p.await;
    }
    store.close().await;
    info!("stopped");
    Ok(())
}
