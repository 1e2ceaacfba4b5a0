//! The kernel oops parser shared by klogscanner and pstoreprobe (the original probe's rules, docs/probes.md): start patterns,
//! the streaming detector, and the payload format. Pure: no I/O, no global state.

mod parser;
mod patterns;
mod payload;

pub use parser::{normalise, OopsParser, MAX_LINES};
pub use patterns::{find_start, Match, Pattern, PATTERNS};

/// One detected oops: the pattern that started it and its normalised lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oops {
    /// The start pattern (gives classification and severity).
    pub pattern: &'static Pattern,
    /// Normalised lines; the first is the reason line. Never empty.
    pub lines: Vec<String>,
}

impl Oops {
    /// The first line, reported as `Reason:`.
    pub fn reason(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }

    /// Record classification for this oops.
    pub fn classification(&self) -> &'static str {
        self.pattern.classification
    }

    /// Record severity for this oops.
    pub fn severity(&self) -> u32 {
        self.pattern.severity
    }

    /// The record payload. `raw_registers` prints register values in hex (only when the
    /// machine owner lifted the privacy filters); otherwise each is `Zero` or `Non-zero`.
    pub fn payload(&self, raw_registers: bool) -> String {
        payload::build(&self.lines, self.pattern.is_bert(), raw_registers)
    }
}

/// Runs a whole text (a saved log or a pstore dump) through a fresh parser and returns every
/// oops, including one still open at the end of the text. A last line without `\n` counts.
pub fn scan_text(text: &str) -> Vec<Oops> {
    let mut parser = OopsParser::new();
    let mut found: Vec<Oops> = text
        .lines()
        .filter_map(|line| parser.push_line(line))
        .collect();
    found.extend(parser.finish());
    found
}
