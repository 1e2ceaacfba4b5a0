//! telemctl: the one front door — opt-in/opt-out, start/stop, journal, status, config.

mod cli;
mod commands;
mod purge;
mod timefmt;
mod units;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use telemetry::Config;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("telemctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(f) = &cli.config_file {
        if !f.is_absolute() || !f.is_file() {
            anyhow::bail!(
                "Configuration file path not valid: {} (an absolute path to a regular file is needed)",
                f.display()
            );
        }
    }
    let config = Config::load(cli.config_file.as_deref())?;
    match &cli.command {
        Command::OptIn => commands::opt_in(&config),
        Command::OptOut => commands::opt_out(&config),
        Command::Start => commands::start(&config),
        Command::Stop => commands::stop(&config),
        Command::Restart => commands::restart(&config),
        Command::IsActive => commands::is_active(),
        Command::Status => commands::status(&config),
        Command::Config => commands::config_cmd(&config),
        Command::Journal(args) => commands::journal_cmd(&config, args),
    }
}
