//! pstoreclean: deletes pstore dumps that pstoreprobe has handled, freeing the (small) EFI
//! variable store or ramoops area for the next crash. Only regular files directly in the
//! directory are touched; symlinks are never followed. The list of handled dumps is only read
//! here (pstoreprobe forgets deleted dumps on its next run), so this needs no writable state.

use std::fs;
use std::process::ExitCode;

use anyhow::Context as _;
use probes::args::PstorecleanArgs as Args;
use probes::cli;
use probes::pstore::{self, FileId, Processed};
use probes::send::load_config;

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("pstoreclean", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    let list = pstore::processed_path(&config);
    let done = Processed::load(&list).with_context(|| format!("reading {}", list.display()))?;
    let entries =
        fs::read_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    let mut failed = false;
    for entry in entries {
        let path = entry?.path();
        // lstat: a symlink or directory is never a dump and never followed.
        let Some(id) = FileId::of(&path)? else {
            continue;
        };
        if !(args.all || done.contains(&id)) {
            continue;
        }
        if args.dry_run {
            println!("would remove {}", path.display());
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => tracing::debug!("removed {}", path.display()),
            Err(e) => {
                eprintln!("pstoreclean: cannot remove {}: {e}", path.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
