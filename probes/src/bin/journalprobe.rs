//! journalprobe: reports service failures of the current boot from the systemd journal
//! (the original probe's rules, docs/probes.md). A pass reads the entries after the stored cursor through `journalctl`,
//! reports them and stores the cursor of the last entry handled. Without `--tail`/`--follow`
//! one pass is made; with them, a pass every `--interval` seconds. See docs/probes.md.

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use probes::args::JournalprobeArgs as Args;
use probes::journal::{self, Boot, Entry, Position};
use probes::send::{load_config, SendError, Sender};
use probes::{cli, state};

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("journalprobe", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    let cursor_file = config.state_dir.join(journal::CURSOR_FILE);
    let mut probe = Probe {
        sender: Sender::new(config, args.dry_run),
        cursor_file,
        source: Source {
            journalctl: &args.journalctl,
            input: args.input.as_deref(),
            boot: None,
        },
        tail: args.tail,
        tail_start_done: false,
        dry_run: args.dry_run,
        cursor: None,
    };
    // Canned input does not grow: one pass is all there is.
    let follow = (args.follow || args.tail) && args.input.is_none();
    let interval = std::time::Duration::from_secs_f64(args.interval.max(0.01));
    loop {
        let result = probe.pass();
        if !follow {
            return result.map(|()| ExitCode::SUCCESS);
        }
        if let Err(e) = result {
            // Retried on the next pass: the cursor stays before what was not handled.
            eprintln!("journalprobe: error: {e:#}");
        }
        std::thread::sleep(interval);
    }
}

/// One run's state.
struct Probe<'a> {
    sender: Sender,
    cursor_file: PathBuf,
    source: Source<'a>,
    tail: bool,
    /// Whether this process has learned where the journal ended (`--tail`). When the journal
    /// had no entry then, everything found later is new: no second "learning" pass.
    tail_start_done: bool,
    dry_run: bool,
    /// The cursor of the last entry handled in this process (a dry run keeps it only here).
    cursor: Option<String>,
}

impl Probe<'_> {
    /// Reads the entries after the cursor, reports them, moves the cursor.
    fn pass(&mut self) -> anyhow::Result<()> {
        let lifted = self.sender.privacy_filters_lifted();
        let stored = journal::stored_cursor(self.cursor.as_deref(), &self.cursor_file)?;

        if self.tail && stored.is_none() && !self.tail_start_done {
            // First run with --tail: remember where the journal ends now, report nothing.
            let mut last = None;
            self.source.entries(&Position::Last, None, lifted, |e| {
                last = e.cursor.or(last.take());
                ControlFlow::Continue(())
            })?;
            if let Some(c) = &last {
                self.store(c)?;
            }
            self.cursor = last;
            self.tail_start_done = true;
            return Ok(());
        }

        let position = match &stored {
            Some(c) => Position::From(c),
            None => Position::Start,
        };
        // While opted out, entries are read (so the cursor moves past them) but not reported:
        // nothing from an opt-out period is ever sent later.
        let report = self.dry_run || self.sender.opted_in();
        let mut last_done: Option<String> = None;
        let mut skipped = 0usize;
        let mut failure: Option<SendError> = None;
        let sender = &mut self.sender;
        self.source
            .entries(&position, stored.as_deref(), lifted, |e| {
                if e.reportable(lifted) {
                    if !report {
                        skipped += 1;
                    } else if let Err(err) =
                        sender.submit(journal::SEVERITY, journal::CLASSIFICATION, &e.payload())
                    {
                        // As the original: a failed send ends this pass; the entry is retried.
                        failure = Some(err);
                        return ControlFlow::Break(());
                    }
                }
                if e.cursor.is_some() {
                    last_done = e.cursor;
                }
                ControlFlow::Continue(())
            })?;

        // Only when it moved (a pass every few seconds must not write the disk each time);
        // after a failed send it stays before the entry that was not delivered.
        if let Some(c) = &last_done {
            self.store(c)?;
        }
        self.cursor = last_done.or(stored);
        if !report {
            self.sender.tell_not_opted_in();
            if skipped > 0 {
                eprintln!(
                    "journalprobe: {skipped} journal entr{} of the opt-out period will not be \
                     reported.",
                    if skipped == 1 { "y" } else { "ies" }
                );
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Stores the cursor (not in a dry run).
    fn store(&self, cursor: &str) -> anyhow::Result<()> {
        if self.dry_run {
            return Ok(());
        }
        state::write(&self.cursor_file, &format!("{cursor}\n"))
            .with_context(|| format!("writing {}", self.cursor_file.display()))
    }
}

/// Where entries come from: `journalctl` or a file of its JSON output.
struct Source<'a> {
    journalctl: &'a Path,
    input: Option<&'a Path>,
    /// Which boot journalctl reads, found on the first run of it (a process lives in one boot).
    boot: Option<Boot>,
}

impl Source<'_> {
    /// Calls `each` for every entry after the position, in journal order, until it breaks.
    fn entries(
        &mut self,
        position: &Position<'_>,
        stored: Option<&str>,
        lifted: bool,
        mut each: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        match self.input {
            Some(file) => {
                let text = fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let all: Vec<Entry> = text.lines().filter_map(parse_line).collect();
                let entries = match position {
                    Position::Last => all.into_iter().last().into_iter().collect(),
                    _ => journal::after_cursor(all, stored),
                };
                for e in entries {
                    if each(e).is_break() {
                        break;
                    }
                }
                Ok(())
            }
            None => self.run_journalctl(position, lifted, each),
        }
    }

    fn run_journalctl(
        &mut self,
        position: &Position<'_>,
        lifted: bool,
        mut each: impl FnMut(Entry) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let boot = match &self.boot {
            Some(b) => b.clone(),
            None => {
                let b = journal::find_boot(self.journalctl)?;
                self.boot = Some(b.clone());
                b
            }
        };
        let args = journal::journalctl_args(position, &boot, lifted);
        // `--cursor=` shows the cursor's own entry first when it matches: it was handled.
        let stored = match position {
            Position::From(c) => Some(*c),
            _ => None,
        };
        journal::for_each_line(self.journalctl, &args, MAX_LINE, |line| {
            match parse_line(line) {
                Some(e) if journal::is_stored(e.cursor.as_deref(), stored) => {
                    ControlFlow::Continue(())
                }
                Some(e) => each(e),
                None => ControlFlow::Continue(()),
            }
        })
    }
}

/// Longest journalctl output line read: service-failure entries are small; anything larger is
/// not one of them.
const MAX_LINE: usize = 1 << 20;

fn parse_line(line: &str) -> Option<Entry> {
    if line.trim().is_empty() {
        return None;
    }
    match journal::parse_entry(line) {
        Ok(e) => Some(e),
        Err(err) => {
            tracing::debug!("not a journal entry ({err}): {line}");
            None
        }
    }
}
