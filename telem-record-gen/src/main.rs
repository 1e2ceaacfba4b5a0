//! telem-record-gen: create a telemetry record from a shell script and send it to telemprobd.

mod checks;
mod cli;
mod run;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; every usage error is status 1, as
            // the original (clap's own default would be 2).
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("telem-record-gen: {msg:#}");
            ExitCode::FAILURE
        }
    }
}
