//! telempostd: Delivers spooled records to the telemetry collector.
//!
//! Skeleton: the implementation lands with its own issue.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("telempostd: not implemented yet (this build has only the shared core)");
    ExitCode::FAILURE
}
