//! Counters for `/metrics`, written in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the ingest latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Server counters; cheap to update from every request.
#[derive(Default)]
pub struct Metrics {
    ingested: AtomicU64,
    duplicates: AtomicU64,
    batches: AtomicU64,
    /// Rejections by reason (the 400 message, or a short name for other refusals). A std
    /// mutex: no `.await` while held, and the map is tiny.
    rejected: Mutex<BTreeMap<String, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn ingested(&self) {
        self.ingested.fetch_add(1, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// Time from a collector request's arrival to its answer.
    pub fn latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP telem_server_records_ingested_total Records stored."
        );
        let _ = writeln!(s, "# TYPE telem_server_records_ingested_total counter");
        let _ = writeln!(
            s,
            "telem_server_records_ingested_total {}",
            get(&self.ingested)
        );
        let _ = writeln!(
            s,
            "# HELP telem_server_records_duplicate_total Records already stored, answered without a new row."
        );
        let _ = writeln!(s, "# TYPE telem_server_records_duplicate_total counter");
        let _ = writeln!(
            s,
            "telem_server_records_duplicate_total {}",
            get(&self.duplicates)
        );
        let _ = writeln!(
            s,
            "# HELP telem_server_commits_total Ingest transactions committed."
        );
        let _ = writeln!(s, "# TYPE telem_server_commits_total counter");
        let _ = writeln!(s, "telem_server_commits_total {}", get(&self.batches));
        let _ = writeln!(
            s,
            "# HELP telem_server_records_rejected_total Records refused, by reason."
        );
        let _ = writeln!(s, "# TYPE telem_server_records_rejected_total counter");
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    s,
                    "telem_server_records_rejected_total{{reason=\"{}\"}} {n}",
                    label(reason)
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP telem_server_ingest_seconds Time from a collector request to its answer."
        );
        let _ = writeln!(s, "# TYPE telem_server_ingest_seconds histogram");
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                s,
                "telem_server_ingest_seconds_bucket{{le=\"{bound}\"}} {}",
                get(b)
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            s,
            "telem_server_ingest_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = get(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(s, "telem_server_ingest_seconds_sum {sum}");
        let _ = writeln!(s, "telem_server_ingest_seconds_count {count}");
        s
    }
}

/// A label value with `\`, `"` and line breaks escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.ingested();
        m.rejected("Telemetry ID mismatch");
        m.rejected("say \"hi\"");
        m.latency(Duration::from_millis(3));
        let t = m.render();
        assert!(t.contains("telem_server_records_ingested_total 1\n"), "{t}");
        assert!(t.contains("reason=\"Telemetry ID mismatch\"} 1\n"), "{t}");
        assert!(t.contains("reason=\"say \\\"hi\\\"\"} 1\n"), "{t}");
        assert!(t.contains("le=\"0.0025\"} 0\n"), "{t}");
        assert!(t.contains("le=\"0.005\"} 1\n"), "{t}");
        assert!(t.contains("le=\"+Inf\"} 1\n"), "{t}");
    }
}
