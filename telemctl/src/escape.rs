//! Text from outside (a collector's error message, ids and classifications from the journal, a
//! retained record's body) is printed with its control characters escaped, so no terminal
//! escape sequence in it reaches the terminal.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One field on one line: every control character escaped (`\x1b`, `\u{9b}`).
pub fn field(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// A multi-line text: line breaks and tabs kept, every other control character escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && !keep(c);
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_keeps_the_rest() {
        assert_eq!(field("plain ünïcode"), "plain ünïcode");
        assert_eq!(field("a\u{1b}[31mb\u{7}"), "a\\x1b[31mb\\x07");
        assert_eq!(field("c1 \u{9b}x"), "c1 \\u{9b}x");
        assert_eq!(field("a\tb\nc"), "a\\x09b\\x0ac");
        assert_eq!(text("a\tb\nc\u{1b}"), "a\tb\nc\\x1b");
    }
}
