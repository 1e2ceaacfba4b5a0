//! telemctl: the one front door — opt-in/opt-out, start/stop, journal, status, config.

mod cli;
mod commands;
mod escape;
mod purge;
mod timefmt;
mod units;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use std::path::{Path, PathBuf};

use telemetry::config::{self, ConfigError};
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
    let explicit = cli.config_file.as_deref();
    match &cli.command {
        Command::OptIn => commands::opt_in(&Config::load(explicit)?),
        Command::OptOut => commands::opt_out(&Config::load(explicit)?),
        Command::Start => commands::start(&Config::load(explicit)?),
        Command::Stop => commands::stop(&Config::load(explicit)?),
        Command::Restart => commands::restart(&Config::load(explicit)?),
        Command::IsActive => commands::is_active(),
        Command::Status => {
            let (config, problems) = load_lenient(explicit);
            commands::status(&config, &problems)
        }
        Command::Config => {
            let (config, problems) = load_lenient(explicit);
            commands::config_cmd(&config, &problems)
        }
        Command::Journal(args) => {
            let (config, problems) = load_lenient(explicit);
            for p in &problems {
                eprintln!("telemctl: warning: {p}; that file's settings are not applied");
            }
            commands::journal_cmd(&config, args)
        }
    }
}

/// For the commands that only show things, a bad configuration file must not hide them: the
/// same layers as [`Config::load`], each applied on its own, a file that does not parse left
/// out and returned as a problem to show.
fn load_lenient(explicit: Option<&Path>) -> (Config, Vec<ConfigError>) {
    let explicit = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(telemetry::env::CONFIG)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    match Config::load(explicit.as_deref()) {
        Ok(c) => return (c, Vec::new()),
        Err(e) if explicit.is_some() => {
            let mut c = Config::defaults(&telemetry::env::root());
            c.explicit_file = explicit;
            return (c, vec![e]);
        }
        Err(_) => {}
    }
    let root = telemetry::env::root();
    let mut c = Config::defaults(&root);
    let mut problems = Vec::new();
    for f in [
        config::under(&root, config::VENDOR_CONFIG),
        config::under(&root, config::ADMIN_CONFIG),
    ] {
        if f.exists() {
            if let Err(e) = c.apply_file(&f) {
                problems.push(e);
            }
        }
    }
    (c, problems)
}
