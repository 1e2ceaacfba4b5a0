//! Prints the backtrace of a core: `bt [CORE]` (stdin when no path is given).
//! `COREDUMP_DEBUG_ROOT=` (empty) disables separate debug files.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut opts = coredump::Options::default();
    if let Some(root) = std::env::var_os("COREDUMP_DEBUG_ROOT") {
        opts.debug_root = (!root.is_empty()).then(|| PathBuf::from(root));
    }
    let result = match std::env::args_os().nth(1) {
        Some(path) => coredump::from_path(&PathBuf::from(path), &opts),
        None => coredump::from_reader(std::io::stdin().lock(), &opts),
    };
    match result {
        Ok(bt) => {
            print!("{bt}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bt: error: {e}");
            ExitCode::FAILURE
        }
    }
}
