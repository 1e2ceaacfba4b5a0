//! The streaming oops detector: feed it kernel log lines one at a time; it hands back each
//! finished oops. Rules as the original `parse_single_line` (the original probe's rules, docs/probes.md), with one fix from the
//! docs/compatibility.md: the line that ends an oops is examined again as a possible start, so two
//! back-to-back warnings give two oopses.

use super::patterns::{find_start, Pattern};
use super::Oops;

/// Most lines kept for one oops (`MAX_LINES` of the original).
pub const MAX_LINES: usize = 100;

/// Strips what the kernel log adds in front of a message: a `<N>` level, then a `[…]`
/// timestamp, then exactly one whitespace character. Each part is optional.
pub fn normalise(line: &str) -> &str {
    let mut s = line;
    for (open, close) in [('<', '>'), ('[', ']')] {
        if s.starts_with(open) {
            // Without the closing character the original skips to the end of the line.
            s = s.find(close).map_or("", |i| &s[i + 1..]);
        }
    }
    match s.as_bytes().first() {
        Some(c) if is_c_space(*c) => &s[1..],
        _ => s,
    }
}

/// C `isspace` in the C locale.
pub(crate) fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Line-by-line oops detector.
#[derive(Debug, Default)]
pub struct OopsParser {
    /// The oops being collected: its pattern and its normalised lines (first = reason).
    current: Option<(&'static Pattern, Vec<String>)>,
    /// Set after a `Call Trace:` line: from then on, frame lines are expected.
    in_stack_dump: bool,
}

impl OopsParser {
    /// A parser with no oops in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one raw log line (with or without `<N>` and `[timestamp]`, without its `\n`).
    pub fn push_line(&mut self, raw: &str) -> Option<Oops> {
        self.push_normalised(normalise(raw))
    }

    /// Feeds one line that is already a bare message (as `/dev/kmsg` gives them).
    pub fn push_normalised(&mut self, line: &str) -> Option<Oops> {
        let Some((pattern, lines)) = &mut self.current else {
            self.try_start(line);
            return None;
        };
        if !ends_oops(pattern, lines.len(), &mut self.in_stack_dump, line) {
            lines.push(line.to_string());
            return None;
        }
        let finished = self
            .current
            .take()
            .map(|(pattern, lines)| Oops { pattern, lines });
        // Contract §2: the ending line may itself start the next oops.
        self.try_start(line);
        finished
    }

    /// Ends the input: returns the oops in progress, if any. Used at the end of a saved log or a
    /// pstore dump, where no further line can end it (the original lost such an oops).
    pub fn finish(&mut self) -> Option<Oops> {
        self.in_stack_dump = false;
        self.current
            .take()
            .map(|(pattern, lines)| Oops { pattern, lines })
    }

