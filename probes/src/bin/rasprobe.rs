//! rasprobe: reports machine checks (`mce/mce_record`), memory controller errors
//! (`ras/mc_event`) and PCIe AER errors (`ras/aer_event`) from the kernel's RAS tracepoints,
//! read through a tracing instance of its own (its `trace_pipe` text field by field, or the
//! binary `trace_pipe_raw` pages on kernels before 6.8), plus CPU thermal throttling.
//! `--replay` reads a recorded `trace_pipe` instead. See docs/probes.md.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use probes::args::RasprobeArgs as Args;
use probes::cli;
use probes::ras::raw::{self, PageLayout};
use probes::ras::storm::{Limits, Outgoing, Storm};
use probes::ras::text::{parse_line, Line};
use probes::ras::{self, format::Format, thermal, tracefs, RasError};
use probes::send::{load_config, Sender};

/// Undecodable lines logged one by one before only counting them.
const LOGGED_BAD_LINES: u64 = 10;

fn main() -> ExitCode {
    let args: Args = cli::parse();
    cli::init_logging();
    cli::finish("rasprobe", run(args))
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.config_file.as_deref())?;
    // The command line wins over the configuration (ras_storm_window, ras_uncorrected_limit).
    let limits = Limits {
        window_ns: args
            .storm_window
            .unwrap_or(config.ras_storm_window)
            .saturating_mul(1_000_000_000),
        uncorrected_limit: args
            .uncorrected_limit
            .unwrap_or(config.ras_uncorrected_limit),
    };
    let mut sender = Sender::new(config, args.dry_run);
    match &args.replay {
        Some(file) => replay(&mut sender, &args, limits, file),
        None => live(&mut sender, &args, limits),
    }
}

/// Decodes lines and feeds what they report to flood control; counts what it cannot decode.
struct Decoder {
    formats: Vec<Format>,
    storm: Storm,
    bad: u64,
    lost: u64,
}

impl Decoder {
    fn line(&mut self, line: &str, place: impl FnOnce() -> String) -> Vec<Outgoing> {
        match parse_line(line, &self.formats) {
            Ok(Line::Event(e)) => match ras::report(&e) {
                Some(r) => self.storm.push(r, e.timestamp_ns),
                None => Vec::new(),
            },
            Ok(Line::Lost { cpu, count }) => {
                self.lost = self.lost.saturating_add(count);
                tracing::warn!("{count} events lost on CPU {cpu} (ring buffer full)");
                Vec::new()
            }
            Ok(Line::Other) => Vec::new(),
            Err(e) => {
                self.undecodable(|| format!("{}: cannot decode: {e}", place()));
                Vec::new()
            }
        }
    }

    /// One binary page of `cpu`'s ring buffer.
    fn page(&mut self, cpu: u32, page: &[u8], layout: &PageLayout) -> Vec<Outgoing> {
        let decoded = match raw::decode_page(page, layout, &self.formats, cpu) {
            Ok(d) => d,
            Err(e) => {
                self.undecodable(|| format!("CPU {cpu}: cannot decode a page: {e}"));
                return Vec::new();
            }
        };
        if decoded.missed {
            self.lost = self.lost.saturating_add(1);
            tracing::warn!("events lost on CPU {cpu} (ring buffer full)");
        }
        for e in &decoded.errors {
            self.undecodable(|| format!("CPU {cpu}: cannot decode: {e}"));
        }
        let mut out = Vec::new();
        for e in &decoded.events {
            if let Some(r) = ras::report(e) {
                out.extend(self.storm.push(r, e.timestamp_ns));
            }
        }
        out
    }

    fn undecodable(&mut self, what: impl FnOnce() -> String) {
        self.bad += 1;
        if self.bad <= LOGGED_BAD_LINES {
            tracing::warn!("{}", what());
        }
    }
}

/// Where live events come from.
enum Source {
    /// `trace_pipe` text, field by field.
    Text(tracefs::Pipe),
    /// Every CPU's `trace_pipe_raw`, pages laid out as `events/header_page` says.
    Raw(tracefs::RawPipes, PageLayout),
    /// No tracepoints: thermal counters only.
    None,
}

/// `--replay FILE`: every event of a recording, windows measured in the events' timestamps.
/// A failed send stops the replay (exit 1), as klogscanner `--file` does.
fn replay(
    sender: &mut Sender,
    args: &Args,
    limits: Limits,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let events_dir = match &args.format_dir {
        Some(d) => d.clone(),
        None => tracefs::find(args.tracefs.as_deref())
            .map(|t| t.join("events"))
            .context("no --format-dir given and no tracefs to take the format files from")?,
    };
    let formats = ras::load_formats(&events_dir)?;
    if formats.is_empty() {
        bail!(
            "{}: none of mce/mce_record, ras/mc_event, ras/aer_event has a format file there",
            events_dir.display()
        );
    }
    let input = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut decoder = Decoder {
        formats,
        storm: Storm::new(limits),
        bad: 0,
        lost: 0,
    };
    for (n, line) in BufReader::new(input).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        let text = String::from_utf8_lossy(&line);
        for out in decoder.line(&text, || format!("{}:{}", file.display(), n + 1)) {
            submit(sender, &out)?;
        }
    }
    for out in decoder.storm.flush() {
        submit(sender, &out)?;
    }
    if decoder.bad > 0 {
        eprintln!("rasprobe: {} lines could not be decoded", decoder.bad);
    }
    Ok(ExitCode::SUCCESS)
}

