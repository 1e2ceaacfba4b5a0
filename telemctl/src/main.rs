//! telemctl: the one front door — opt-in/opt-out, start/stop, journal, status, config.

use std::process::ExitCode;

use clap::Parser;
use telemctl::cli::{Cli, Command};
use telemctl::commands::{self, Columns};
use telemetry::config::Severity;
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
    commands::check_config_file(cli.config_file.as_deref())?;
    let explicit = cli.config_file.as_deref();
    match &cli.command {
        Command::OptIn => commands::opt_in(&Config::load(explicit)?),
        Command::OptOut => commands::opt_out(&Config::load(explicit)?),
        Command::Start => commands::start(&Config::load(explicit)?),
        Command::Stop => commands::stop(&Config::load(explicit)?),
        Command::Restart => commands::restart(&Config::load(explicit)?),
        Command::IsActive => commands::is_active(),
        // The commands that only show things show every problem of the configuration and the
        // settings the files' other keys give, instead of refusing.
        Command::Status => {
            let (config, diagnostics) = Config::load_with_diagnostics(explicit);
            commands::status(&config, &diagnostics)
        }
        Command::Config(args) => {
            let (config, diagnostics) = Config::load_with_diagnostics(explicit);
            commands::config_cmd(&config, &diagnostics, args.check)
        }
        Command::Journal(args) => {
            let (config, diagnostics) = Config::load_with_diagnostics(explicit);
            for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
                eprintln!("telemctl: warning: {d}");
            }
            commands::journal_cmd(&config, args, Columns::Telemctl)
        }
    }
}
