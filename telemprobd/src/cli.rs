//! Command line of telemprobd (the original's options, plus tuning knobs).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::server::Options;

/// Accepts telemetry records from probes over a Unix socket and spools them durably.
#[derive(Debug, Parser)]
#[command(name = "telemprobd", version = telemetry::VERSION_TEXT, about)]
pub struct Cli {
    /// Read the configuration from FILE alone, on top of the built-in defaults (not the layered files).
    #[arg(
        short = 'f',
        long = "config-file",
        visible_alias = "config_file",
        value_name = "FILE"
    )]
    pub config_file: Option<PathBuf>,

    /// How long a client may take to send its whole frame, in milliseconds; slower or silent
    /// clients are dropped (for testing and tuning).
    #[arg(long, value_name = "MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub client_timeout_ms: u64,

    /// How long a client may take to send its first byte, in milliseconds (capped by
    /// --client-timeout-ms); a connection that idles longer is closed. Senders write their
    /// frame right after connecting.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub first_byte_timeout_ms: u64,

    /// Most connections one user (uid) may have served while their frames arrive; more of that
    /// user's wait, unread, until one is done. Keeps one user from holding every slot.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub per_uid_clients: u64,

    /// Seconds without clients after which the daemon exits when `daemon_recycling_enabled` is
    /// set (socket activation starts it again on demand).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_exit_secs: u64,

    /// Permissions of the socket file when the daemon creates it (octal).
    #[arg(long, value_name = "MODE", default_value = "0666", value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Most clients served at once. When all are taken, the oldest connection of the user
    /// holding the most is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_clients: u64,
}

impl Cli {
    /// The server's tuning from the command line.
    pub fn options(&self) -> Options {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Options {
            client_timeout: Duration::from_millis(self.client_timeout_ms),
            first_byte_timeout: Duration::from_millis(self.first_byte_timeout_ms),
            per_uid_clients: n(self.per_uid_clients),
            idle_exit: Duration::from_secs(self.idle_exit_secs),
            max_clients: n(self.max_clients),
        }
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode from 0 to 0777")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn options_parse_with_both_spellings() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["telemprobd", "--config_file", "/x.conf"]).unwrap();
        assert_eq!(c.config_file, Some(PathBuf::from("/x.conf")));
        let c =
            Cli::try_parse_from(["telemprobd", "-f", "/y.conf", "--socket-mode", "0600"]).unwrap();
        assert_eq!(c.config_file, Some(PathBuf::from("/y.conf")));
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.client_timeout_ms, 5000);
        assert_eq!(c.first_byte_timeout_ms, 1000);
        assert_eq!(c.per_uid_clients, 64);
        assert!(Cli::try_parse_from(["telemprobd", "--socket-mode", "999"]).is_err());
        assert!(Cli::try_parse_from(["telemprobd", "--bogus"]).is_err());
    }
}
