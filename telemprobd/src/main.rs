//! telemprobd: Accepts records from probes over a Unix socket and spools them durably.
//!
//! Skeleton: the implementation lands with its own issue.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("telemprobd: not implemented yet (this build has only the shared core)");
    ExitCode::FAILURE
}
