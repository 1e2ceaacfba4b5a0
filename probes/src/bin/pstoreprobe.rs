//! pstoreprobe: reports kernel oopses saved by pstore (EFI variables or ramoops) across a crash
//! (the original probe's rules, docs/probes.md). Dumps already handled are listed in `<cache_dir>/pstore/processed`, so they
//! are reported once; `pstoreclean` deletes them.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use probes::args::PstoreprobeArgs as Args;
use probes::pstore::{self, Processed};
use probes::send::{load_config, Sender};
use probes::{cli, oops};

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("pstoreprobe", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    let mut sender = Sender::new(config, args.dry_run);
    if let Some(path) = &args.file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        for o in oops::scan_text(pstore::strip_header(&text)) {
            sender.submit_oops(&o)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    scan_dir(&mut sender, &args.dir)?;
    Ok(ExitCode::SUCCESS)
}

fn scan_dir(sender: &mut Sender, dir: &Path) -> anyhow::Result<()> {
    let list = pstore::processed_path(sender.config());
    let mut done = Processed::load(&list).with_context(|| format!("reading {}", list.display()))?;
    // Forget dumps that pstoreclean has deleted since, so the list does not grow forever.
    let present = pstore::dump_ids(dir)
        .with_context(|| format!("reading the pstore directory {}", dir.display()))?;
    done.retain(|id| present.contains(id));
    let found = pstore::scan_dir(dir, &done)
        .with_context(|| format!("reading the pstore directory {}", dir.display()))?;
    let ids: HashMap<String, pstore::FileId> = found
        .iter()
        .map(|f| (f.id.name.clone(), f.id.clone()))
        .collect();
    let mut parts = Vec::new();
    for f in &found {
        match pstore::read_part(f) {
            Ok(p) => parts.push(p),
            Err(e) => tracing::warn!("{}: {e}; skipped", f.path.display()),
        }
    }
    // Reported, skipped while opted out and incomplete dumps alike are marked handled: none of
    // them will become reportable later.
    let report = sender.dry_run() || sender.opted_in();
    let mut skipped = 0;
    let mut failure = None;
    for dump in pstore::assemble(parts) {
        match &dump.text {
            None => tracing::warn!(
                "incomplete pstore dump ({}): a part is missing or empty; not reported",
                dump.files.join(", ")
            ),
            Some(_) if !report => skipped += 1,
            Some(text) => {
                let sent = oops::scan_text(text)
                    .iter()
                    .try_for_each(|o| sender.submit_oops(o).map(drop));
                if let Err(e) = sent {
                    // Kept for the next run (a dump's earlier oopses may then be sent again).
                    failure = Some(e);
                    break;
                }
            }
        }
        for f in &dump.files {
            if let Some(id) = ids.get(f) {
                done.insert(id.clone());
            }
        }
    }
    if !sender.dry_run() {
        done.save(&list)
            .with_context(|| format!("writing {}", list.display()))?;
    }
    if !report {
        sender.tell_not_opted_in();
        if skipped > 0 {
            eprintln!("pstoreprobe: {skipped} dump(s) of the opt-out period will not be reported.");
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
