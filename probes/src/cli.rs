//! What every probe binary does the same way: parse arguments (usage errors exit 1, as the
//! original's getopt loops), set up logging on stderr, and turn a run's result into an exit code.

use std::process::ExitCode;

use clap::Parser;

/// Parses the command line. `-h`/`-V` print and exit 0; a usage error prints and exits 1.
pub fn parse<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level (warnings and errors).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Prints `prog: error: …` for a failed run and exits 1; passes a successful code through.
pub fn finish(prog: &str, result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{prog}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
