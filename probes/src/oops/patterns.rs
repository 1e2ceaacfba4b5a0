//! The 22 oops start patterns of the original, in its order (first match wins), with the
//! classification and severity each one reports.

/// How a pattern's text is matched against a normalised line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// Byte prefix of the normalised line (case-sensitive), as the original's `starts_with`.
    Prefix,
    /// The original's POSIX ERE `^ALSA (.*): BUG(.*)`, case-insensitive.
    AlsaBug,
    /// The original's POSIX ERE `irq [[:digit:]]+: nobody cared`, case-insensitive, unanchored.
    IrqNobodyCared,
}

/// One start pattern.
#[derive(Debug, PartialEq, Eq)]
pub struct Pattern {
    /// The pattern text as the original spells it (the regex source for the two regexes).
    pub begin: &'static str,
    /// Record classification for an oops that starts with this pattern.
    pub classification: &'static str,
    /// Record severity (2 = medium, 4 = critical).
    pub severity: u32,
    /// How `begin` is matched.
    pub kind: Match,
}

impl Pattern {
    /// True when `line` (already normalised) starts an oops of this kind.
    pub fn matches(&self, line: &str) -> bool {
        match self.kind {
            Match::Prefix => line.starts_with(self.begin),
            Match::AlsaBug => alsa_bug(line),
            Match::IrqNobodyCared => irq_nobody_cared(line),
        }
    }

    /// BERT reports collect `[Hardware Error]:` lines instead of a stack dump.
    pub fn is_bert(&self) -> bool {
        self.begin.contains("BERT:")
    }

    /// ALSA bugs are not ended by a `WARNING:` or `Unable to handle` line.
    pub fn is_alsa(&self) -> bool {
        self.kind == Match::AlsaBug
    }
}

const WARNING: &str = "org.clearlinux/kernel/warning";
const BUG: &str = "org.clearlinux/kernel/bug";
const MEDIUM: u32 = 2;
const CRITICAL: u32 = 4;

const fn prefix(begin: &'static str, classification: &'static str, severity: u32) -> Pattern {
    Pattern {
        begin,
        classification,
        severity,
        kind: Match::Prefix,
    }
}

/// The start patterns, in the order they are tried.
pub static PATTERNS: [Pattern; 22] = [
    prefix("NETDEV WATCHDOG: ", WARNING, MEDIUM),
    prefix("sysctl table check failed: ", WARNING, MEDIUM),
    prefix("IRQ handler type mismatch for IRQ", WARNING, MEDIUM),
    Pattern {
        begin: "^ALSA (.*): BUG(.*)",
        classification: "crash/kernel/bug",
        severity: MEDIUM,
        kind: Match::AlsaBug,
    },
    Pattern {
        begin: "irq [[:digit:]]+: nobody cared",
        classification: "crash/kernel/warning",
        severity: MEDIUM,
        kind: Match::IrqNobodyCared,
    },
    prefix("WARNING: ", WARNING, MEDIUM),
    prefix("general protection fault: ", BUG, CRITICAL),
    prefix("BUG: unable to handle kernel ", BUG, CRITICAL),
    prefix("BUG:", BUG, CRITICAL),
    prefix("kernel BUG at", BUG, CRITICAL),
    prefix("general protection fault:", BUG, CRITICAL),
    prefix(
        "do_IRQ: stack overflow:",
        "org.clearlinux/kernel/stackoverflow",
        CRITICAL,
    ),
    prefix("RTNL: assertion failed", WARNING, MEDIUM),
    prefix("Eeek! page_mapcount(page) went negative!", BUG, CRITICAL),
    prefix("near stack overflow (cur:", BUG, CRITICAL),
    prefix("double fault", BUG, CRITICAL),
    prefix("Badness", BUG, CRITICAL),
    prefix("list_del corruption.", WARNING, MEDIUM),
    prefix("list_add corruption.", WARNING, MEDIUM),
    prefix("ACPI Error:", WARNING, MEDIUM),
    prefix(
        "Kernel panic - not syncing:",
        "org.clearlinux/kernel/panic",
        CRITICAL,
    ),
    prefix(
        "BERT: Error records from previous boot:",
        "org.clearlinux/bert/debug",
        MEDIUM,
    ),
];

