//! Logging: the journal when systemd runs us, stderr otherwise. Never fatal.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// True when systemd started us (it sets these for every service).
fn under_systemd() -> bool {
    ["JOURNAL_STREAM", "INVOCATION_ID"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Installs the global subscriber. Level from `RUST_LOG` (default `info`).
pub fn init() {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = if under_systemd() {
        match tracing_journald::layer() {
            Ok(l) => Some(l.with_syslog_identifier("telemprobd".into())),
            Err(e) => {
                eprintln!("telemprobd: journald not reachable ({e}); logging to stderr");
                None
            }
        }
    } else {
        None
    };
    let registry = tracing_subscriber::registry();
    let result = match journald {
        Some(j) => registry.with(j.with_filter(filter())).try_init(),
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("telemprobd: logging not set up: {e}");
    }
}
