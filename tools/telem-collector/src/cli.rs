//! Command line of the `telem-collector` binary.

use std::path::PathBuf;

use clap::Parser;

/// A local test collector speaking the Clear Linux telemetrics-backend protocol.
#[derive(Debug, Parser)]
#[command(name = "telem-collector", version)]
pub struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8181")]
    pub listen: String,
    /// The only X-Telemetry-TID value accepted.
    #[arg(long, default_value = telem_collector::DEFAULT_TID)]
    pub tid: String,
    /// Append every accepted record to this file as one JSON line.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Write the bound port to this file (atomically) once listening.
    #[arg(long)]
    pub port_file: Option<PathBuf>,
}
