//! Command-line options. The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::Parser;

/// Create a telemetry record and send it to telemprobd.
///
/// The payload comes from --payload-file, else --payload, else standard input. It must be UTF-8
/// text of at most 8192 bytes. Exit status: 0 when the record was created (and, unless
/// --no-post, stored by telemprobd), 1 otherwise. With --config-file, the file's path travels
/// with the record to telemprobd.
///
/// Example: telem-record-gen -c org.example/backup/failed -s 3 -p "disk full on /srv"
#[derive(Debug, PartialEq, Eq, Parser)]
#[command(
    name = "telem-record-gen",
    version = telemetry::VERSION_TEXT,
    disable_version_flag = true
)]
pub struct Cli {
    /// Classification: three parts separated by '/', e.g. org.example/probe/event (required)
    #[arg(short = 'c', long = "class", value_name = "CLASS")]
    pub class: Option<String>,

    /// Severity from 1 (lowest) to 4 (highest)
    #[arg(short = 's', long = "severity", value_name = "N", default_value = "1")]
    pub severity: String,

    /// Payload text
    #[arg(short = 'p', long = "payload", value_name = "TEXT")]
    pub payload: Option<String>,

    /// Read the payload from FILE (takes precedence over --payload)
    #[arg(short = 'P', long = "payload-file", value_name = "FILE")]
    pub payload_file: Option<PathBuf>,

    /// Payload format version
    #[arg(
        short = 'R',
        long = "record-version",
        value_name = "N",
        default_value = "1"
    )]
    pub record_version: String,

    /// Event id: 32 lowercase hexadecimal digits [default: random]
    #[arg(short = 'e', long = "event-id", value_name = "ID")]
    pub event_id: Option<String>,

    /// Print the record (15 header lines and the payload) to standard output
    #[arg(short = 'o', long = "echo")]
    pub echo: bool,

    /// Do not send the record (with --echo: only print it)
    #[arg(short = 'n', long = "no-post")]
    pub no_post: bool,

    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files)
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    /// Print version
    #[arg(short = 'V', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}
