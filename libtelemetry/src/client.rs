//! Sending a record to telemprobd: connect, write the frame, wait (bounded) for the 4-byte
//! status. End of stream without a status is success (the original daemon never answers).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::frame;
use crate::optin;
use crate::record::Record;

/// Sends `record` as configured: refuses when not opted in, embeds the explicit config file (if
/// any) as `CFG:`, and returns the daemon's verdict. `Ok(())` from our daemon means the record
/// is durably spooled.
pub fn send(record: &Record, config: &Config) -> Result<()> {
    if !optin::is_opted_in(config) {
        return Err(Error::NotOptedIn(config.opt_in_file.clone()));
    }
    let bytes = frame::encode(record, config.explicit_file.as_deref())?;
    let path = &config.socket_path;
    let mut stream = UnixStream::connect(path).map_err(|e| {
        Error::io(
            format!(
                "cannot reach telemprobd at {} (is it running?)",
                path.display()
            ),
            e,
        )
    })?;
    let timeout = Some(Duration::from_millis(config.send_timeout_ms.max(1)));
    let set = |r: io::Result<()>| r.map_err(|e| Error::io("setting socket timeout", e));
    set(stream.set_write_timeout(timeout))?;
    set(stream.set_read_timeout(timeout))?;
    let written = write_all_nosignal(&stream, &bytes);
    // Even when the write failed (the daemon may have closed early after rejecting the frame),
    // a status may be waiting: it says why.
    match read_status(&mut stream) {
        Ok(Some(0)) => written.map_err(|e| Error::io("sending the record", e)),
        Ok(Some(status)) => Err(Error::Refused(status.saturating_neg())),
        Ok(None) => written.map_err(|e| Error::io("sending the record", e)),
        Err(e) if written.is_err() => {
            Err(Error::io("sending the record", written.err().unwrap_or(e)))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error::AckTimeout)
        }
        Err(e) => Err(Error::io("reading telemprobd's answer", e)),
    }
}

/// Writes everything with MSG_NOSIGNAL, so a daemon that hangs up does not kill the caller with
/// SIGPIPE (this runs inside arbitrary C programs).
fn write_all_nosignal(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::net::send(stream, buf, rustix::net::SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads the status word: `Some(status)`, or `None` on end of stream before any byte.
fn read_status(stream: &mut UnixStream) -> io::Result<Option<i32>> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "telemprobd sent a partial status",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(i32::from_le_bytes(buf)))
}