    /// True while an oops is being collected.
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    fn try_start(&mut self, line: &str) {
        if let Some(pattern) = find_start(line) {
            tracing::debug!(pattern = pattern.begin, "oops start detected");
            self.current = Some((pattern, vec![line.to_string()]));
            self.in_stack_dump = false;
        }
    }
}

/// Whether `line` ends the oops collected so far (`collected` lines with `pattern`). Updates the
/// stack-dump mode as the original does.
fn ends_oops(pattern: &Pattern, collected: usize, in_stack_dump: &mut bool, line: &str) -> bool {
    let mut end = false;
    if collected >= MAX_LINES {
        tracing::warn!("oops longer than {MAX_LINES} lines; reporting the first {MAX_LINES}");
        end = true;
    } else if line.contains("[ end trace") {
        end = true;
    } else if pattern.is_bert() {
        end = !line.contains("[Hardware Error]:");
    } else if !*in_stack_dump {
        // The line after `Call Trace:` is most likely the topmost frame.
        if line.starts_with("Call Trace:") {
            *in_stack_dump = true;
        }
    } else if !line.starts_with(' ')
        || line.len() < 8
        || line.contains("Code:")
        || line.contains("Instruction Dump::")
    {
        // Frames start with a space (with or without `[<address>]` since Linux 4.10).
        *in_stack_dump = false;
        end = true;
    }
    // A new warning or fault ends the current oops, except inside an ALSA bug report.
    if (line.contains("WARNING:") || line.contains("Unable to handle")) && !pattern.is_alsa() {
        end = true;
    }
    end
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn normalise_strips_level_timestamp_and_one_space() {
        assert_eq!(normalise("<4>[    1.5] WARNING: x"), "WARNING: x");
        assert_eq!(normalise("<4>[\t1.5]WARNING: x"), "WARNING: x");
        assert_eq!(normalise("<12>[ 1.5]  [<ffff>] foo"), " [<ffff>] foo");
        assert_eq!(normalise("[ 1.5] BUG: x"), "BUG: x");
        assert_eq!(normalise("<6>BUG: x"), "BUG: x");
        assert_eq!(normalise("BUG: x"), "BUG: x");
        assert_eq!(normalise(" BUG: x"), "BUG: x");
        assert_eq!(normalise("<6 no close"), "");
        assert_eq!(normalise("[ no close"), "");
        assert_eq!(normalise(""), "");
        assert_eq!(normalise("<6>[1] <3>[2] x"), "<3>[2] x");
    }

    /// Feeds bare messages (as /dev/kmsg gives them).
    fn feed(p: &mut OopsParser, lines: &[&str]) -> Vec<Oops> {
        lines.iter().filter_map(|l| p.push_normalised(l)).collect()
    }

    #[test]
    fn raw_lines_are_normalised() {
        let mut p = OopsParser::new();
        assert!(p.push_line("<4>[ 1.0] BUG: x").is_none());
        assert!(p.push_line("<4>[ 1.0] Call Trace:").is_none());
        assert!(p.push_line("<4>[ 1.0]  [<1>] a+0x1/0x2").is_none());
        let o = p.push_line("<4>[ 1.0] Code: 00").unwrap();
        assert_eq!(o.lines, vec!["BUG: x", "Call Trace:", " [<1>] a+0x1/0x2"]);
    }

    #[test]
    fn oops_is_emitted_only_when_a_line_ends_it() {
        let mut p = OopsParser::new();
        let got = feed(
            &mut p,
            &["WARNING: CPU: 0 at x", "Call Trace:", " [<1>] a+0x1/0x2"],
        );
        assert!(got.is_empty());
        assert!(p.in_progress());
        let got = feed(&mut p, &["next message"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines.len(), 3);
        assert!(!p.in_progress());
    }

    #[test]
    fn end_trace_line_ends_and_is_not_kept() {
        let mut p = OopsParser::new();
        let got = feed(&mut p, &["BUG: x", "line", "---[ end trace 1234 ]---"]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines, vec!["BUG: x", "line"]);
    }

    #[test]
    fn back_to_back_warnings_are_two_oopses() {
        let mut p = OopsParser::new();
        let mut got = feed(
            &mut p,
            &[
                "WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2",
                "Modules linked in: a",
                "WARNING: CPU: 0 PID: 1 at b.c:2 g+0x1/0x2",
                "Modules linked in: b",
            ],
        );
        got.extend(p.finish());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].reason(), "WARNING: CPU: 0 PID: 1 at a.c:1 f+0x1/0x2");
        assert_eq!(got[1].reason(), "WARNING: CPU: 0 PID: 1 at b.c:2 g+0x1/0x2");
        assert_eq!(got[1].lines.len(), 2);
    }

    #[test]
    fn stack_dump_ends_at_first_non_frame_line() {
        let mut p = OopsParser::new();
        let got = feed(
            &mut p,
            &[
                "BUG: x",
                "Call Trace:",
                " a+0x1/0x2",
                " ? b+0x1/0x2",
                "Code: 00 11",
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].lines.len(), 4);
        // Short and unindented lines end too.
        for ender in [
            " short",
            "unindented line",
            " has Code: in it",
            " Instruction Dump:: x",
        ] {
            let mut p = OopsParser::new();
            let got = feed(&mut p, &["BUG: x", "Call Trace:", " a+0x1/0x2", ender]);
            assert_eq!(got.len(), 1, "{ender:?}");
        }
    }

    #[test]
    fn unable_to_handle_ends_but_not_inside_alsa() {
        let mut p = OopsParser::new();
        let got = feed(&mut p, &["BUG: x", "foo Unable to handle bar"]);
        assert_eq!(got.len(), 1);
        let mut p = OopsParser::new();
        let got = feed(
            &mut p,
            &["ALSA a.c:1: BUG x", "WARNING: y", "Unable to handle"],
        );
        assert!(got.is_empty());
        assert_eq!(p.finish().map(|o| o.lines.len()), Some(3));
    }

    #[test]
    fn max_lines() {
        let mut p = OopsParser::new();
        assert!(p.push_line("BUG: x").is_none());
        for i in 1..MAX_LINES {
            assert!(p.push_line(&format!("line {i}")).is_none());
        }
        let o = p.push_line("one too many").unwrap();
        assert_eq!(o.lines.len(), MAX_LINES);
        assert!(!p.in_progress());
    }

    #[test]
    fn bert_collects_hardware_error_lines() {
        let mut p = OopsParser::new();
        let got = feed(
            &mut p,
            &[
                "BERT: Error records from previous boot:",
                "[Hardware Error]: event severity: fatal",
                "[Hardware Error]:  Error 0, type: fatal",
                "Call Trace:",
            ],
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].classification(), "org.clearlinux/bert/debug");
        assert_eq!(
            got[0].payload(false),
            "Crash Report:\nReason: BERT: Error records from previous boot:\n\
             [Hardware Error]: event severity: fatal\n[Hardware Error]:  Error 0, type: fatal\n"
        );
    }

    #[test]
    fn max_lines_line_is_reexamined() {
        let mut p = OopsParser::new();
        p.push_line("BUG: x");
        for i in 1..MAX_LINES {
            p.push_line(&format!("line {i}"));
        }
        assert!(p.push_line("BUG: second").is_some());
        assert_eq!(
            p.finish().map(|o| o.reason().to_string()).as_deref(),
            Some("BUG: second")
        );
    }
}
