//! Process-wide library state: which config file the caller chose, and the config loaded from it.
//! Loaded lazily on first use, as the original, and reloaded after `tm_set_config_file`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::env;

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
/// original called exit(1) here): the problem is printed once and the built-in defaults are used.
pub fn config() -> Arc<Config> {
    let mut s = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(c) = &s.loaded {
        return Arc::clone(c);
    }
    let c = match Config::load(s.explicit.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("libtelemetry: {e}; using built-in defaults");
            let mut c = Config::defaults(&env::root());
            // Keep sending CFG: so the daemons see the same file the caller asked for.
            c.explicit_file = s.explicit.clone();
            c
        }
    };
    let c = Arc::new(c);
    s.loaded = Some(Arc::clone(&c));
    c
}
