//! hprobe: sends a "hello" record (or a heartbeat with `-H`), optionally with the locale, the
//! uptime and the installed bundles (spec §11.1).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use probes::cli;
use probes::hello;
use probes::send::{load_config, Outcome, Sender};

/// Send a hello (or heartbeat) record to telemetry.
#[derive(Debug, Parser)]
#[command(name = "hprobe", version)]
struct Args {
    /// Configuration file (read on top of the built-in defaults).
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    config_file: Option<PathBuf>,
    /// Create a "heartbeat" record instead.
    #[arg(short = 'H', long)]
    heartbeat: bool,
    /// Add the locale (LC_ALL) to the payload.
    #[arg(short = 'l', long)]
    locale: bool,
    /// Add the uptime in seconds to the payload.
    #[arg(short = 'u', long)]
    uptime: bool,
    /// Add the list of installed bundles to the payload.
    #[arg(short = 'b', long)]
    bundles: bool,
    /// Where the bundle list is read from [default: /usr/share/clear/bundles below TELEM_ROOT].
    #[arg(long, value_name = "DIR")]
    bundles_dir: Option<PathBuf>,
    /// Print the record (headers and payload) instead of sending it.
    #[arg(short = 'n', long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("hprobe", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config_file.as_deref())?;
    let locale = args
        .locale
        .then(|| hello::locale_from_env(|k| std::env::var(k).ok()));
    let uptime = if args.uptime {
        Some(hello::uptime_secs().context("reading the uptime")?)
    } else {
        None
    };
    let bundles = if args.bundles {
        let dir = args
            .bundles_dir
            .clone()
            .unwrap_or_else(|| telemetry::config::under(&config.root, hello::BUNDLES_DIR));
        Some(
            hello::bundle_names(&dir)
                .with_context(|| format!("listing bundles in {}", dir.display()))?,
        )
    } else {
        None
    };
    let payload = hello::payload(locale.as_deref(), uptime, bundles.as_deref());
    let class = if args.heartbeat {
        hello::HEARTBEAT
    } else {
        hello::HELLO
    };
    let mut sender = Sender::new(config, args.dry_run);
    // hprobe's one job is this record: not sending it is a failure (exit 1), as in the original.
    match sender
        .submit(1, class, &payload)
        .context("Failed to send record to daemon")?
    {
        Outcome::Sent => {
            println!("Successfully sent record to daemon.");
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Printed => Ok(ExitCode::SUCCESS),
        Outcome::NotOptedIn => Ok(ExitCode::FAILURE),
    }
}
