//! The commands. Each prints what it did; errors go back to main as `anyhow` errors.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use telemetry::config::{key_names, Diagnostic, Severity};
use telemetry::journal::{self, Filter};
use telemetry::{optin, spool, status, Config};

use crate::cli::JournalArgs;
use crate::escape;
use crate::purge::{self, Purged};
use crate::timefmt::{ago, utc};
use crate::units;

/// Refuses an explicit configuration file (-f) that is not an absolute path to a regular file,
/// with the original's message.
pub fn check_config_file(file: Option<&Path>) -> Result<()> {
    let Some(f) = file else {
        return Ok(());
    };
    let why = if !f.is_absolute() {
        Some("is not an absolute path")
    } else if !f.exists() {
        Some("does not exist")
    } else if !f.is_file() {
        Some("is not a regular file")
    } else {
        None
    };
    if let Some(why) = why {
        bail!("Configuration file path not valid: {} {why}", f.display());
    }
    Ok(())
}

/// Refuses unless we are root, or TELEM_ROOT names a tree owned by the caller (then nothing of
/// the real system is touched, so no privilege is needed).
pub fn require_root(what: &str) -> Result<()> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        return Ok(());
    }
    if let Some(root) = std::env::var_os(telemetry::env::ROOT).filter(|r| !r.is_empty()) {
        if fs::metadata(&root).is_ok_and(|m| m.uid() == euid.as_raw()) {
            return Ok(());
        }
    }
    bail!(
        "Must be root to {what}. Run it with sudo (or set TELEM_ROOT to a directory tree you own)."
    )
}

pub fn opt_in(config: &Config) -> Result<ExitCode> {
    require_root("opt in")?;
    let path = &config.opt_in_file;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path);
    match created {
        Ok(_) => println!("Opted in to telemetry: created {}.", path.display()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            println!(
                "Already opted in ({} exists). Nothing to do.",
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    if units::available() {
        println!("Starting the telemetry services:");
        return start(config);
    }
    println!(
        "systemd is not running here, so no services were started; start telemprobd and \
         telempostd yourself."
    );
    Ok(ExitCode::SUCCESS)
}

pub fn opt_out(config: &Config) -> Result<ExitCode> {
    require_root("opt out")?;
    let mut ok = true;
    match fs::remove_file(&config.opt_in_file) {
        Ok(()) => println!(
            "Opted out of telemetry: removed {}.",
            config.opt_in_file.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!(
                "Already opted out ({} does not exist).",
                config.opt_in_file.display()
            )
        }
        Err(e) => {
            return Err(e).with_context(|| format!("removing {}", config.opt_in_file.display()))
        }
    }
    if units::available() {
        ok &= stop(config)? == ExitCode::SUCCESS;
    } else {
        println!("systemd is not running here; stop telemprobd and telempostd yourself.");
    }
    // Queued and collected data goes; the journal stays, as a record of what was already sent.
    // The records are counted apart from everything else that goes (temporaries, retained
    // records, caches, the machine id), so the message does not call all of it records.
    let records = spool::scan(&config.spool_dir).map_or(0, |e| e.len());
    let mut purged = Purged::default();
    purge::contents(&config.spool_dir, &mut purged);
    purge::contents(&config.retention_dir, &mut purged);
    purge::contents(&config.cache_dir, &mut purged);
    purge::file(&config.machine_id_file, &mut purged);
    let others = purged.entries.saturating_sub(records);
    println!(
        "Deleted {records} queued record{} and {others} other collected file{} (spool \
         temporaries, retained records, caches, machine id).",
        if records == 1 { "" } else { "s" },
        if others == 1 { "" } else { "s" },
    );
    for p in &purged.problems {
        eprintln!("telemctl: could not delete {p}");
        ok = false;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn start(config: &Config) -> Result<ExitCode> {
    require_root("start the telemetry services")?;
    if !optin::is_opted_in(config) {
        bail!(
            "Opt in to telemetry first ('telemctl opt-in'); {} does not exist.",
            config.opt_in_file.display()
        );
    }
    Ok(code(units::act("start", &units::TRIGGERS)?))
}

pub fn stop(_config: &Config) -> Result<ExitCode> {
    require_root("stop the telemetry services")?;
    let a = units::act("stop", &units::TRIGGERS)?;
    let b = units::act("stop", &units::SERVICES)?;
    Ok(code(a && b))
}

pub fn restart(config: &Config) -> Result<ExitCode> {
    if stop(config)? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }
    start(config)
}

/// As the original, "inactive" is an answer (exit 0); a state systemd could not tell is not.
pub fn is_active() -> Result<ExitCode> {
    let mut known = true;
    for (daemon, unit) in [
        ("telemprobd", "telemprobd.socket"),
        ("telempostd", "telempostd.path"),
    ] {
        let state = units::is_active(unit);
        known &= !state.starts_with("unknown");
        println!("{daemon} : {state}");
    }
    Ok(code(known))
}

fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn pid_alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
        rustix::process::test_kill_process(p).is_ok() || pid_exists_other_user(pid)
    })
}

