//! The command lines of the probe binaries, one `Parser` struct per probe. They live in the
//! library (not in `src/bin/`) so that `telem-docgen` can render man pages and shell
//! completions from the same definitions the binaries parse with. The doc comments are the
//! `--help` text.

use std::path::PathBuf;

use clap::Parser;

use crate::{coredumpd, crash, pstore};

/// `-f/--config-file`, the same in every probe.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files).
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,
}

/// Report a crashed process from its core dump (read from stdin unless -c is given).
#[derive(Debug, Parser)]
#[command(name = "crashprobe", version = telemetry::VERSION_TEXT)]
pub struct CrashprobeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Read the core from this file instead of stdin.
    #[arg(short = 'c', long = "core-file", value_name = "PATH")]
    pub core_file: Option<PathBuf>,
    /// Name of the crashed process (%e). Required.
    #[arg(short = 'p', long = "process-name", value_name = "NAME")]
    pub process_name: Option<String>,
    /// Path of the crashed executable, with '!' for '/' (%E).
    #[arg(short = 'E', long = "process-path", value_name = "PATH")]
    pub process_path: Option<String>,
    /// Signal that killed the process (%s).
    #[arg(
        short = 's',
        long = "signal",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub signal: Option<i32>,
    /// Print the payload to stdout.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the record (headers and payload) instead of sending it.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Seconds in which further crashes of the same executable are only counted (0: off).
    #[arg(long, value_name = "SECS", default_value_t = crash::DEFAULT_FLOOD_WINDOW)]
    pub flood_window: u64,
    /// Root of the separate debug files (<DIR>/.build-id/xx/rest.debug).
    #[arg(long, value_name = "DIR", env = "TELEM_CRASH_DEBUG_DIR", default_value = coredump::DEFAULT_DEBUG_ROOT)]
    pub debug_dir: PathBuf,
    /// When frames lack symbols, wait this long and symbolize again once (the original waited
    /// 10 s for debug info being installed; 0: no retry).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub retry_delay: u64,
    /// Report the crashes systemd-coredump recorded in the journal since the last run,
    /// instead of one core from the kernel (for systems where systemd-coredump owns
    /// core_pattern).
    #[arg(long, conflicts_with_all = ["core_file", "process_name", "process_path", "signal"])]
    pub journal: bool,
    /// With --journal: keep running, looking for new crashes every --interval seconds.
    #[arg(long, requires = "journal")]
    pub follow: bool,
    /// Seconds between passes with --follow.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub interval: f64,
    /// With --journal: the journalctl program to run.
    #[arg(long, value_name = "PATH", default_value = "journalctl")]
    pub journalctl: PathBuf,
    /// With --journal: read `journalctl -o json` lines from FILE instead of running journalctl.
    #[arg(long, value_name = "FILE", requires = "journal")]
    pub input: Option<PathBuf>,
    /// With --journal: the directory core files must be in.
    #[arg(long, value_name = "DIR", default_value = coredumpd::COREDUMP_DIR)]
    pub coredump_dir: PathBuf,
}

/// Send a hello (or heartbeat) record to telemetry.
#[derive(Debug, Parser)]
#[command(name = "hprobe", version = telemetry::VERSION_TEXT)]
pub struct HprobeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Create a "heartbeat" record instead.
    #[arg(short = 'H', long)]
    pub heartbeat: bool,
    /// Add the locale (LC_ALL) to the payload.
    #[arg(short = 'l', long)]
    pub locale: bool,
    /// Add the uptime in seconds to the payload.
    #[arg(short = 'u', long)]
    pub uptime: bool,
    /// Add the list of installed bundles to the payload.
    #[arg(short = 'b', long)]
    pub bundles: bool,
    /// Where the bundle list is read from [default: /usr/share/clear/bundles below TELEM_ROOT].
    #[arg(long, value_name = "DIR")]
    pub bundles_dir: Option<PathBuf>,
    /// Print the record (headers and payload) instead of sending it.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Report failed services of the current boot from the systemd journal to telemetry.
