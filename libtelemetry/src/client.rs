//! Sending a record to telemprobd: connect, write the frame, wait (bounded) for the 4-byte
//! status. End of stream without a status is success (the original daemon never answers).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{socket_with, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

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
    let timeout = Duration::from_millis(config.send_timeout_ms.max(1));
    let mut stream = connect(&config.socket_path, timeout)?;
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

/// Connects to the daemon's socket with both timeouts already set.
///
/// Set before `connect`, not after: the send timeout then also bounds a `connect` that waits
/// for room in a busy daemon's backlog, and the frame follows the connection at once, so the
/// daemon usually finds the whole frame there when it accepts (it serves such a connection
/// without registering it, see telemprobd's `fast` module).
fn connect(path: &Path, timeout: Duration) -> Result<UnixStream> {
    let unreachable = |e: io::Error| Error::io(unreachable_context(path, &e), e);
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("creating a socket", e.into()))?;
    for which in [Timeout::Send, Timeout::Recv] {
        set_socket_timeout(&fd, which, Some(timeout))
            .map_err(|e| Error::io("setting socket timeout", e.into()))?;
    }
    let addr = SocketAddrUnix::new(path).map_err(|e| unreachable(e.into()))?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => return Ok(UnixStream::from(fd)),
            // Not connected yet when interrupted (a Unix socket connects at once or waits
            // for room in the backlog first): trying again is safe.
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                return Err(Error::io(
                    format!(
                        "telemprobd at {} did not take the connection in time (busy?)",
                        path.display()
                    ),
                    // Its errno, so `tm_send_record` returns -ETIMEDOUT as for a late answer.
                    io::Error::from_raw_os_error(crate::error::libc_errno::ETIMEDOUT),
                ));
            }
            Err(e) => return Err(unreachable(e.into())),
        }
    }
}

/// What a failed connect means to a person: no permission is not a daemon that is not running.
fn unreachable_context(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "no permission to connect to telemprobd at {}",
            path.display()
        )
    } else {
        format!(
            "cannot reach telemprobd at {} (is it running?)",
            path.display()
        )
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Write;

    /// A listening socket with room for one waiting connection and nobody accepting.
    fn stuck_listener(path: &Path) -> rustix::fd::OwnedFd {
        let fd = socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        rustix::net::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
        rustix::net::listen(&fd, 0).unwrap();
        fd
    }

    #[test]
    fn a_daemon_that_never_accepts_is_an_error_after_the_timeout_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sock");
        let _listener = stuck_listener(&path);
        // Fills the backlog: the kernel queues it, nobody accepts.
        let _first = UnixStream::connect(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(connect(&p, Duration::from_millis(100)).map(|_| ()));
        });
        // Generous: only a hang (connect without the timeout waits forever) fails this.
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("connect hung");
        let e = got.unwrap_err();
        assert_eq!(e.errno(), crate::error::libc_errno::ETIMEDOUT);
        let e = e.to_string();
        assert!(e.contains("did not take the connection in time"), "{e}");
    }

    #[test]
    fn the_frame_and_the_answer_travel_on_a_connection_with_both_timeouts() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut frame = [0u8; 5];
            c.read_exact(&mut frame).unwrap();
            c.write_all(&(-28i32).to_le_bytes()).unwrap();
            frame
        });
        let mut s = connect(&path, Duration::from_millis(1500)).unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(1500)));
        assert_eq!(
            s.write_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        write_all_nosignal(&s, b"hello").unwrap();
        assert_eq!(read_status(&mut s).unwrap(), Some(-28));
        assert_eq!(&server.join().unwrap(), b"hello");
    }

    #[test]
    fn a_permission_error_is_named_as_such() {
        let p = Path::new("/run/telem-0");
        let denied = io::Error::from_raw_os_error(crate::error::libc_errno::EACCES);
        let m = Error::io(unreachable_context(p, &denied), denied).to_string();
        assert!(
            m.starts_with("no permission to connect to telemprobd at /run/telem-0: "),
            "{m}"
        );
        assert!(!m.contains("is it running"), "{m}");
        let missing = io::Error::from_raw_os_error(crate::error::libc_errno::ENOENT);
        assert!(unreachable_context(p, &missing).contains("(is it running?)"));
    }

    #[test]
    fn no_socket_there_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let e = connect(&d.path().join("none"), Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot reach telemprobd"), "{e}");
    }
}
