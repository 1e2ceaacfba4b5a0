//! Builds the record from the options, prints and sends it.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use telemetry::error::{libc_errno, Error};
use telemetry::{optin, Config, Record, SysInfo};

use crate::checks;
use crate::cli::Cli;

pub fn run(cli: Cli) -> Result<()> {
    let class = checks::classification(cli.class.as_deref()).map_err(|m| anyhow!(m))?;
    let severity = checks::integer(&cli.severity, "severity")
        .and_then(checks::severity)
        .map_err(|m| anyhow!(m))?;
    let version = checks::integer(&cli.record_version, "record version").map_err(|m| anyhow!(m))?;
    let event_id = match &cli.event_id {
        Some(id) => Some(checks::event_id(id).map_err(|m| anyhow!(m))?),
        None => None,
    };

    let config_file = match &cli.config_file {
        Some(p) if p.is_absolute() && p.is_file() => Some(p.as_path()),
        Some(p) => bail!(
            "Configuration file path not valid: {} (an absolute path to a regular file is needed)",
            p.display()
        ),
        None => None,
    };
    let payload = read_payload(&cli)?;

    let mut record = Record::new(severity, class, version, SysInfo::cached())?;
    if let Some(id) = event_id {
        record.set_event_id(id)?;
    }
    record.set_payload(&payload).context("payload rejected")?;

    if cli.echo {
        print_record(&record)?;
    }
    if cli.no_post {
        return Ok(());
    }
    let config = Config::load(config_file)?;
    send(&record, &config)
}

/// Reads at most one byte more than the limit, so an oversized payload is reported with its
/// real problem without reading an unbounded stream into memory.
fn read_limited(mut r: impl Read) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(telemetry::record::MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_payload(cli: &Cli) -> Result<Vec<u8>> {
    if let Some(path) = &cli.payload_file {
        let f = std::fs::File::open(path)
            .with_context(|| format!("file {} could not be opened for reading", path.display()))?;
        return read_limited(f).with_context(|| format!("reading {}", path.display()));
    }
    if let Some(p) = &cli.payload {
        return Ok(p.as_bytes().to_vec());
    }
    read_limited(io::stdin().lock()).context("reading the payload from standard input")
}

fn print_record(record: &Record) -> Result<()> {
    let mut out = Vec::new();
    record.write_header_block(&mut out);
    out.extend_from_slice(record.payload());
    out.push(b'\n');
    let mut stdout = io::stdout().lock();
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to standard output"),
    }
}

fn send(record: &Record, config: &Config) -> Result<()> {
    // Tell "not opted in" and "daemon not running" apart (contract §2): check opt-in here.
    if !optin::is_opted_in(config) {
        bail!(
            "Unable to send record: not opted in to telemetry ({} does not exist). \
             Opt in first with 'telemctl opt-in'.",
            config.opt_in_file.display()
        );
    }
    telemetry::client::send(record, config).map_err(|e| describe_send_error(e, &config.socket_path))
}

fn describe_send_error(e: Error, socket: &Path) -> anyhow::Error {
    match &e {
        Error::Io { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc_errno::ENOENT) | Some(libc_errno::ECONNREFUSED)
            ) =>
        {
            anyhow!(
                "Unable to send record: telemprobd is not running (nothing listens on {}). \
                 Start it with 'telemctl start'.",
                socket.display()
            )
        }
        _ => anyhow!("Unable to send record: {e}"),
    }
}
