//! One client connection: read one frame (bounded in time and size), decide, answer.
//!
//! The answer is the 4-byte little-endian status word: 0 once the record is durably spooled,
//! else a negative errno. Every malformed input gets an answer when the client can still read
//! one, and none of it reaches the spool.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::net::RecvFlags;
use telemetry::config::RateLimitStrategy;
use telemetry::error::libc_errno;
use telemetry::{frame, optin, spool, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::{timeout_at, Instant};

use crate::fair::Ticket;
use crate::machineid::MachineId;
pub use crate::peer::Peer;
use crate::ratelimit::PerUid;
use crate::stats::Stats;
use crate::store::{SpoolFile, StoreHandle};

/// How long writing the 4-byte answer may take (it fits any socket buffer; this only guards
/// against a pathological peer).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// State every connection shares.
pub struct Shared {
    /// The current configuration (replaced on SIGHUP).
    pub config: watch::Receiver<Arc<Config>>,
    /// Rate-limit windows, one set per sending uid. A std `Mutex`: held for a few comparisons,
    /// never across `.await`.
    pub limiter: Mutex<PerUid>,
    /// The id substituted into records.
    pub machine_id: Arc<MachineId>,
    /// Counters for the status file.
    pub stats: Arc<Stats>,
    /// The spool writer.
    pub store: StoreHandle,
    /// Our own uid: a `CFG:` path is honoured from it and from root only.
    pub own_uid: u32,
    /// Time a client has to send its whole frame.
    pub client_timeout: Duration,
    /// Time a client has to send its first byte (capped by `client_timeout`).
    pub first_byte_timeout: Duration,
    /// Whether the first ignored `CFG:` path was logged at warn level already (later ones are
    /// logged at debug, so a client cannot flood the log).
    pub cfg_warned: AtomicBool,
}

/// Serves one connection. Never fails: whatever happens stays with this connection.
///
/// `ticket` is the connection's place among its uid's (see [`crate::fair`]): until the whole
/// frame is in, the daemon may ask the connection to go, to make room for another.
pub async fn handle(
    mut stream: UnixStream,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    ticket: Option<Ticket>,
) {
    let start = Instant::now();
    let deadline = start + shared.client_timeout;
    // A sender writes its frame right after connecting: one that has sent nothing by now is
    // idle, and holds a place others may need.
    let first_deadline = start + shared.first_byte_timeout.min(shared.client_timeout);
    let peer = stream.peer_cred().ok().map(Peer::from);
    let stats = &shared.stats;

    // The first bytes race the stop signal: a client that has sent nothing yet is simply
    // closed at shutdown; one that started a frame gets to finish it.
    let mut prefix = [0u8; 4];
    let first = tokio::select! {
        r = timeout_at(first_deadline, stream.read(&mut prefix)) => Some(r),
        _ = stop.wait_for(|s| *s) => return,
        () = evicted(ticket.as_ref()) => None,
    };
    let got = match first {
        Some(Ok(Ok(0))) => return, // connected and closed without a word
        Some(Ok(Ok(n))) => n,
        Some(Ok(Err(e))) => {
            tracing::debug!(error = %e, "read error");
            return;
        }
        Some(Err(_)) => {
            stats.bump(&stats.timed_out);
            tracing::debug!(?peer, "client sent nothing in time; dropped");
            answer(&mut stream, -libc_errno::ETIMEDOUT).await;
            return;
        }
        None => {
            dropped_for_room(&mut stream, stats, peer).await;
            return;
        }
    };
    let read = tokio::select! {
        r = read_frame(&mut stream, prefix, got, deadline, stats, peer) => Some(r),
        () = evicted(ticket.as_ref()) => None,
    };
    let buf = match read {
        Some(Ok(buf)) => buf,
        Some(Err(status)) => {
            answer(&mut stream, status).await;
            return;
        }
        None => {
            dropped_for_room(&mut stream, stats, peer).await;
            return;
        }
    };
    // The frame is in: from here on the record is being decided and stored, never cut short.
    drop(ticket);
    stats.bump(&stats.received);
    let (status, answered) = match prepare(&shared, &buf, peer) {
        // The writer answers the sender itself, on a duplicate of the connection.
        Ok(file) => {
            let fd = stream.as_fd().try_clone_to_owned().ok();
            let s = shared.store.store_answering(file, fd).await;
            (s.status, s.answered)
        }
        Err(status) => (status, false),
    };
    stats.count(status);
    if !answered {
        answer(&mut stream, status).await;
    }
    // Now consume the held-back byte, so the close is a clean end of stream.
    let _ = stream.try_read(&mut [0u8; 1]);
}

/// Resolves when the connection is asked to make room (never without a ticket).
async fn evicted(ticket: Option<&Ticket>) {
    match ticket {
        Some(t) => t.evicted().await,
        None => std::future::pending().await,
    }
}

/// Closes a connection that had to make room, with -ETIMEDOUT: it was idle or too slow while
/// others waited, and nothing of it was stored (a sender may try again).
async fn dropped_for_room(stream: &mut UnixStream, stats: &Stats, peer: Option<Peer>) {
    stats.bump(&stats.evicted);
    tracing::debug!(
        ?peer,
        "idle or slow connection closed to make room for others"
    );
    answer(stream, -libc_errno::ETIMEDOUT).await;
}

/// Reads the rest of a frame whose first `got` bytes are in `prefix`; on failure returns the
/// status to answer.
async fn read_frame(
    stream: &mut UnixStream,
    mut prefix: [u8; 4],
    got: usize,
    deadline: Instant,
    stats: &Stats,
    peer: Option<Peer>,
) -> Result<Vec<u8>, i32> {
    if got < 4 {
        read_rest(stream, &mut prefix[got..], deadline, stats).await?;
    }
    let len = match frame::declared_len(prefix) {
        Ok(n) => n,
        Err(e) => {
            stats.bump(&stats.rejected);
            tracing::debug!(?peer, error = %e, "bad frame size");
            return Err(-e.errno());
        }
    };
    // Sized by the declared length, which is capped at MAX_FRAME (under 30 KiB).
    let mut buf = vec![0u8; len];
    buf[..4].copy_from_slice(&prefix);
    // The last byte (the frame's NUL) is only peeked, not consumed, until the answer is out:
    // if the daemon dies before answering, the kernel then resets the connection (unread data)
    // instead of closing it cleanly, so the client sees an error rather than the end of stream
    // that it must take as success from the original daemon. (len >= MIN_FRAME = 9.)
    let last = len - 1;
    read_rest(stream, &mut buf[4..last], deadline, stats).await?;
    buf[last] = peek_byte(stream, deadline, stats).await?;
    Ok(buf)
}

/// Waits for one more byte and returns it without consuming it.
async fn peek_byte(stream: &UnixStream, deadline: Instant, stats: &Stats) -> Result<u8, i32> {
    loop {
        if timeout_at(deadline, stream.readable()).await.is_err() {
            stats.bump(&stats.timed_out);
            tracing::debug!("client too slow to send its frame; dropped");
            return Err(-libc_errno::ETIMEDOUT);
        }
        let mut b = [0u8; 1];
        let peeked = stream.try_io(Interest::READABLE, || {
            rustix::net::recv(stream, &mut b[..], RecvFlags::PEEK)
                .map(|(n, _)| n)
                .map_err(std::io::Error::from)
        });
        match peeked {
            Ok(1) => return Ok(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(_) | Err(_) => {
                stats.bump(&stats.rejected);
                tracing::debug!("frame ended early");
                return Err(-libc_errno::EINVAL);
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes before `deadline`; on failure returns the status to answer.
async fn read_rest(
    stream: &mut UnixStream,
    buf: &mut [u8],
    deadline: Instant,
    stats: &Stats,
) -> Result<(), i32> {
    match timeout_at(deadline, stream.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            stats.bump(&stats.rejected);
            tracing::debug!(error = %e, "frame ended early");
            Err(-libc_errno::EINVAL)
        }
        Err(_) => {
            stats.bump(&stats.timed_out);
            tracing::debug!("client too slow to send its frame; dropped");
            Err(-libc_errno::ETIMEDOUT)
        }
    }
}

/// Checks a complete frame and builds the spool file, or returns the status to answer.
pub(crate) fn prepare(shared: &Shared, bytes: &[u8], peer: Option<Peer>) -> Result<SpoolFile, i32> {
    let config = shared.config.borrow().clone();
    let stats = &shared.stats;
    if !optin::is_opted_in(&config) {
        stats.bump(&stats.refused_not_opted_in);
        tracing::debug!("not opted in; record refused");
        return Err(-libc_errno::ECONNREFUSED);
    }
    let frame = frame::decode(bytes).map_err(|e| {
        tracing::debug!(?peer, error = %e, "malformed frame");
        -e.errno()
    })?;
    let mut record = frame.record;
    record.validate().map_err(|e| {
        tracing::debug!(?peer, error = %e, "invalid record");
        -e.errno()
    })?;
    // As received: a byte-identical resend has the same identity whatever machine id the
    // daemon substitutes (it rotates).
    let identity = record.identity();
    record
        .set_machine_id(&shared.machine_id.get())
        .map_err(|e| {
            tracing::warn!(error = %e, "machine id not usable");
            -libc_errno::EIO
        })?;
    tracing::debug!(
        uid = peer.map(|p| p.uid),
        gid = peer.map(|p| p.gid),
        pid = peer.and_then(|p| p.pid),
        classification = record.get(telemetry::record::Header::Classification),
        event_id = record.get(telemetry::record::Header::EventId),
        "record received"
    );

    let cfg = match frame.cfg {
        Some(path) if peer.is_some_and(|p| p.uid == 0 || p.uid == shared.own_uid) => Some(path),
        Some(path) => {
            let uid = peer.map(|p| p.uid);
            if shared.cfg_warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(?uid, cfg = %path.display(), "CFG: path from an unprivileged sender ignored");
            } else {
                tracing::warn!(?uid, cfg = %path.display(),
                    "CFG: path from an unprivileged sender ignored (further cases are logged at debug level)");
            }
            None
        }
        None => None,
    };

    let minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0);
    // Each uid has windows of its own: one user's flood uses up its own limit, never root's
    // or another user's. A sender whose uid cannot be told shares the windows of uid "none".
    let uid = peer.map(|p| p.uid);
    let bytes = record.payload().len() as u64;
    let admitted = match shared.limiter.lock() {
        Ok(mut l) => l.admit(uid, minute, bytes),
        Err(p) => p.into_inner().admit(uid, minute, bytes),
    };
    if !admitted {
        stats.bump(&stats.rate_limited);
        match config.rate_limit_strategy {
            RateLimitStrategy::Drop => {
                tracing::debug!("rate limited; dropped");
                return Err(-libc_errno::EBUSY);
            }
            // "spool" for telemprobd: keep it; telempostd paces delivery.
            RateLimitStrategy::Spool => tracing::debug!("rate limited; spooled anyway"),
        }
    }
    Ok(SpoolFile {
        data: spool::encode(&record, cfg.as_deref()),
        identity: Some(identity),
    })
}

/// Sends the status word. The peer may be gone; that is its business.
async fn answer(stream: &mut UnixStream, status: i32) {
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.write_all(&status.to_le_bytes())).await;
}
