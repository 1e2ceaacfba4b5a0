//! Flood control. A failing DIMM can log thousands of corrected errors a second; each kind of
//! error on one source (bank, DIMM, device, CPU) becomes at most one record per window that
//! carries the count.
//!
//! - Corrected-type reports (severity 2 or less) are held: the first one of a source opens a
//!   window, and when the window ends one record goes out, the first report plus the count.
//! - Uncorrected ones go out at once, up to `uncorrected_limit` per source and window; more in
//!   the same window are counted and go out as one record when it ends.
//!
//! Time is whatever the caller says: the events' own timestamps when replaying a recording,
//! monotonic time when live.

use std::collections::BTreeMap;

/// One report: what an event (or thermal counter change) says, before flood control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub classification: &'static str,
    pub severity: u32,
    /// The source it is counted under (`socket 0 bank 7`, a DIMM label, a PCI device).
    pub source: String,
    pub text: String,
    /// How many errors it stands for (an EDAC event may report several).
    pub count: u64,
}

/// A record to send: a report and the count of errors it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub classification: &'static str,
    pub severity: u32,
    pub source: String,
    pub count: u64,
    pub payload: String,
}

/// The flood control settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Window length in nanoseconds.
    pub window_ns: u64,
    /// Uncorrected records sent at once per source and window.
    pub uncorrected_limit: u32,
}

#[derive(Debug)]
struct Group {
    start_ns: u64,
    /// First held report and the time of the first and last held event.
    held: Option<(Report, u64, u64)>,
    held_count: u64,
    sent: u32,
}

/// Sources tracked at once: beyond this (hostile or corrupt input naming ever new sources),
/// everything held is sent and tracking starts over.
const MAX_GROUPS: usize = 4096;

/// The flood control state.
#[derive(Debug)]
pub struct Storm {
    limits: Limits,
    groups: BTreeMap<(&'static str, String), Group>,
}

impl Storm {
    pub fn new(limits: Limits) -> Storm {
        Storm {
            limits,
            groups: BTreeMap::new(),
        }
    }

    /// Takes one report at time `now_ns`; returns the records to send now (windows that ended
    /// first, then this report if it goes out at once).
    pub fn push(&mut self, report: Report, now_ns: u64) -> Vec<Outgoing> {
        let mut out = self.tick(now_ns);
        if self.groups.len() >= MAX_GROUPS {
            out.extend(self.flush());
        }
        let key = (report.classification, report.source.clone());
        let group = self.groups.entry(key).or_insert(Group {
            start_ns: now_ns,
            held: None,
            held_count: 0,
            sent: 0,
        });
        if report.severity > 2 && group.sent < self.limits.uncorrected_limit {
            group.sent += 1;
            out.push(Outgoing {
                classification: report.classification,
                severity: report.severity,
                source: report.source,
                count: report.count,
                payload: report.text,
            });
            return out;
        }
        group.held_count = group.held_count.saturating_add(report.count);
        match &mut group.held {
            Some((_, _, last)) => *last = now_ns,
            None => group.held = Some((report, now_ns, now_ns)),
        }
        out
    }

    /// The records of windows that ended by `now_ns`.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Outgoing> {
        let window = self.limits.window_ns;
        let ended: Vec<_> = self
            .groups
            .iter()
            .filter(|(_, g)| now_ns.saturating_sub(g.start_ns) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in ended {
            if let Some(g) = self.groups.remove(&key) {
                out.extend(self.summary(g));
            }
        }
        out
    }

    /// Everything held (at exit, or the end of a replay).
    pub fn flush(&mut self) -> Vec<Outgoing> {
        let groups = std::mem::take(&mut self.groups);
        groups
            .into_values()
            .filter_map(|g| self.summary(g))
            .collect()
    }

    fn summary(&self, g: Group) -> Option<Outgoing> {
        let (report, first, last) = g.held?;
        let secs = self.limits.window_ns as f64 / 1e9;
        let mut payload = report.text;
        payload.push_str(&format!(
            "COUNT {} errors of this kind on {} within {secs} s (first at {}, last at {})\n",
            g.held_count,
            report.source,
            seconds(first),
            seconds(last)
        ));
        Some(Outgoing {
            classification: report.classification,
            severity: report.severity,
            source: report.source,
            count: g.held_count,
            payload,
        })
    }
}

/// Nanoseconds as `<secs>.<micros>`, as the trace clock prints.
fn seconds(ns: u64) -> String {
    format!("{}.{:06}", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rep(class: &'static str, severity: u32, source: &str) -> Report {
        Report {
            classification: class,
            severity,
            source: source.to_string(),
            text: format!("{source}\n"),
            count: 1,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn corrected_errors_are_one_record_per_source_and_window() {
        let mut storm = Storm::new(Limits {
            window_ns: 10 * S,
            uncorrected_limit: 2,
        });
        let mut out = Vec::new();
        for i in 0..1000u64 {
            // Two sources, 0..25 s.
            let src = if i % 2 == 0 { "bank 1" } else { "bank 2" };
            out.extend(storm.push(rep("c/x/corrected", 2, src), i * S / 40));
        }
        out.extend(storm.flush());
        // Windows start at the first event of each: 0, 10, 20 s (bank 1); same for bank 2.
        assert_eq!(out.len(), 6, "{out:?}");
        assert_eq!(out.iter().map(|o| o.count).sum::<u64>(), 1000);
        let bank1: Vec<u64> = out
            .iter()
            .filter(|o| o.source == "bank 1")
            .map(|o| o.count)
            .collect();
        assert_eq!(bank1, [200, 200, 100]);
        assert!(out[0].payload.starts_with("bank 1\nCOUNT 200 errors of this kind on bank 1 within 10 s (first at 0.000000, last at 9.950000)"), "{}", out[0].payload);
    }

    #[test]
    fn uncorrected_go_out_at_once_up_to_the_limit() {
        let mut storm = Storm::new(Limits {
            window_ns: 10 * S,
            uncorrected_limit: 2,
        });
        let mut now = Vec::new();
        for i in 0..5 {
            now.push(storm.push(rep("c/x/SRAO", 4, "bank 3"), i).len());
        }
        assert_eq!(now, [1, 1, 0, 0, 0]);
        let later = storm.tick(10 * S);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].count, 3);
        assert!(storm.flush().is_empty());
    }
}
