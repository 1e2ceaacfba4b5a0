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
        let why = if !f.is_absolute() {
            Some("is not an absolute path")
        } else if !f.exists() {
            Some("does not exist")
        } else if !f.is_file() {
            Some("is not a regular file")
        } else {
            None
        };
        if let Some(why) = why {
            anyhow::bail!("Configuration file path not valid: {} {why}", f.display());
        }
    }
    if let Command::Config(args) = &cli.command {
        // Shows every problem, and the settings the file's other keys give, instead of stopping
        // at the first error.
        let (config, diagnostics) = Config::load_with_diagnostics(cli.config_file.as_deref());
        return commands::config_cmd(&config, &diagnostics, args.check);
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
        // Answered above, from every diagnostic.
        Command::Config(_) => Ok(ExitCode::SUCCESS),
        Command::Journal(args) => commands::journal_cmd(&config, args),
    }
}
