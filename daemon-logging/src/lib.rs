//! Where the daemons (`telemprobd`, `telempostd`) log: the systemd journal, with structured
//! fields and their own `SYSLOG_IDENTIFIER`, when systemd runs them; stderr otherwise. The
//! level comes from `RUST_LOG` (default `info`; per-record events are at `debug`), read as a
//! list of `target=level` and bare `level` items ([`filter_from`]).
//!
//! One crate so that both daemons decide the same way. It is not part of `libtelemetry`: that
//! crate is also the C library, which has no use for a subscriber. The crash probe sets up its
//! own logging: the kernel, not systemd, starts it as the `core_pattern` handler, and it then
//! logs to both places; as a service (`crashprobe --journal`) it asks [`started_by_systemd`].

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

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
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = || filter_from(rust_log.as_deref());
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

/// The level filter a `RUST_LOG` value asks for: comma-separated `target=level` and bare `level`
/// items (`warn`, `telempostd=debug,info`, `off`), a target matching itself and every module
/// below it; a bare word is a target at every level. Unset, empty or not understood: `info`.
///
/// `tracing_subscriber`'s `Targets`, not its `EnvFilter`: the same syntax for these lists, but no
/// span or field filters and no regular expressions, whose matcher was a fifth of each daemon's
/// code and stayed mapped while idle (docs/benchmarks.md, "Idle cost").
pub fn filter_from(rust_log: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match rust_log.map(str::trim) {
        None | Some("") => info(),
        Some(v) => v.parse().unwrap_or_else(|_| info()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::filter_from;
    use tracing::level_filters::LevelFilter;
    use tracing::Level;

    #[test]
    fn rust_log_lists_set_levels_per_target() {
        let f = filter_from(Some("telempostd=debug,warn"));
        assert!(f.would_enable("telempostd::deliver", &Level::DEBUG));
        assert!(!f.would_enable("telempostd::deliver", &Level::TRACE));
        assert!(!f.would_enable("ureq", &Level::INFO));
        assert!(f.would_enable("ureq", &Level::WARN));
        // A bare word is a target with every level, the rest off (as `EnvFilter` reads it).
        let f = filter_from(Some("telemprobd"));
        assert!(f.would_enable("telemprobd::store", &Level::TRACE));
        assert!(!f.would_enable("ureq", &Level::ERROR));

        let f = filter_from(Some("debug"));
        assert!(f.would_enable("telemprobd::store", &Level::DEBUG));
        assert!(!f.would_enable("telemprobd::store", &Level::TRACE));

        let f = filter_from(Some("off"));
        assert!(!f.would_enable("telemprobd", &Level::ERROR));
    }

    #[test]
    fn unset_empty_or_invalid_rust_log_means_info() {
        for v in [
            None,
            Some(""),
            Some("  "),
            Some("x=loud"),
            Some("a=b=c"),
            Some("warn,x=verbose"),
        ] {
            let f = filter_from(v);
            assert_eq!(f.default_level(), Some(LevelFilter::INFO), "{v:?}");
            assert!(f.would_enable("telemprobd", &Level::INFO), "{v:?}");
            assert!(!f.would_enable("telemprobd", &Level::DEBUG), "{v:?}");
        }
    }
}
