//! Serving a connection whose whole frame is already there when it is accepted.
//!
//! A probe connects, writes its frame in one go and waits for the answer, so by the time the
//! accept loop sees the connection the frame has almost always arrived. Right after `accept`,
//! one `recv(MSG_PEEK)` looks at what is queued; when it is the whole frame, the record is
//! checked on the spot and handed to the spool writer together with the connection itself
//! (or, when it is the only record in flight, committed right here: see
//! [`crate::store::StoreHandle::store_for`]). Whoever commits it answers, consumes the frame
//! and closes. Compared with a task per connection
//! this takes off each record's path: registering the socket with the runtime and removing it
//! (`epoll_ctl` twice), four `recv`s, duplicating the descriptor, and waking the runtime's
//! thread again after the answer so the task can finish.
//!
//! Nothing is consumed before the answer, as in [`crate::handler`]: if the daemon dies first,
//! the unread frame makes the kernel reset the connection, and the client sees an error
//! rather than a clean end of stream.
//!
//! A frame that is not complete yet (sent in pieces, a slow or silent client) or whose size
//! word is out of range goes to the task, untouched: the task reads it from the start, with
//! its timeout, and answers every malformed case as before.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::net::{RecvFlags, SendFlags};
use telemetry::frame;
use tokio::sync::OwnedSemaphorePermit;

use crate::handler::{self, Peer, Shared};
use crate::stats::Stats;

/// A connection whose frame has been read (peeked) and checked, waiting for its answer.
pub struct Accepted {
    fd: OwnedFd,
    /// Bytes of the frame still queued on the socket (all of it: they were only peeked).
    unread: usize,
    stats: Arc<Stats>,
    /// The connection's place under `--max-clients`, given back when it is closed.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Accepted {
    /// A connection whose `unread` bytes were peeked (tests of the store).
    #[cfg(test)]
    pub fn peeked(fd: OwnedFd, unread: usize, stats: Arc<Stats>) -> Accepted {
        Accepted {
            fd,
            unread,
            stats,
            _slot: None,
        }
    }

    /// Answers `status`, consumes the frame (so the close is a clean end of stream) and closes;
    /// counts the outcome. The peer may be gone: that is its business.
    pub fn finish(self, status: i32) {
        send_status(&self.fd, status);
        consume(&self.fd, self.unread);
        self.stats.count(status);
    }
}

/// Writes the 4-byte status word without waiting. A fresh connection's send buffer always has
/// room for it; false when it could not be written (peer gone).
pub fn send_status(fd: impl AsFd, status: i32) -> bool {
    let word = status.to_le_bytes();
    matches!(
        rustix::net::send(fd, &word, SendFlags::NOSIGNAL | SendFlags::DONTWAIT),
        Ok(n) if n == word.len()
    )
}

/// Reads and drops `n` bytes that are known to be queued.
fn consume(fd: impl AsFd, mut n: usize) {
    let mut scratch = [0u8; 2048];
    while n > 0 {
        let want = n.min(scratch.len());
        match rustix::net::recv(&fd, &mut scratch[..want], RecvFlags::DONTWAIT) {
            Ok((got, _)) if got > 0 => n -= got.min(n),
            _ => return,
        }
    }
}

/// Serves `fd` at once if its whole frame is queued; otherwise gives it back (with its slot)
/// for a connection task. `buf` is scratch space of at least [`frame::MAX_FRAME`] bytes, kept
/// by the caller across connections. `others_waiting` tells whether another client is waiting
/// to be accepted (see [`crate::store::StoreHandle::store_for`]).
pub fn serve(
    fd: OwnedFd,
    slot: Option<OwnedSemaphorePermit>,
    buf: &mut [u8],
    shared: &Shared,
    others_waiting: impl FnOnce() -> bool,
) -> Result<(), (OwnedFd, Option<OwnedSemaphorePermit>)> {
    let mut len = complete_frame(&fd, buf);
    // The sender's connect woke this thread, and the kernel may have run it at once on the
    // sender's CPU, before the sender wrote its frame (a few µs after the connect). Yielding
    // once lets such a sender finish; its frame is then whole and served here, instead of by
    // a task (epoll registration, a task, four reads, a hand-off to the writer: 58 µs more
    // per record, traced, and about one lone record in four went that way). Only when the
    // store is idle: under load the runtime has other work, and a yield would put its accept
    // loop behind every busy thread (8 senders -15 % when yielding regardless).
    if len.is_none() && shared.store.idle() && nothing_queued(&fd) {
        std::thread::yield_now();
        len = complete_frame(&fd, buf);
    }
    let Some(len) = len else {
        return Err((fd, slot));
    };
    let peer = Peer::of(&fd).ok();
    let stats = &shared.stats;
    stats.bump(&stats.received);
    let conn = Accepted {
        fd,
        unread: len,
        stats: stats.clone(),
        _slot: slot,
    };
    match handler::prepare(shared, &buf[..len], peer) {
        Ok(file) => shared.store.store_for(file, conn, others_waiting),
        Err(status) => conn.finish(status),
    }
    Ok(())
}

