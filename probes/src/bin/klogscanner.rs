//! klogscanner: reports kernel oopses (warnings, BUGs, panics …) from the kernel log.
//!
//! Reads `/dev/kmsg` and keeps running, or scans a saved log with `--file` and exits. See
//! docs/probes.md for the resume file and the differences from the original.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use probes::args::KlogscannerArgs as Args;
use probes::kmsg::{self, Resume};
use probes::oops::{Oops, OopsParser};
use probes::send::{load_config, Sender};
use probes::{cli, state};

/// EPIPE from a `/dev/kmsg` read: records were overwritten before we read them.
const EPIPE: i32 = 32;

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("klogscanner", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    let mut sender = Sender::new(config, args.dry_run);
    if let Some(path) = &args.file {
        scan_file(&mut sender, path)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.kmsg.is_none() {
        if let Some(why) = kmsg::container_reason() {
            eprintln!(
                "klogscanner: running in a container ({why}); the kernel log belongs to the host. \
                 Nothing to do."
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let path = args.kmsg.unwrap_or_else(|| PathBuf::from(kmsg::DEV_KMSG));
    follow(&mut sender, &path)?;
    Ok(ExitCode::SUCCESS)
}

/// `--file`: every oops in a saved log, including one still open at its end. A failed send
/// stops the scan (the next oops would fail the same way). Read line by line, each line cut at
/// [`MAX_LINE`]: memory stays bounded whatever the file is (a huge log, `/dev/zero`).
fn scan_file(sender: &mut Sender, path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut parser = OopsParser::new();
    let mut buf = Vec::new();
    while read_line_bounded(&mut reader, &mut buf)
        .with_context(|| format!("reading {}", path.display()))?
    {
        let text = String::from_utf8_lossy(&buf);
        // As `str::lines`: a line ends at "\n" or "\r\n".
        let line = text.strip_suffix('\r').unwrap_or(&text);
        if let Some(oops) = parser.push_line(line) {
            sender.submit_oops(&oops)?;
        }
    }
    if let Some(oops) = parser.finish() {
        sender.submit_oops(&oops)?;
    }
    Ok(())
}

/// Longest line kept; the rest of a longer line is skipped. A kernel log line is at most a
/// few KiB (a /dev/kmsg record with its dictionary), and a payload at most 8 KiB.
const MAX_LINE: usize = 16 * 1024;

/// Reads the next line into `buf` (without its "\n"), keeping at most [`MAX_LINE`] bytes of
/// it and skipping the rest. False at the end of the input with nothing read; a last line
/// without "\n" counts.
fn read_line_bounded(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any);
        }
        any = true;
        let (part, used, end) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        reader.consume(used);
        if end {
            return Ok(true);
        }
    }
}

/// Reads kernel log records until the end of the input (never, for `/dev/kmsg`), skipping what
/// an earlier run of this boot already handled, and reports each oops.
fn follow(sender: &mut Sender, path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // A /dev/kmsg read must hold a whole record; records are at most a few KiB.
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut tracker = Tracker {
        state_file: sender.config().state_dir.join(kmsg::SEQ_FILE),
        boot_id: kmsg::current_boot_id(),
        dry_run: sender.dry_run(),
        warned: false,
    };
    let resume = tracker.load();
    let mut parser = OopsParser::new();
    let mut oops_start = 0u64;
    let mut last_seq = None;
    let mut buf = Vec::new();
    loop {
        match read_line_bounded(&mut reader, &mut buf) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) if e.raw_os_error() == Some(EPIPE) => {
                tracing::warn!("kernel log records were overwritten before they were read");
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let text = String::from_utf8_lossy(&buf);
        let Some(rec) = kmsg::parse_record(&text) else {
            continue;
        };
        if resume
            .as_ref()
            .is_some_and(|r| r.skips(&tracker.boot_id, rec.seq))
        {
            continue;
        }
        last_seq = Some(rec.seq);
        // Only the kernel's own messages; user space may write to /dev/kmsg too.
        if rec.facility != 0 {
            continue;
        }
        let was_open = parser.in_progress();
        let finished = parser.push_normalised(rec.message);
        if parser.in_progress() && (!was_open || finished.is_some()) {
            oops_start = rec.seq;
        }
        if let Some(oops) = finished {
            report(sender, &oops);
            // Resume at the oops now being collected, or after this record.
            let next = if parser.in_progress() {
                oops_start
            } else {
                rec.seq + 1
            };
            tracker.save(next);
        }
    }
    // End of a saved record file: the open oops is complete as far as we will ever know.
    if let Some(oops) = parser.finish() {
        report(sender, &oops);
    }
    if let Some(seq) = last_seq {
        tracker.save(seq + 1);
    }
    Ok(())
}

/// A failed send is logged and scanning goes on: klogscanner is long-running, and the next
/// oops may well be delivered.
fn report(sender: &mut Sender, oops: &Oops) {
    if let Err(e) = sender.submit_oops(oops) {
        tracing::error!("oops not reported ({}): {e}", oops.reason());
    }
}

/// The resume file `<state_dir>/klogscanner.seq`.
struct Tracker {
    state_file: PathBuf,
    boot_id: String,
    dry_run: bool,
    warned: bool,
}

impl Tracker {
    fn load(&self) -> Option<Resume> {
        match state::read(&self.state_file) {
            Ok(text) => text.as_deref().and_then(Resume::parse),
            Err(e) => {
                tracing::warn!("{}: {e}; reading from the start", self.state_file.display());
                None
            }
        }
    }

    fn save(&mut self, next_seq: u64) {
        if self.dry_run {
            return;
        }
        let r = Resume {
            boot_id: self.boot_id.clone(),
            next_seq,
        };
        if let Err(e) = state::write(&self.state_file, &r.render()) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "{}: {e}; a restart may report oopses again",
                    self.state_file.display()
                );
            }
        }
    }
}