fn submit(sender: &mut Sender, out: &Outgoing) -> anyhow::Result<()> {
    sender
        .submit(out.severity, out.classification, &out.payload)
        .with_context(|| format!("{} on {} not reported", out.classification, out.source))?;
    Ok(())
}

/// The live probe: runs until SIGTERM or SIGINT, then disables its events and removes its
/// tracing instance.
fn live(sender: &mut Sender, args: &Args, limits: Limits) -> anyhow::Result<ExitCode> {
    if !sender.dry_run() && !sender.opted_in() {
        sender.tell_not_opted_in();
        eprintln!("rasprobe: not started.");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(root) = tracefs::find(args.tracefs.as_deref()) else {
        let place = args
            .tracefs
            .clone()
            .unwrap_or_else(|| PathBuf::from(tracefs::DEFAULT_TRACEFS));
        eprintln!(
            "rasprobe: no tracefs at {} (nor in /proc/mounts): no RAS events to read. Nothing to do.",
            place.display()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let formats = ras::load_formats(&root.join("events"))?;
    let mut counters = thermal::read(&args.cpu_dir);
    if formats.is_empty() && counters.is_empty() {
        eprintln!(
            "rasprobe: this kernel has none of the tracepoints mce/mce_record, ras/mc_event, \
             ras/aer_event, and no CPU thermal counters: nothing to report. Nothing to do."
        );
        return Ok(ExitCode::SUCCESS);
    }
    let stop = stop_on_signals()?;
    let events: Vec<(&str, &str)> = ras::EVENTS
        .into_iter()
        .filter(|(_, e)| formats.iter().any(|f| f.name == *e))
        .collect();
    let instance = if events.is_empty() {
        None
    } else {
        Some(tracefs::Instance::create(&root, &events).context("setting up the tracing instance")?)
    };
    // Declared after the instance so it is closed first: the kernel refuses to remove an
    // instance whose pipes are open.
    let mut source = match &instance {
        None => Source::None,
        Some(i) if i.has_fields() && !args.raw => Source::Text(i.pipe()?),
        Some(i) => {
            let path = root.join("events/header_page");
            let text = tracefs::read_file(&path)?;
            let layout = raw::PageLayout::parse(&text)
                .map_err(|e| RasError::HeaderPage { path, source: e })?;
            Source::Raw(i.raw_pipes(layout.page_size)?, layout)
        }
    };
    let names: Vec<String> = events.iter().map(|(s, e)| format!("{s}/{e}")).collect();
    tracing::info!(
        "reading {} in {} ({}); thermal counters of {} sources",
        names.join(", "),
        instance
            .as_ref()
            .map_or_else(|| "no instance".into(), |i| i.dir().display().to_string()),
        match source {
            Source::Text(_) => "trace_pipe, field by field",
            Source::Raw(..) => "trace_pipe_raw pages",
            Source::None => "nothing",
        },
        counters.len()
    );
    let mut decoder = Decoder {
        formats,
        storm: Storm::new(limits),
        bad: 0,
        lost: 0,
    };
    let mut next_thermal = monotonic_ns().saturating_add(limits.window_ns);
    while !stop.load(Ordering::SeqCst) {
        let mut out = Vec::new();
        match &mut source {
            Source::Text(p) => {
                for line in p.read_lines(Duration::from_secs(1))? {
                    out.extend(decoder.line(&line, || "trace_pipe".to_string()));
                }
            }
            Source::Raw(p, layout) => {
                for (cpu, page) in p.read_pages(Duration::from_secs(1))? {
                    out.extend(decoder.page(cpu, &page, layout));
                }
            }
            Source::None => std::thread::sleep(Duration::from_secs(1)),
        }
        let now = monotonic_ns();
        if now >= next_thermal {
            let new = thermal::read(&args.cpu_dir);
            for r in thermal::changes(&counters, &new) {
                out.extend(decoder.storm.push(r, now));
            }
            counters = new;
            next_thermal = now.saturating_add(limits.window_ns);
        }
        out.extend(decoder.storm.tick(now));
        for o in &out {
            report_live(sender, o);
        }
    }
    for o in decoder.storm.flush() {
        report_live(sender, &o);
    }
    drop(source);
    if let Some(i) = instance {
        i.remove().context("removing the tracing instance")?;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Live, a failed send is logged and reading goes on: the next record may well get through.
fn report_live(sender: &mut Sender, out: &Outgoing) {
    if let Err(e) = sender.submit(out.severity, out.classification, &out.payload) {
        tracing::error!("{} on {} not reported: {e}", out.classification, out.source);
    }
}

/// SIGTERM and SIGINT set the returned flag (blocked here, taken by a thread with sigwait), so
/// the main loop can close the pipe and remove the instance before exiting.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM and SIGINT")?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = set.wait() {
            tracing::info!("{sig} received; stopping");
            f.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the instance's events (`trace_clock` mono).
fn monotonic_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}
