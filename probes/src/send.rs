//! Shared probe plumbing: the one way every probe turns text into a record and hands it on.
//!
//! - The payload is made valid first: control characters other than tab and newline become
//!   `?`, and text over [`MAX_PAYLOAD`] bytes is cut at a line boundary with a note line.
//! - `--dry-run` prints the 15 header lines and the payload to stdout and sends nothing.
//! - Opt-in is checked here, before connecting, so "not opted in" and "daemon not running" are
//!   told apart (docs/compatibility.md); the library alone reports both as a failed send.

use std::io::{self, Write};
use std::path::Path;

use telemetry::record::MAX_PAYLOAD;
use telemetry::{optin, Config, Record, SysInfo};

/// Payload format version of every record the in-tree probes send.
pub const PAYLOAD_VERSION: u32 = 1;

/// Last line of a payload that had to be shortened.
pub const TRUNCATION_NOTE: &str = "[payload truncated to fit the 8192-byte record limit]\n";

/// Why a record was not handed on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    // The inner error is in the message and not a `source`: a report that walks the chain
    // (`{:#}`) would otherwise print it, and its own cause, once more.
    /// The record could not be built (bad classification, unreadable random source …).
    #[error("cannot build the record: {0}")]
    Record(telemetry::Error),
    /// telemprobd could not be reached or refused the record.
    #[error("{0}")]
    Delivery(telemetry::Error),
    /// Writing the dry-run output failed.
    #[error("writing to stdout: {0}")]
    Stdout(#[source] io::Error),
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// telemprobd acknowledged it.
    Sent,
    /// Printed to stdout (`--dry-run`).
    Printed,
    /// Not sent: the machine is not opted in.
    NotOptedIn,
}

/// The message a person sees when nothing is sent because the opt-in file is missing.
pub fn not_opted_in_message(config: &Config) -> String {
    format!(
        "Not opted in to telemetry ({} missing); nothing sent.",
        config.opt_in_file.display()
    )
}

