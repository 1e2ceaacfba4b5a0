//! Every environment variable the programs read, in one place.

/// Prefix for every default path (config files, socket, spool, opt-in files, machine id, journal,
/// state). `TELEM_ROOT=/tmp/t` makes `/etc/telemetrics/opt-in` mean `/tmp/t/etc/telemetrics/opt-in`.
/// Tests and the README demo use it so they never touch the real system.
pub const ROOT: &str = "TELEM_ROOT";

/// An explicit configuration file, read on top of the built-in defaults alone (like `-f`).
pub const CONFIG: &str = "TELEM_CONFIG";

/// Root for the system files that fill record headers (`/sys/class/dmi/id`, `/proc/cpuinfo`,
/// os-release). For tests that need fixed header values.
pub const SYSINFO_ROOT: &str = "TELEM_SYSINFO_ROOT";

/// The root prefix from [`ROOT`], or `/`.
pub fn root() -> std::path::PathBuf {
    std::env::var_os(ROOT)
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/"))
}

/// The user crashprobe becomes when the kernel starts it as root (default `telemetry`). A test
/// names its own user here, so a `telemetry` user on the host does not change what it sees.
pub const PROBE_USER: &str = "TELEM_PROBE_USER";

/// The `systemctl` program telemctl runs (tests point it at a recorder script).
pub const SYSTEMCTL: &str = "TELEM_SYSTEMCTL";
