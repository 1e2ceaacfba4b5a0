//! telemctl: Controls telemetry: opt-in/out, services, journal, status.
//!
//! Skeleton: the implementation lands with its own issue.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("telemctl: not implemented yet (this build has only the shared core)");
    ExitCode::FAILURE
}
