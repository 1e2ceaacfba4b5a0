//! CPU thermal throttling, from the counters the kernel keeps per CPU in
//! `/sys/devices/system/cpu/cpu<N>/thermal_throttle/` (`core_throttle_count`,
//! `package_throttle_count`). Each increase since the last look is a `mce/thermal` report.

use std::collections::BTreeMap;
use std::path::Path;

use super::storm::Report;

/// Where the counters live.
pub const CPU_DIR: &str = "/sys/devices/system/cpu";

/// The classification of thermal events (the original's).
pub const CLASSIFICATION: &str = "org.clearlinux/mce/thermal";

/// Counter values by source (`cpu3 core`, `package 0`).
pub type Counters = BTreeMap<String, u64>;

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads every CPU's counters below `cpu_dir`; empty when there are none (VM, other arch).
pub fn read(cpu_dir: &Path) -> Counters {
    let mut out = Counters::new();
    let Ok(entries) = std::fs::read_dir(cpu_dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = entry.path().join("thermal_throttle");
        if let Some(n) = read_u64(&dir.join("core_throttle_count")) {
            out.insert(format!("cpu{cpu} core"), n);
        }
        if let Some(n) = read_u64(&dir.join("package_throttle_count")) {
            // Every CPU of a package shows the package's counter.
            let package = read_u64(&entry.path().join("topology/physical_package_id"))
                .map_or_else(|| format!("cpu{cpu}"), |p| p.to_string());
            out.insert(format!("package {package}"), n);
        }
    }
    out
}

/// Reports for the counters that went up from `old` to `new`. A counter seen for the first time
/// is only remembered: what happened before the probe looked is not reported.
pub fn changes(old: &Counters, new: &Counters) -> Vec<Report> {
    new.iter()
        .filter_map(|(source, &n)| {
            let before = *old.get(source)?;
            let delta = n.checked_sub(before).filter(|d| *d > 0)?;
            let what = if source.starts_with("package") {
                "Package"
            } else {
                "Core"
            };
            Some(Report {
                classification: CLASSIFICATION,
                severity: 2,
                source: source.clone(),
                text: format!(
                    "Thermal event. This is not a software error.\n\
                     {source}: {what} temperature above threshold, cpu clock throttled \
                     (total events = {n})\n"
                ),
                count: delta,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counters_and_their_increase() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("cpu0/thermal_throttle");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::create_dir_all(dir.path().join("cpu0/topology")).unwrap();
        std::fs::create_dir_all(dir.path().join("cpufreq")).unwrap();
        std::fs::write(dir.path().join("cpu0/topology/physical_package_id"), "1\n").unwrap();
        std::fs::write(t.join("core_throttle_count"), "3\n").unwrap();
        std::fs::write(t.join("package_throttle_count"), "7\n").unwrap();
        let a = read(dir.path());
        assert_eq!(a.get("cpu0 core"), Some(&3));
        assert_eq!(a.get("package 1"), Some(&7));
        assert!(changes(&Counters::new(), &a).is_empty());
        std::fs::write(t.join("core_throttle_count"), "5\n").unwrap();
        let b = read(dir.path());
        let r = changes(&a, &b);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].source.as_str(), r[0].count), ("cpu0 core", 2));
        assert!(r[0].text.contains("Core temperature above threshold"));
        assert!(read(&dir.path().join("none")).is_empty());
    }
}
