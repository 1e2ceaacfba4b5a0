//! Where the daemons (`telemprobd`, `telempostd`) log: the systemd journal, with structured
//! fields and their own `SYSLOG_IDENTIFIER`, when systemd runs them; stderr otherwise. The
//! level comes from `RUST_LOG` (default `info`; per-record events are at `debug`).
//!
//! One crate so that both daemons decide the same way. It is not part of `libtelemetry`: that
//! crate is also the C library, which has no use for a subscriber. The crash probe sets up its
//! own logging: the kernel, not systemd, starts it as the `core_pattern` handler, and it then
//! logs to both places; as a service (`crashprobe --journal`) it asks [`started_by_systemd`].

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// True when systemd runs us as a service, so logs belong in the journal.
///
/// systemd sets `JOURNAL_STREAM` (`<device>:<inode>`) when a service's output goes to the
/// journal: if it names our stderr, that settles it (systemd.exec(5) recommends this check).
/// It also sets `INVOCATION_ID` for every service, but a shell started by a user service (a
/// terminal emulator) inherits both, and a person running a program there wants to read its
/// messages: so without the stderr match, `INVOCATION_ID` counts only when stderr is not a
/// terminal.
pub fn started_by_systemd() -> bool {
    let set = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    let stderr_is_the_journal = set("JOURNAL_STREAM").is_some_and(|stream| {
        rustix::fs::fstat(std::io::stderr()).is_ok_and(|st| {
            stream.to_str() == Some(format!("{}:{}", st.st_dev, st.st_ino).as_str())
        })
    });
    stderr_is_the_journal || (set("INVOCATION_ID").is_some() && !std::io::stderr().is_terminal())
}

/// Installs the global subscriber for the program `ident`. Never fails: when the journal cannot
/// be reached (its socket missing), says so on stderr and logs there.
pub fn init(ident: &str) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = if started_by_systemd() {
        match tracing_journald::layer() {
            Ok(l) => Some(l.with_syslog_identifier(ident.to_owned())),
            Err(e) => {
                eprintln!("{ident}: journald not reachable ({e}); logging to stderr");
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
                    // Colours only for a person at a terminal, not in a log file or pipe.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("{ident}: logging not set up: {e}");
    }
}
