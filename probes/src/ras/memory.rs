//! Memory controller errors reported through EDAC (`ras/mc_event`) and PCIe Advanced Error
//! Reporting (`ras/aer_event`): their classes and text reports.

use std::fmt::Write as _;

use super::text::{Event, Value};

/// `mc_event`'s `error_type` (the kernel's `enum hw_event_mc_err_type`): classification and
/// severity.
pub fn mc_class(error_type: u64) -> (&'static str, u32) {
    match error_type {
        0 => ("org.clearlinux/memory/corrected", 2),
        1 => ("org.clearlinux/memory/uncorrected", 3),
        2 => ("org.clearlinux/memory/deferred", 3),
        3 => ("org.clearlinux/memory/fatal", 4),
        4 => ("org.clearlinux/memory/info", 1),
        _ => ("org.clearlinux/memory/unknown", 3),
    }
}

fn mc_type_name(error_type: u64) -> &'static str {
    match error_type {
        0 => "Corrected",
        1 => "Uncorrected",
        2 => "Deferred",
        3 => "Fatal",
        4 => "Info",
        _ => "Unknown",
    }
}

/// The DIMM a memory error is on: its label, else the memory controller and its location.
pub fn dimm(event: &Event) -> String {
    match event.str("label").filter(|l| !l.is_empty()) {
        Some(label) => label.to_string(),
        None => format!(
            "mc{} location {}:{}:{}",
            event.u64("mc_index").unwrap_or(0),
            event.i64("top_layer").unwrap_or(-1),
            event.i64("middle_layer").unwrap_or(-1),
            event.i64("lower_layer").unwrap_or(-1)
        ),
    }
}

/// The report of one `mc_event`.
pub fn mc_report(event: &Event) -> String {
    let error_type = event.u64("error_type").unwrap_or(u64::MAX);
    let mut out = String::from("Hardware event. This is not a software error.\n");
    let _ = writeln!(
        out,
        "Memory controller error ({})",
        mc_type_name(error_type)
    );
    let _ = writeln!(out, "DIMM {}", dimm(event));
    let _ = writeln!(out, "ERROR_COUNT {}", event.u64("error_count").unwrap_or(1));
    let _ = writeln!(out, "MC {}", event.u64("mc_index").unwrap_or(0));
    let _ = writeln!(
        out,
        "LOCATION {}:{}:{}",
        event.i64("top_layer").unwrap_or(-1),
        event.i64("middle_layer").unwrap_or(-1),
        event.i64("lower_layer").unwrap_or(-1)
    );
    if let Some(a) = event.u64("address") {
        let _ = writeln!(out, "ADDR {a:x}");
    }
    if let Some(g) = event.u64("grain_bits") {
        // The kernel prints the grain as 1 << grain_bits; a hostile 64 would overflow.
        let grain = 1u128 << g.min(64);
        let _ = writeln!(out, "GRAIN {grain}");
    }
    if let Some(s) = event.u64("syndrome") {
        let _ = writeln!(out, "SYNDROME {s:x}");
    }
    for (name, key) in [("msg", "MESSAGE"), ("driver_detail", "DETAIL")] {
        if let Some(v) = event.str(name).filter(|v| !v.is_empty()) {
            let _ = writeln!(out, "{key} {v}");
        }
    }
    out
}

/// `aer_event`'s `severity` (`AER_NONFATAL` 0, `AER_FATAL` 1, `AER_CORRECTABLE` 2).
pub fn aer_class(severity: u64) -> (&'static str, u32) {
    match severity {
        2 => ("org.clearlinux/pcie/corrected", 2),
        0 => ("org.clearlinux/pcie/nonfatal", 3),
        1 => ("org.clearlinux/pcie/fatal", 4),
        _ => ("org.clearlinux/pcie/unknown", 3),
    }
}

/// The report of one `aer_event`.
pub fn aer_report(event: &Event) -> String {
    let severity = event.u64("severity").unwrap_or(u64::MAX);
    let mut out = String::from("Hardware event. This is not a software error.\n");
    let kind = match severity {
        2 => "Corrected",
        0 => "Uncorrected (Non-Fatal)",
        1 => "Uncorrected (Fatal)",
        _ => "Unknown",
    };
    let _ = writeln!(out, "PCIe AER error ({kind})");
    let _ = writeln!(out, "DEVICE {}", event.str("dev_name").unwrap_or("?"));
    let _ = writeln!(out, "STATUS {:x}", event.u64("status").unwrap_or(0));
    if let Some(v) = event.u64("tlp_header_valid") {
        let _ = writeln!(out, "TLP_HEADER_VALID {v}");
    }
    if let Some(Value::Bytes(b)) = event.fields.get("tlp_header") {
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        let _ = writeln!(out, "TLP_HEADER {}", hex.join(""));
    }
    out
}
