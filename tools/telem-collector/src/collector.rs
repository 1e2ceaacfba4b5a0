//! `Collector`: a server on its own thread and tokio runtime, for synchronous tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::server::serve_with;
use crate::state::{Fault, Options, RequestLog, State, StoredRecord};

/// A running test collector. Stops on `stop()` or drop.
pub struct Collector {
    state: Arc<State>,
    addr: SocketAddr,
    scheme: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    /// Binds `addr` (e.g. "127.0.0.1:0") and serves on a new thread. The socket is listening
    /// when this returns, so clients may connect at once.
    pub fn start(addr: &str, opts: Options) -> std::io::Result<Collector> {
        Collector::launch(addr, opts, None)
    }

    /// Like [`Collector::start`], but serving HTTPS with this certificate chain and private key
    /// (PEM); [`Collector::url`] then gives `https://` URLs.
    pub fn start_tls(
        addr: &str,
        opts: Options,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<Collector> {
        let acceptor = crate::tls::acceptor(cert_chain_pem, key_pem)?;
        Collector::launch(addr, opts, Some(acceptor))
    }

    fn launch(
        addr: &str,
        opts: Options,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Collector> {
        let state = Arc::new(State::new(opts)?);
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (tx, rx) = oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("telem-collector".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            let stop = async {
                                // A dropped sender means the Collector is gone: stop too.
                                let _ = rx.await;
                            };
                            if let Err(e) = serve_with(l, st, stop, tls).await {
                                tracing::error!(error = %e, "collector stopped");
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "collector listener unusable"),
                    }
                });
            })?;
        Ok(Collector {
            state,
            addr,
            scheme,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url("/v2/collector")` → `http://127.0.0.1:PORT/v2/collector`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn records(&self) -> Vec<StoredRecord> {
        self.state.records()
    }

    /// Posts of a record stored already (answered as a success, not stored again).
    pub fn duplicates(&self) -> u64 {
        self.state.duplicates()
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.state.requests()
    }

    /// Queues `fault` for the next `times` requests to the collector paths (FIFO).
    pub fn push_fault(&self, fault: Fault, times: usize) {
        self.state.push_fault(fault, times);
    }

    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Waits (bounded by `timeout`) until at least n records are stored; returns whether it
    /// happened.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> bool {
        self.state.wait_for_records(n, timeout)
    }

    /// The shared state, e.g. to serve it elsewhere.
    pub fn state(&self) -> Arc<State> {
        self.state.clone()
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