#[derive(Debug, Parser)]
#[command(name = "journalprobe", version = telemetry::VERSION_TEXT)]
pub struct JournalprobeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Start at the end of the journal on the first run (no stored cursor), then keep
    /// following it (implies --follow).
    #[arg(short = 't', long)]
    pub tail: bool,
    /// Keep running: look for new entries every --interval seconds.
    #[arg(long)]
    pub follow: bool,
    /// Seconds between passes with --follow or --tail.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub interval: f64,
    /// Print the records that would be sent instead of sending them (the cursor is not moved).
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// The journalctl program to run.
    #[arg(long, value_name = "PATH", default_value = "journalctl")]
    pub journalctl: PathBuf,
    /// Read `journalctl -o json` lines from FILE instead of running journalctl.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// Report kernel oopses from the kernel log to telemetry.
#[derive(Debug, Parser)]
#[command(name = "klogscanner", version = telemetry::VERSION_TEXT)]
pub struct KlogscannerArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the records that would be sent (headers and payload) instead of sending them.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Scan a saved kernel log (dmesg or console text) instead of /dev/kmsg, then exit.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Read /dev/kmsg-format records from PATH instead of /dev/kmsg (stops at its end).
    #[arg(long, value_name = "PATH")]
    pub kmsg: Option<PathBuf>,
}

/// Report kernel crash dumps saved by pstore to telemetry.
#[derive(Debug, Parser)]
#[command(name = "pstoreprobe", version = telemetry::VERSION_TEXT)]
pub struct PstoreprobeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the records that would be sent instead of sending them (remembers nothing).
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// The pstore directory.
    #[arg(long, value_name = "PATH", default_value = pstore::PSTORE_DIR)]
    pub dir: PathBuf,
    /// Scan one saved dump file instead of the pstore directory.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// Delete pstore dumps that pstoreprobe has already handled.
#[derive(Debug, Parser)]
#[command(name = "pstoreclean", version = telemetry::VERSION_TEXT)]
pub struct PstorecleanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The pstore directory.
    #[arg(long, value_name = "PATH", default_value = pstore::PSTORE_DIR)]
    pub dir: PathBuf,
    /// Delete every regular file in the directory, handled or not.
    #[arg(long)]
    pub all: bool,
    /// Print what would be deleted, delete nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Report machine checks, memory (EDAC) and PCIe AER errors and CPU thermal throttling to telemetry.
#[derive(Debug, Parser)]
#[command(name = "rasprobe", version = telemetry::VERSION_TEXT)]
pub struct RasprobeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the records that would be sent (headers and payload) instead of sending them.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Read recorded events (the text of a tracing instance's trace_pipe with options/fields
    /// set) from FILE instead of tracefs, then exit.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Directory with the events' format files (<system>/<event>/format) for --replay
    /// [default: the events directory of the running kernel's tracefs].
    #[arg(long, value_name = "DIR")]
    pub format_dir: Option<PathBuf>,
    /// The tracefs mount [default: /sys/kernel/tracing, else a tracefs mount in /proc/mounts].
    #[arg(long, value_name = "DIR")]
    pub tracefs: Option<PathBuf>,
    /// Seconds in which errors of one kind on one source (bank, DIMM, device) become one record
    /// [default: the config's ras_storm_window, 60].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub storm_window: Option<u64>,
    /// Uncorrected-error records sent at once per source and window; more are counted
    /// [default: the config's ras_uncorrected_limit, 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub uncorrected_limit: Option<u32>,
    /// Read the binary per-CPU trace_pipe_raw pages even where the kernel can print events
    /// field by field (kernels before 6.8 always use them).
    #[arg(long, conflicts_with = "replay")]
    pub raw: bool,
    /// Where the CPUs' thermal_throttle counters are (cpu<N>/thermal_throttle/).
    #[arg(long, value_name = "DIR", default_value = crate::ras::thermal::CPU_DIR)]
    pub cpu_dir: PathBuf,
}
