//! telem_journal: the original client's journal viewer, as a thin entry into `telemctl
//! journal` (the same code) with the original's options, columns and exit status.

use std::process::ExitCode;

use clap::Parser;
use telemctl::cli::JournalCli;
use telemctl::commands::{self, Columns};
use telemetry::config::Severity;
use telemetry::Config;

fn main() -> ExitCode {
    let cli = match JournalCli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version exit 0; every usage error exits 1, as the original did.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("telem_journal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &JournalCli) -> anyhow::Result<ExitCode> {
    commands::check_config_file(cli.config_file.as_deref())?;
    let (config, diagnostics) = Config::load_with_diagnostics(cli.config_file.as_deref());
    for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
        eprintln!("telem_journal: warning: {d}");
    }
    commands::journal_cmd(&config, &cli.journal, Columns::Original)
}