/// A process of another user answers EPERM to kill(0); /proc tells it exists.
fn pid_exists_other_user(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn status(config: &Config, diagnostics: &[Diagnostic]) -> Result<ExitCode> {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&format!(
            "config:      {}: {}\n",
            d.severity,
            escape::field(&d.to_string())
        ));
    }
    out.push_str(&format!(
        "opt-in:      {}\n",
        if optin::is_opted_in(config) {
            "opted in"
        } else {
            "not opted in"
        }
    ));
    let mut last_delivery = None;
    let mut last_error: Option<(u64, String)> = None;
    for daemon in ["telemprobd", "telempostd"] {
        let file = status::path(config, daemon);
        match status::read(&file) {
            Ok(Some(st)) => {
                let state = if pid_alive(st.pid) {
                    format!("running (pid {}, since {})", st.pid, utc(st.started))
                } else {
                    format!(
                        "not running (last pid {}, last report {})",
                        st.pid,
                        utc(st.updated)
                    )
                };
                out.push_str(&format!("{daemon}:  {state}\n"));
                // Only what happened (a zero says nothing), wrapped to fit a terminal.
                let counters: Vec<String> = st
                    .counters
                    .iter()
                    .filter(|(_, v)| **v != 0)
                    .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
                    .collect();
                for line in wrap(&counters, 80 - COUNTER_INDENT.len()) {
                    out.push_str(&format!("{COUNTER_INDENT}{line}\n"));
                }
                last_delivery = last_delivery.max(st.last_delivery);
                if let Some(e) = st.last_error {
                    // When it happened; a file from an older daemon only has its report time.
                    let at = st.last_error_at.unwrap_or(st.updated);
                    if last_error.as_ref().is_none_or(|(t, _)| at > *t) {
                        last_error = Some((at, format!("{daemon}: {e}")));
                    }
                }
            }
            Ok(None) => out.push_str(&format!("{daemon}:  not running (no status yet)\n")),
            Err(e) => out.push_str(&format!("{daemon}:  unknown ({e})\n")),
        }
    }
    match spool::scan(&config.spool_dir) {
        Ok(entries) => {
            let bytes: u64 = entries.iter().map(|e| e.size).sum();
            let oldest = entries
                .first()
                .and_then(|e| e.modified.duration_since(UNIX_EPOCH).ok())
                .map(|d| format!(", oldest {}", ago(now(), d.as_secs())))
                .unwrap_or_default();
            out.push_str(&format!(
                "spool:       {} records, {} bytes{oldest} ({})\n",
                entries.len(),
                bytes,
                config.spool_dir.display()
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => out.push_str(&format!(
            "spool:       empty ({} does not exist)\n",
            config.spool_dir.display()
        )),
        Err(e) => out.push_str(&format!("spool:       unreadable: {e}\n")),
    }
    out.push_str(&format!(
        "last delivery: {}\n",
        last_delivery.map_or("never".to_string(), |t| format!(
            "{} ({})",
            utc(t),
            ago(now(), t)
        ))
    ));
    // With its time, so an error from before the last delivery reads as past.
    out.push_str(&format!(
        "last error:  {}\n",
        last_error.map_or("none".to_string(), |(t, e)| format!(
            "{e} ({}, {})",
            utc(t),
            ago(now(), t)
        ))
    ));
    write_out(&out)
}

const COUNTER_INDENT: &str = "             ";

/// Joins `items` with ", " into lines of at most `width` characters (an item longer than that
/// gets a line of its own).
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for item in items {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + item.len() <= width => {
                line.push_str(", ");
                line.push_str(item);
            }
            _ => lines.push(item.clone()),
        }
    }
    lines
}

