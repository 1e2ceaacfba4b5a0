//! `server::run` as a library seam: the server runs inside the test's own runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use telemetry::{client, Config};
use telemprobd::listener::Listener;
use telemprobd::server::{self, Exit, Options};
use tokio::sync::{oneshot, watch};

#[tokio::test(flavor = "current_thread")]
async fn run_in_process_stores_and_stops_on_the_shutdown_future() {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("telemetrics.conf");
    write_config(&conf, "");
    let config = Config::load_from(root.path(), Some(&conf)).unwrap();
    opt_in(&config);
    std::fs::create_dir_all(config.socket_path.parent().unwrap()).unwrap();
    let listener =
        Listener::from_tokio(tokio::net::UnixListener::bind(&config.socket_path).unwrap()).unwrap();
    let (_config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let options = Options {
        client_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let server = tokio::spawn(server::run(listener, config_rx, options, async {
        let _ = stop_rx.await;
    }));
    let c = config.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            client::send(&record(&format!("in process {i}")), &c).unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(spool_files(&config.spool_dir).len(), 20);
    stop_tx.send(()).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(exit, Exit::Stopped);
    let st = telemetry::status::read(&telemetry::status::path(&config, "telemprobd"))
        .unwrap()
        .unwrap();
    assert_eq!(st.counters["stored"], 20);
}