/// The first pattern that `line` (normalised) starts, if any.
pub fn find_start(line: &str) -> Option<&'static Pattern> {
    PATTERNS.iter().find(|p| p.matches(line))
}

/// ASCII case-insensitive prefix test (the original's `strncasecmp`).
pub(crate) fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// `^ALSA (.*): BUG(.*)`, case-insensitive.
fn alsa_bug(line: &str) -> bool {
    let b = line.as_bytes();
    if !starts_with_ci(b, b"ALSA ") {
        return false;
    }
    let rest = &b[5..];
    (0..rest.len()).any(|i| starts_with_ci(&rest[i..], b": BUG"))
}

/// `irq [[:digit:]]+: nobody cared`, case-insensitive, anywhere in the line.
fn irq_nobody_cared(line: &str) -> bool {
    let b = line.as_bytes();
    (0..b.len()).any(|i| {
        if !starts_with_ci(&b[i..], b"irq ") {
            return false;
        }
        let after = &b[i + 4..];
        let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
        digits > 0 && starts_with_ci(&after[digits..], b": nobody cared")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn there_are_22_patterns_in_the_original_order() {
        assert_eq!(PATTERNS.len(), 22);
        assert_eq!(PATTERNS[0].begin, "NETDEV WATCHDOG: ");
        assert_eq!(PATTERNS[5].begin, "WARNING: ");
        assert_eq!(PATTERNS[20].classification, "org.clearlinux/kernel/panic");
        assert!(PATTERNS[21].is_bert());
        for p in &PATTERNS {
            assert!(
                telemetry::validate::classification(p.classification).is_ok(),
                "{}",
                p.classification
            );
            assert!(matches!(p.severity, 2 | 4));
        }
    }

    #[test]
    fn first_match_wins() {
        let p = find_start("BUG: unable to handle kernel NULL pointer").unwrap();
        assert_eq!(p.begin, "BUG: unable to handle kernel ");
        let p = find_start("BUG: soft lockup - CPU#8 stuck").unwrap();
        assert_eq!(p.begin, "BUG:");
        let p = find_start("general protection fault: 0000 [#1]").unwrap();
        assert_eq!(p.begin, "general protection fault: ");
        let p = find_start("general protection fault:0000").unwrap();
        assert_eq!(p.begin, "general protection fault:");
    }

    #[test]
    fn prefixes_are_case_sensitive_and_anchored() {
        assert!(find_start("warning: lower case").is_none());
        assert!(find_start(" WARNING: indented").is_none());
        assert!(find_start("WARNING:no space").is_none());
        assert!(find_start("Kernel panic - not syncing: Fatal exception").is_some());
    }

    #[test]
    fn alsa_regex() {
        let p = find_start("ALSA sound/core/pcm.c:123: BUG? something").unwrap();
        assert_eq!(p.classification, "crash/kernel/bug");
        assert!(p.is_alsa());
        assert!(find_start("alsa x: bug").is_some());
        assert!(find_start("ALSA : BUG").is_some());
        assert!(find_start("ALSA no colon bug").is_none());
        assert!(find_start("xALSA a: BUG").is_none());
    }

    #[test]
    fn irq_regex() {
        let p = find_start("irq 16: nobody cared (try booting with \"irqpoll\")").unwrap();
        assert_eq!(p.classification, "crash/kernel/warning");
        assert!(find_start("foo IRQ 7: Nobody Cared").is_some());
        assert!(find_start("irq : nobody cared").is_none());
        assert!(find_start("irq 1a: nobody cared").is_none());
    }
}
