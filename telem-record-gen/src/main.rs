//! telem-record-gen: create a telemetry record from a shell script and send it to telemprobd.
//!
//! Start-up is most of this program's run time, so it enters through a plain C `main`
//! (`startup`) instead of std's runtime set-up, and reads its usual arguments without building
//! clap's parser (`quick_args`); docs/benchmarks.md has the measurements.

#![cfg_attr(not(test), no_main)]
// The unit tests build without the C `main`, which is what uses the rest.
#![cfg_attr(test, allow(dead_code))]

mod checks;
mod cli;
mod quick_args;
mod run;
mod startup;

use std::ffi::OsString;

use clap::Parser;

/// Exit status of a panic, as std's own runtime reports one.
const PANIC_STATUS: i32 = 101;

/// The program proper, given its arguments (the program name first); returns the exit status.
fn run_main(args: Vec<OsString>) -> i32 {
    let cli = match quick_args::parse(&args) {
        Some(c) => c,
        // Help, version, usage errors and every less common spelling: clap's parser.
        None => match cli::Cli::try_parse_from(&args) {
            Ok(c) => c,
            Err(e) => {
                // Help and version go to stdout with status 0; every usage error is status 1,
                // as the original (clap's own default would be 2).
                let code = if e.use_stderr() { 1 } else { 0 };
                let _ = e.print();
                return code;
            }
        },
    };
    match run::run(cli) {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("telem-record-gen: {msg:#}");
            1
        }
    }
}

/// The process entry point (see `startup` for what std's runtime would have done here).
#[cfg(not(test))]
#[allow(unsafe_code)] // an exported symbol: the C start-up code calls it
#[no_mangle]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    startup::prepare();
    // SAFETY: the C start-up code passes main argc valid NUL-terminated strings in argv.
    let args = unsafe { startup::args(argc, argv) };
    let status = std::panic::catch_unwind(|| run_main(args)).unwrap_or(PANIC_STATUS);
    startup::finish();
    status
}
