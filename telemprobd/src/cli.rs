//! Command line of telemprobd (the original's options, plus tuning knobs).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use telemetry::service_args::config_file_only;

use crate::server::Options;

/// Accepts telemetry records from probes over a Unix socket and spools them durably.
#[derive(Debug, PartialEq, Eq, Parser)]
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
    #[arg(long, value_name = "MS", default_value_t = CLIENT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub client_timeout_ms: u64,

    /// How long a client may take to send its first byte, in milliseconds (capped by
    /// --client-timeout-ms); a connection that idles longer is closed. Senders write their
    /// frame right after connecting.
    #[arg(long, value_name = "MS", default_value_t = FIRST_BYTE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub first_byte_timeout_ms: u64,

    /// Most connections one user (uid) may have served while their frames arrive; more of that
    /// user's wait, unread, until one is done. Keeps one user from holding every slot.
    #[arg(long, value_name = "N", default_value_t = PER_UID_CLIENTS,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub per_uid_clients: u64,

    /// Seconds without clients after which the daemon exits when `daemon_recycling_enabled` is
    /// set (socket activation starts it again on demand).
    #[arg(long, value_name = "SECS", default_value_t = IDLE_EXIT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_exit_secs: u64,

    /// Permissions of the socket file when the daemon creates it (octal).
    #[arg(long, value_name = "MODE", default_value = SOCKET_MODE, value_parser = parse_mode)]
    pub socket_mode: u32,

    /// Most clients served at once. When all are taken, the oldest connection of the user
    /// holding the most is closed to make room.
    #[arg(long, value_name = "N", default_value_t = MAX_CLIENTS,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_clients: u64,
}

const CLIENT_TIMEOUT_MS: u64 = 5000;
const FIRST_BYTE_TIMEOUT_MS: u64 = 1000;
const PER_UID_CLIENTS: u64 = 64;
const IDLE_EXIT_SECS: u64 = 300;
const SOCKET_MODE: &str = "0666";
const MAX_CLIENTS: u64 = 512;

impl Cli {
    /// The command line `args` (program name first, as `std::env::args_os`): the shapes a
    /// service uses — none, or only `-f FILE` — read directly, everything else by clap.
    ///
    /// Why a fast path: [`telemetry::service_args`]; the test below checks that clap agrees.
    pub fn from_args(args: &[OsString]) -> Result<Cli, clap::Error> {
        match quick_parse(args) {
            Some(cli) => Ok(cli),
            None => Cli::try_parse_from(args),
        }
    }

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

/// The command lines a service manager gives ([`config_file_only`]) with every other option
/// at its default; `None` for anything else.
fn quick_parse(args: &[OsString]) -> Option<Cli> {
    let config_file = config_file_only(args)?;
    Some(Cli {
        config_file,
        client_timeout_ms: CLIENT_TIMEOUT_MS,
        first_byte_timeout_ms: FIRST_BYTE_TIMEOUT_MS,
        per_uid_clients: PER_UID_CLIENTS,
        idle_exit_secs: IDLE_EXIT_SECS,
        socket_mode: parse_mode(SOCKET_MODE).ok()?,
        max_clients: MAX_CLIENTS,
    })
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
    use telemetry::service_args::fast_path_agrees;

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

    #[test]
    fn fast_path_gives_what_clap_gives() {
        let vocabulary = [
            "-f",
            "--config-file",
            "--config_file",
            "--config-file=/a",
            "/x.conf",
            "-",
            "",
            "--max-clients",
            "7",
            "--socket-mode",
            "0600",
            "-h",
            "--help",
            "-V",
            "--bogus",
        ];
        let fast = fast_path_agrees("telemprobd", &vocabulary, quick_parse, |a| {
            Cli::try_parse_from(a).ok()
        })
        .unwrap();
        // No argument, and -f under its three names with each of the three plain values.
        assert_eq!(fast, 10);
        for args in [&["telemprobd"][..], &["telemprobd", "-f", "/etc/t.conf"]] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(quick_parse(&args).is_some(), "{args:?}");
            assert_eq!(
                Cli::from_args(&args).unwrap(),
                Cli::try_parse_from(&args).unwrap()
            );
        }
        let help: Vec<OsString> = ["telemprobd", "--help"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(!Cli::from_args(&help).unwrap_err().use_stderr());
    }
}
