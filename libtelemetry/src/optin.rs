//! Opt-in: the presence of the opt-in file (any type, symlinks followed, as the original) means
//! the machine owner agreed to send telemetry.

use crate::config::Config;

/// True when the opt-in file named by the config exists.
pub fn is_opted_in(config: &Config) -> bool {
    config.opt_in_file.metadata().is_ok()
}

/// True when the no-privacy-filters file exists (probes then report more detail).
pub fn privacy_filters_lifted(config: &Config) -> bool {
    config.no_privacy_filters_file.metadata().is_ok()
}
