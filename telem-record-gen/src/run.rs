//! Builds the record from the options, prints and sends it.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use telemetry::error::{libc_errno, Error};
use telemetry::{Config, Record, SysInfo};

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
        Some(p) => Some(config_path(p)?),
        None => None,
    };
    let payload = read_payload(&cli)?;

    // `-n` without `-o`: the record is only checked, never shown or sent, so the system facts
    // (a dozen file reads, a fifth of this program's own work) are left unread.
    let unread;
    let sys = if cli.no_post && !cli.echo {
        unread = SysInfo::default();
        &unread
    } else {
        SysInfo::cached()
    };
    let mut record = Record::new(severity, class, version, sys)?;
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
    for w in &config.warnings {
        eprintln!("telem-record-gen: warning: {w}");
    }
    send(&record, &config)
}

/// `-f`: the original's message ("Configuration file path not valid"), and why.
fn config_path(p: &Path) -> Result<&Path> {
    let why = if !p.is_absolute() {
        "is not an absolute path"
    } else {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => return Ok(p),
            Ok(_) => "is not a regular file",
            Err(e) if e.kind() == io::ErrorKind::NotFound => "does not exist",
            Err(_) => "cannot be read",
        }
    };
    bail!("Configuration file path not valid: {} {why}", p.display())
}

/// Reads a payload, keeping at most one byte more than the limit in memory; the rest of an
/// oversized payload is only counted, so the error states its real size.
fn read_limited(mut r: impl Read) -> io::Result<(Vec<u8>, u64)> {
    let mut buf = Vec::new();
    r.by_ref()
        .take(telemetry::record::MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut buf)?;
    let rest = if buf.len() > telemetry::record::MAX_PAYLOAD {
        io::copy(&mut r, &mut io::sink())?
    } else {
        0
    };
    let len = (buf.len() as u64).saturating_add(rest);
    Ok((buf, len))
}

/// The payload from `-P`, `-p` or standard input, within the limit.
fn read_payload(cli: &Cli) -> Result<Vec<u8>> {
    let (bytes, len) = if let Some(path) = &cli.payload_file {
        let f = std::fs::File::open(path)
            .with_context(|| format!("file {} could not be opened for reading", path.display()))?;
        read_limited(f).with_context(|| format!("reading {}", path.display()))?
    } else if let Some(p) = &cli.payload {
        (p.as_bytes().to_vec(), p.len() as u64)
    } else {
        read_limited(io::stdin().lock()).context("reading the payload from standard input")?
    };
    let max = telemetry::record::MAX_PAYLOAD;
    if len > max as u64 {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        return Err(Error::PayloadTooLarge { len, max }).context("payload rejected");
    }
    Ok(bytes)
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
    telemetry::client::send(record, config).map_err(|e| describe_send_error(e, &config.socket_path))
}

/// Tells "not opted in" and "daemon not running" apart (docs/compatibility.md).
fn describe_send_error(e: Error, socket: &Path) -> anyhow::Error {
    match &e {
        Error::NotOptedIn(opt_in_file) => anyhow!(
            "Unable to send record: not opted in to telemetry ({} does not exist). \
             Opt in first with 'telemctl opt-in'.",
            opt_in_file.display()
        ),
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