/// Prints every problem and the effective settings. Exit 1 when a file has an error (the
/// daemons refuse to start with it), or with `check` on any warning too.
pub fn config_cmd(config: &Config, diagnostics: &[Diagnostic], check: bool) -> Result<ExitCode> {
    let mut out = String::new();
    if let Some(f) = &config.explicit_file {
        out.push_str(&format!("# explicit file: {}\n", f.display()));
    }
    for d in diagnostics {
        out.push_str(&format!(
            "# {}: {}\n",
            d.severity,
            escape::field(&d.to_string())
        ));
    }
    out.push_str("[settings]\n");
    for key in key_names() {
        let value = config.value_of(key).unwrap_or_default();
        let source = config
            .sources
            .get(key)
            .map(|s| s.to_string())
            .unwrap_or_default();
        out.push_str(&format!("{key}={value}    # {source}\n"));
    }
    let code = write_out(&out)?;
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics.len() - errors;
    if errors > 0 || (check && warnings > 0) {
        eprintln!("telemctl: configuration: {errors} error(s), {warnings} warning(s)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}

/// How `journal` prints its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// `telemctl journal`: the five columns with times in UTC, then what became of the record.
    Telemctl,
    /// `telem_journal`: the original's five columns and header widths, its time format
    /// (`Thu 2023-11-14 22:13:20 UTC`, always in UTC), no outcome.
    Original,
}

pub fn journal_cmd(config: &Config, args: &JournalArgs, columns: Columns) -> Result<ExitCode> {
    if matches!(fs::symlink_metadata(&config.journal_file), Err(e) if e.kind() == io::ErrorKind::NotFound)
    {
        eprintln!(
            "No journal yet: {} does not exist (telempostd creates it when the first record \
             leaves the spool).",
            config.journal_file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let entries = journal::read(&config.journal_file)
        .with_context(|| format!("Unable to open journal {}", config.journal_file.display()))?;
    let filter = Filter {
        record_id: args.record_id.clone(),
        event_id: args.event_id.clone(),
        classification: args.classification.clone(),
        boot_id: args.boot_id.clone(),
    };
    let mut out = String::new();
    if args.verbose {
        let titles = ["Time stamp", "Record ID", "Event ID", "Boot ID"];
        out.push_str(&match columns {
            Columns::Telemctl => format!(
                "{:<30} {:<23} {:<32} {:<32} {:<36} Outcome\n",
                "Classification", titles[0], titles[1], titles[2], titles[3]
            ),
            Columns::Original => format!(
                "{:<30} {:<27} {:<32} {:<32} {:<36}\n",
                "Classification", titles[0], titles[1], titles[2], titles[3]
            ),
        });
    }
    let mut n = 0;
    for e in journal::newest(&entries, journal::RECORD_LIMIT) {
        if !filter.matches(e) {
            continue;
        }
        n += 1;
        // Every field comes from the journal file, the detail from a collector: escaped.
        let fields = format!(
            "{:<30} {} {} {} {}",
            escape::field(&e.classification),
            match columns {
                Columns::Telemctl => utc(e.timestamp),
                Columns::Original => weekday_utc(e.timestamp),
            },
            escape::field(&e.record_id),
            escape::field(&e.event_id),
            escape::field(&e.boot_id),
        );
        out.push_str(&fields);
        if columns == Columns::Telemctl {
            let outcome = e.outcome.map_or(String::new(), |o| {
                if e.detail.is_empty() {
                    o.as_str().to_string()
                } else {
                    format!("{} ({})", o.as_str(), escape::field(&e.detail))
                }
            });
            out.push(' ');
            out.push_str(&outcome);
        }
        out.push('\n');
        if args.include_record {
            if let Ok(body) = fs::read(config.retention_dir.join(&e.record_id)) {
                out.push_str(&escape::text(&String::from_utf8_lossy(&body)));
            }
        }
    }
    if args.verbose {
        out.push_str(&format!("Total records: {n}\n"));
    }
    write_out(&out)
}

/// The original's `%a %Y-%m-%d %H:%M:%S %Z`, in UTC (there is no time-zone database here).
fn weekday_utc(secs: u64) -> String {
    // 1970-01-01 was a Thursday.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!("{} {}", DAYS[(secs / 86_400 % 7) as usize], utc(secs))
}

fn write_out(s: &str) -> Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        r => r
            .map(|()| ExitCode::SUCCESS)
            .context("writing to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::{weekday_utc, wrap};

    #[test]
    fn weekday_utc_names_the_day() {
        assert_eq!(weekday_utc(0), "Thu 1970-01-01 00:00:00 UTC");
        assert_eq!(weekday_utc(1_700_000_000), "Tue 2023-11-14 22:13:20 UTC");
        assert_eq!(weekday_utc(951_825_600), "Tue 2000-02-29 12:00:00 UTC");
    }

    #[test]
    fn wrap_fills_lines_up_to_the_width() {
        let items: Vec<String> = ["aaaa 1", "bbbb 2", "cccc 3", "a very long counter name 4"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            wrap(&items, 14),
            ["aaaa 1, bbbb 2", "cccc 3", "a very long counter name 4"]
        );
        assert_eq!(wrap(&items, 200).len(), 1);
        assert!(wrap(&[], 10).is_empty());
    }
}
