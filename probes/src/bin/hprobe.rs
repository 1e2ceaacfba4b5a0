//! hprobe: sends a "hello" record (or a heartbeat with `-H`), optionally with the locale, the
//! uptime and the installed bundles (the original probe's rules, docs/probes.md).

use std::process::ExitCode;

use anyhow::Context as _;
use probes::args::HprobeArgs as Args;
use probes::cli;
use probes::hello;
use probes::send::{load_config, Outcome, Sender};

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("hprobe", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
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
