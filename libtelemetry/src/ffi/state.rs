//! Process-wide library state: which config file the caller chose, and the config loaded from it.
//! Loaded lazily on first use, as the original, and reloaded after `tm_set_config_file`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{Config, Severity};

struct State {
    explicit: Option<PathBuf>,
    loaded: Option<Arc<Config>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    explicit: None,
    loaded: None,
});

/// Sets the explicit config file; the next use reads it.
pub fn set_config_file(path: PathBuf) {
    let mut s = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    s.explicit = Some(path);
    s.loaded = None;
}

/// The effective config. A config that cannot be read never ends the caller's process (the
/// original called exit(1) here): each problem is printed once, a key in error keeps its
/// default and every other key of the file applies (a custom `socket_path` above all).
pub fn config() -> Arc<Config> {
    let mut s = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = &s.loaded {
        return Arc::clone(c);
    }
    let (c, diagnostics) = Config::load_with_diagnostics(s.explicit.as_deref());
    for d in &diagnostics {
        let consequence = match (d.severity, d.key, d.line) {
            (Severity::Warning, _, _) => "",
            (Severity::Error, Some(_), _) => "; that key keeps its default",
            (Severity::Error, None, Some(_)) => "; that line is ignored",
            (Severity::Error, None, None) => "; using built-in defaults",
        };
        eprintln!("libtelemetry: {}: {d}{consequence}", d.severity);
    }
    let c = Arc::new(c);
    s.loaded = Some(Arc::clone(&c));
    c
}
