//! "N min ago" for people; calendar dates come from `telemetry::timefmt`.

pub use telemetry::timefmt::utc_string as utc;

/// "42 s ago", "5 min ago", "3 h ago", "2 days ago".
pub fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        7200..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(ago(100, 58), "42 s ago");
        assert_eq!(ago(1000, 400), "10 min ago");
        assert_eq!(ago(10, 20), "0 s ago");
        assert_eq!(ago(100_000, 0), "27 h ago");
    }
}