/// Whether not a single byte has arrived on `fd` yet.
fn nothing_queued(fd: impl AsFd) -> bool {
    let mut b = [0u8; 1];
    matches!(
        rustix::net::recv(&fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Err(rustix::io::Errno::AGAIN)
    )
}

/// The frame's length when all of it is queued on `fd` (peeked into `buf`, not consumed).
fn complete_frame(fd: impl AsFd, buf: &mut [u8]) -> Option<usize> {
    let want = buf.len().min(frame::MAX_FRAME);
    let (got, _) =
        rustix::net::recv(&fd, &mut buf[..want], RecvFlags::PEEK | RecvFlags::DONTWAIT).ok()?;
    // Only what this peek returned: the buffer still holds the previous connection's bytes.
    let prefix: [u8; 4] = buf[..got].get(..4)?.try_into().ok()?;
    let len = frame::declared_len(prefix).ok()?;
    (got >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn frame_bytes() -> Vec<u8> {
        let r = telemetry::Record::new(1, "org.test/fast/path", 1, telemetry::SysInfo::cached())
            .unwrap();
        frame::encode(&r, None).unwrap()
    }

    #[test]
    fn a_whole_frame_is_seen_and_left_queued() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let bytes = frame_bytes();
        client.write_all(&bytes).unwrap();
        let mut buf = vec![0u8; frame::MAX_FRAME];
        assert_eq!(complete_frame(&server, &mut buf), Some(bytes.len()));
        assert_eq!(&buf[..bytes.len()], &bytes[..]);
        // Only peeked: the same bytes are still there.
        assert_eq!(complete_frame(&server, &mut buf), Some(bytes.len()));
    }

    #[test]
    fn a_partial_frame_a_silent_client_and_a_bad_size_go_to_the_task() {
        let mut buf = vec![0u8; frame::MAX_FRAME];
        let bytes = frame_bytes();
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        // The buffer holds a whole earlier frame: none of it may count for this connection.
        buf[..bytes.len()].copy_from_slice(&bytes);
        assert_eq!(complete_frame(&server, &mut buf), None, "nothing sent");
        assert!(nothing_queued(&server));
        client.write_all(&bytes[..2]).unwrap();
        assert_eq!(complete_frame(&server, &mut buf), None, "not even the size");
        assert!(!nothing_queued(&server), "two bytes are there");
        client.write_all(&bytes[2..bytes.len() - 1]).unwrap();
        assert_eq!(complete_frame(&server, &mut buf), None, "one byte short");
        let (mut client, server) = UnixStream::pair().unwrap();
        client.write_all(&u32::MAX.to_le_bytes()).unwrap();
        client.write_all(&[0u8; 64]).unwrap();
        assert_eq!(complete_frame(&server, &mut buf), None, "oversized");
    }

    #[test]
    fn finishing_answers_consumes_the_frame_and_closes() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let bytes = frame_bytes();
        client.write_all(&bytes).unwrap();
        client.write_all(b"trailing").unwrap();
        let stats = Arc::new(Stats::default());
        let conn = Accepted {
            fd: server.into(),
            unread: bytes.len(),
            stats: stats.clone(),
            _slot: None,
        };
        conn.finish(-22);
        let mut answer = Vec::new();
        // The status word, then the end of stream or a reset (the trailing bytes were not ours
        // to read): either way, the word came first.
        let _ = client.read_to_end(&mut answer);
        assert_eq!(&answer[..4], &(-22i32).to_le_bytes());
        assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