/// Loads the configuration (`-f` file if given), printing its warnings to stderr.
pub fn load_config(explicit: Option<&Path>) -> anyhow::Result<Config> {
    let config = Config::load(explicit).map_err(|e| {
        // The original's words for a file it could not use at all; a bad line names itself.
        if e.line.is_none() {
            anyhow::anyhow!("Configuration file path not valid: {e}")
        } else {
            anyhow::anyhow!("configuration not valid: {e}")
        }
    })?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// Builds records and delivers or prints them.
#[derive(Debug)]
pub struct Sender {
    config: Config,
    dry_run: bool,
    /// The "not opted in" message is printed once per run.
    told_not_opted_in: bool,
}

impl Sender {
    /// A sender for `config`; with `dry_run`, records are printed instead of sent.
    pub fn new(config: Config, dry_run: bool) -> Self {
        Sender {
            config,
            dry_run,
            told_not_opted_in: false,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True in `--dry-run` mode.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// True when the opt-in file exists now.
    pub fn opted_in(&self) -> bool {
        optin::is_opted_in(&self.config)
    }

    /// True when the machine owner lifted the privacy filters.
    pub fn privacy_filters_lifted(&self) -> bool {
        optin::privacy_filters_lifted(&self.config)
    }

    /// Builds a record with `payload` (made valid, see the module doc) and sends or prints it.
    /// When not opted in, prints the "not opted in" message to stderr once and sends nothing.
    pub fn submit(
        &mut self,
        severity: u32,
        classification: &str,
        payload: &str,
    ) -> Result<Outcome, SendError> {
        let mut record = Record::new(severity, classification, PAYLOAD_VERSION, SysInfo::cached())
            .map_err(SendError::Record)?;
        let text = fit_payload(&sanitize(payload));
        record
            .set_payload(text.as_bytes())
            .map_err(SendError::Record)?;
        if self.dry_run {
            print_record(&mut io::stdout().lock(), &record).map_err(SendError::Stdout)?;
            return Ok(Outcome::Printed);
        }
        if !self.opted_in() {
            self.tell_not_opted_in();
            return Ok(Outcome::NotOptedIn);
        }
        match telemetry::client::send(&record, &self.config) {
            Ok(()) => {
                tracing::debug!(classification, "record sent");
                Ok(Outcome::Sent)
            }
            // Opted out between our check and the library's.
            Err(telemetry::Error::NotOptedIn(_)) => {
                self.tell_not_opted_in();
                Ok(Outcome::NotOptedIn)
            }
            Err(e) => Err(SendError::Delivery(e)),
        }
    }

    /// Sends (or prints) one kernel oops with its pattern's classification and severity.
    pub fn submit_oops(&mut self, oops: &crate::oops::Oops) -> Result<Outcome, SendError> {
        let payload = oops.payload(self.privacy_filters_lifted());
        self.submit(oops.severity(), oops.classification(), &payload)
    }

    /// Prints the "not opted in" message to stderr (once per run).
    pub fn tell_not_opted_in(&mut self) {
        if !self.told_not_opted_in {
            self.told_not_opted_in = true;
            eprintln!("{}", not_opted_in_message(&self.config));
        }
    }
}

/// Writes a record as `--dry-run` shows it: the 15 header lines, the payload (with a final
/// newline added if it has none), then one empty line.
pub fn print_record(out: &mut impl Write, record: &Record) -> io::Result<()> {
    let mut block = Vec::new();
    record.write_header_block(&mut block);
    out.write_all(&block)?;
    out.write_all(record.payload())?;
    if !record.payload().ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// Replaces control characters other than tab and newline with `?`, so any kernel or journal
/// text passes the library's payload check (payloads are text, docs/compatibility.md).
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' && c != '\n' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// Cuts `text` to at most [`MAX_PAYLOAD`] bytes: whole lines are kept and [`TRUNCATION_NOTE`]
/// is appended. A first line that alone is too long is cut at a character boundary.
pub fn fit_payload(text: &str) -> String {
    if text.len() <= MAX_PAYLOAD {
        return text.to_string();
    }
    let room = MAX_PAYLOAD - TRUNCATION_NOTE.len();
    let mut keep = 0;
    for (i, _) in text.match_indices('\n') {
        if i + 1 > room {
            break;
        }
        keep = i + 1;
    }
    if keep == 0 {
        // Room for the newline added below.
        keep = room - 1;
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
    }
    let mut out = String::with_capacity(MAX_PAYLOAD);
    out.push_str(&text[..keep]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(TRUNCATION_NOTE);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn short_payload_is_unchanged() {
        assert_eq!(fit_payload("a\nb\n"), "a\nb\n");
        let exact = "x".repeat(MAX_PAYLOAD);
        assert_eq!(fit_payload(&exact), exact);
    }

    #[test]
    fn long_payload_is_cut_at_a_line_boundary() {
        let line = format!("{}\n", "y".repeat(99));
        let text = line.repeat(100);
        let out = fit_payload(&text);
        assert!(out.len() <= MAX_PAYLOAD);
        assert!(out.ends_with(TRUNCATION_NOTE));
        let body = &out[..out.len() - TRUNCATION_NOTE.len()];
        assert!(body.lines().all(|l| l.len() == 99));
        assert_eq!(body.len() % 100, 0);
        assert!(body.len() + 100 + TRUNCATION_NOTE.len() > MAX_PAYLOAD);
    }

    #[test]
    fn one_huge_line_is_cut_at_a_char_boundary() {
        let text = "é".repeat(MAX_PAYLOAD);
        let out = fit_payload(&text);
        assert!(out.len() <= MAX_PAYLOAD);
        assert!(out.ends_with(TRUNCATION_NOTE));
        assert!(telemetry::validate::payload(out.as_bytes()).is_ok());
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(sanitize("a\x1b[0m\tb\r\n\0"), "a?[0m\tb?\n?");
        assert!(telemetry::validate::payload(sanitize("\x07\x7f\u{85}x").as_bytes()).is_ok());
    }
}
