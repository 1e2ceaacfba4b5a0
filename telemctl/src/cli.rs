//! Command-line interface; doc comments are the help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Control actions for telemetry services.
///
/// Commands that change the system (opt-in, opt-out, start, stop, restart) need root, unless
/// TELEM_ROOT points at a directory tree you own (tests, the local demo).
#[derive(Debug, Parser)]
#[command(name = "telemctl", version = telemetry::VERSION_TEXT)]
pub struct Cli {
    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files)
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        global = true,
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Opt in to telemetry (creates the opt-in file) and start the services
    #[command(name = "opt-in")]
    OptIn,
    /// Opt out: stop the services, then delete queued records and other collected data
    #[command(name = "opt-out")]
    OptOut,
    /// Start the telemetry services (needs opt-in)
    Start,
    /// Stop the telemetry services
    Stop,
    /// Stop, then start the telemetry services
    Restart,
    /// Print whether telemprobd and telempostd are active
    #[command(name = "is-active")]
    IsActive,
    /// Show daemons, spool, last delivery and error, and counters
    Status,
    /// Show the effective settings and where each came from
    Config(ConfigArgs),
    /// Show the journal of records that left the spool
    Journal(JournalArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Strict check for packagers and CI: exit 1 on any warning or error in the files
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, clap::Args)]
pub struct JournalArgs {
    /// Only the entry with this record id
    #[arg(
        short = 'r',
        long = "record-id",
        visible_alias = "record_id",
        value_name = "ID"
    )]
    pub record_id: Option<String>,
    /// Only entries with this event id
    #[arg(
        short = 'e',
        long = "event-id",
        visible_alias = "event_id",
        value_name = "ID"
    )]
    pub event_id: Option<String>,
    /// Only this classification; a/b/* matches every classification starting with a/b/
    #[arg(short = 'c', long = "classification", value_name = "CLASS")]
    pub classification: Option<String>,
    /// Only entries from this boot id
    #[arg(
        short = 'b',
        long = "boot-id",
        visible_alias = "boot_id",
        value_name = "ID"
    )]
    pub boot_id: Option<String>,
    /// Also print the retained body of each record
    #[arg(short = 'i', long = "include-record", visible_alias = "include_record")]
    pub include_record: bool,
    /// Print column titles and a total
    #[arg(short = 'V', long = "verbose")]
    pub verbose: bool,
}

/// Print the newest 100 entries of the local journal of records that left the spool, one line
/// each: classification, time, record id, event id, boot id
///
/// The journal viewer of the original client, with its options and columns; telemctl journal
/// shows the same entries and what became of each.
///
/// Exit status: 0 when the journal was read (or does not exist yet), 1 when it cannot be read
/// or on a usage error.
#[derive(Debug, Parser)]
#[command(
    name = "telem_journal",
    version = telemetry::VERSION_TEXT,
    // -V is --verbose here, as in the original; the version is --version alone.
    disable_version_flag = true
)]
pub struct JournalCli {
    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files)
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    #[command(flatten)]
    pub journal: JournalArgs,

    /// Print version
    #[arg(long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}
