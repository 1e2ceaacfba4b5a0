//! Starting and stopping units through systemctl, as the original did, with its unit lists.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

/// Units that trigger the services (socket, path, timer) plus the always-on probes.
pub const TRIGGERS: [&str; 6] = [
    "hprobe.timer",
    "telemprobd.socket",
    "telempostd.path",
    "klogscanner.service",
    "journal-probe-tail.service",
    "rasprobe.service",
];
/// Services that the triggers start.
pub const SERVICES: [&str; 5] = [
    "hprobe.service",
    "pstore-probe.service",
    "telemprobd.service",
    "telempostd.service",
    "journal-probe.service",
];

fn systemctl() -> OsString {
    std::env::var_os(telemetry::env::SYSTEMCTL).unwrap_or_else(|| "systemctl".into())
}

/// True when units can be managed: systemd is PID 1, or a systemctl was given explicitly.
pub fn available() -> bool {
    std::env::var_os(telemetry::env::SYSTEMCTL).is_some()
        || Path::new("/run/systemd/system").is_dir()
}

fn no_systemd() -> Result<()> {
    bail!(
        "systemd is not running on this machine, so there are no units to {}. Run the daemons \
         yourself instead: 'telemprobd &' and 'telempostd &' (add -f FILE for a config file).",
        "manage"
    )
}

/// Runs `systemctl <action> <unit>` for each unit; reports every failure and keeps going.
/// Returns whether all succeeded.
pub fn act(action: &str, units: &[&str]) -> Result<bool> {
    if !available() {
        no_systemd()?;
    }
    let mut ok = true;
    for unit in units {
        let out = Command::new(systemctl()).arg(action).arg(unit).output();
        match out {
            Ok(o) if o.status.success() => println!("{action} {unit}: ok"),
            Ok(o) => {
                ok = false;
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").trim();
                eprintln!("Failed to {action} {unit}: {last}");
            }
            Err(e) => bail!("cannot run systemctl: {e}"),
        }
    }
    Ok(ok)
}

/// `systemctl is-active <unit>`'s answer, e.g. "active" or "inactive".
pub fn is_active(unit: &str) -> String {
    if !available() {
        return "unknown (systemd not running)".to_string();
    }
    match Command::new(systemctl())
        .arg("is-active")
        .arg(unit)
        .output()
    {
        Ok(o) => {
            let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                "unknown".to_string()
            } else {
                s
            }
        }
        Err(e) => format!("unknown ({e})"),
    }
}
