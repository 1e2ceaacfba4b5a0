//! Fair sharing of connection slots among the users that send (`SO_PEERCRED` uid).
//!
//! The socket is open to every local user, so one user must not be able to hold every slot
//! with connections that send nothing (or a byte now and then) while the other users' senders
//! wait in the backlog until their own timeout. Each connection served by a task (one whose
//! frame was not whole at accept) holds a [`Ticket`] under its uid:
//!
//! - a uid has at most `per_uid` tickets. A further connection of that uid is *parked*: its
//!   descriptor is kept, unread and unregistered, until one of the uid's tickets is given back;
//!   then the oldest parked connection of the uid gets the ticket. Parking rather than closing
//!   matters: a closed connection is reopened at once by a hostile sender, and such churn fills
//!   the kernel's accept queue in front of everyone else (closing them let 82 % of another
//!   user's records through in the abuse test, parking 100 %);
//! - parked connections are bounded in all (descriptors): past the bound the oldest of the uid
//!   with the most parked is answered -ETIMEDOUT and closed;
//! - when every task slot of the daemon is taken, the oldest task of the uid holding the most
//!   is asked to go, so a newcomer of another uid gets a slot at once.
//!
//! A well-behaved sender writes its frame right after connecting and is served at accept
//! (`crate::fast`) without a ticket at all.

use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, Notify};

/// Task-served connections of one uid, oldest first.
type Queue = VecDeque<(u64, Arc<Notify>)>;

/// A parked connection given its ticket: the accept loop serves it as if just accepted.
pub type Promoted = (OwnedFd, Ticket);

/// The registry of connections by uid.
#[derive(Debug)]
pub struct Fair {
    per_uid: usize,
    max_parked: usize,
    promote: mpsc::UnboundedSender<Promoted>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_uid: HashMap<u32, Queue>,
    parked: HashMap<u32, VecDeque<OwnedFd>>,
    parked_total: usize,
}

impl Inner {
    fn ticket(&mut self, fair: &Arc<Fair>, uid: u32) -> Ticket {
        let evicted = Arc::new(Notify::new());
        let id = self.next_id;
        self.next_id += 1;
        self.by_uid
            .entry(uid)
            .or_default()
            .push_back((id, evicted.clone()));
        Ticket {
            fair: fair.clone(),
            uid,
            id,
            evicted,
        }
    }
}

/// One connection's place; dropping it (the connection closed) frees the place.
#[derive(Debug)]
pub struct Ticket {
    fair: Arc<Fair>,
    uid: u32,
    id: u64,
    evicted: Arc<Notify>,
}

impl Ticket {
    /// Resolves when the connection has to go to make room (cancel-safe; a request made
    /// before anyone waits is kept).
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let fair = self.fair.clone();
        let mut inner = fair.lock();
        let mut was_held = false;
        if let Some(q) = inner.by_uid.get_mut(&self.uid) {
            let before = q.len();
            q.retain(|(id, _)| *id != self.id);
            was_held = q.len() < before;
            if q.is_empty() {
                inner.by_uid.remove(&self.uid);
            }
        }
        // The place is free: the uid's oldest parked connection takes it. (An evicted ticket
        // gave its place up already, to another uid. Once the daemon stops taking promoted
        // connections, none is promoted: the parked are closed with the registry, instead of
        // each dropped promotion promoting the next, recursively.)
        if !was_held || fair.promote.is_closed() {
            return;
        }
        let next = inner
            .parked
            .get_mut(&self.uid)
            .and_then(VecDeque::pop_front);
        if let Some(fd) = next {
            inner.parked_total -= 1;
            if inner.parked.get(&self.uid).is_some_and(VecDeque::is_empty) {
                inner.parked.remove(&self.uid);
            }
            let ticket = inner.ticket(&fair, self.uid);
            drop(inner);
            // The receiver is gone only when the daemon stops: the connection is then closed.
            let _ = fair.promote.send((fd, ticket));
        }
    }
}

/// What [`Fair::admit`] decided.
#[derive(Debug)]
pub enum Admitted {
    /// Serve it now.
    Serve(OwnedFd, Ticket),
    /// Kept unread until the uid has a free place (or dropped, past the bound).
    Parked,
}

impl Fair {
    /// A registry allowing `per_uid` tickets per uid (at least one) and `max_parked` parked
    /// connections in all; parked connections that get a ticket come out of the receiver.
    pub fn new(
        per_uid: usize,
        max_parked: usize,
    ) -> (Arc<Fair>, mpsc::UnboundedReceiver<Promoted>) {
        let (promote, rx) = mpsc::unbounded_channel();
        let fair = Arc::new(Fair {
            per_uid: per_uid.max(1),
            max_parked,
            promote,
            inner: Mutex::new(Inner::default()),
        });
        (fair, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection of `uid` whose frame is not whole yet: a ticket, or parked when the uid
    /// has all its places taken.
    pub fn admit(self: &Arc<Self>, uid: u32, fd: OwnedFd) -> Admitted {
        let mut inner = self.lock();
        let held = inner.by_uid.get(&uid).map_or(0, VecDeque::len);
        let waiting = inner.parked.get(&uid).is_some_and(|q| !q.is_empty());
        if held < self.per_uid && !waiting {
            let t = inner.ticket(self, uid);
            return Admitted::Serve(fd, t);
        }
        inner.parked.entry(uid).or_default().push_back(fd);
        inner.parked_total += 1;
        while inner.parked_total > self.max_parked {
            let Some(big) = inner
                .parked
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(uid, _)| *uid)
            else {
                break;
            };
            let old = inner.parked.get_mut(&big).and_then(VecDeque::pop_front);
            if inner.parked.get(&big).is_some_and(VecDeque::is_empty) {
                inner.parked.remove(&big);
            }
            match old {
                Some(fd) => {
                    inner.parked_total -= 1;
                    // Answered, so the sender does not take the close for success.
                    crate::fast::send_status(&fd, -telemetry::error::libc_errno::ETIMEDOUT);
                }
                None => break,
            }
        }
        Admitted::Parked
    }

    /// Asks the oldest connection of the uid holding the most tickets to go (every slot is
    /// taken). False when no ticket is out (the slots are held by records being stored).
    pub fn evict_from_largest(&self) -> bool {
        let mut inner = self.lock();
        let Some(uid) = inner
            .by_uid
            .iter()
            .max_by_key(|(_, q)| q.len())
            .map(|(uid, _)| *uid)
        else {
            return false;
        };
        let Some(q) = inner.by_uid.get_mut(&uid) else {
            return false;
        };
        let old = q.pop_front();
        if q.is_empty() {
            inner.by_uid.remove(&uid);
        }
        match old {
            Some((_, n)) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// Tickets out for `uid` (tests, logs).
    pub fn held_by(&self, uid: u32) -> usize {
        self.lock().by_uid.get(&uid).map_or(0, VecDeque::len)
    }

    /// Connections parked in all.
    pub fn parked(&self) -> usize {
        self.lock().parked_total
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;

    async fn gone(t: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(1), t.evicted())
            .await
            .is_ok()
    }

    fn conn() -> (OwnedFd, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a.into(), b)
    }

    fn serve(a: Admitted) -> Ticket {
        match a {
            Admitted::Serve(_, t) => t,
            Admitted::Parked => panic!("parked"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn past_its_places_a_uid_waits_and_others_do_not() {
        let (f, mut promoted) = Fair::new(2, 100);
        let a: Vec<Ticket> = (0..2).map(|_| serve(f.admit(1000, conn().0))).collect();
        let (fd, _peer) = conn();
        assert!(matches!(f.admit(1000, fd), Admitted::Parked));
        assert_eq!(f.parked(), 1);
        let root = serve(f.admit(0, conn().0));
        assert_eq!(f.held_by(1000), 2);
        assert!(promoted.try_recv().is_err());
        drop(a);
        let (_fd, t) = promoted
            .try_recv()
            .expect("the parked connection gets the place");
        assert_eq!(f.parked(), 0);
        assert_eq!(f.held_by(1000), 1);
        assert!(!gone(&t).await && !gone(&root).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parked_connections_are_bounded_and_the_largest_gives_way() {
        let (f, _promoted) = Fair::new(1, 3);
        let _t = serve(f.admit(61234, conn().0));
        let _u = serve(f.admit(0, conn().0));
        let mut peers = Vec::new();
        for _ in 0..3 {
            let (fd, peer) = conn();
            assert!(matches!(f.admit(61234, fd), Admitted::Parked));
            peers.push(peer);
        }
        let (fd, _root_peer) = conn();
        assert!(matches!(f.admit(0, fd), Admitted::Parked));
        assert_eq!(f.parked(), 3, "bounded");
        // The oldest parked of uid 61234 was answered -ETIMEDOUT and closed.
        let mut word = [0u8; 4];
        use std::io::Read;
        peers[0].read_exact(&mut word).unwrap();
        assert_eq!(i32::from_le_bytes(word), -110);
        assert_eq!(peers[0].read(&mut word).unwrap(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn when_full_the_largest_holder_gives_way() {
        let (f, mut promoted) = Fair::new(10, 100);
        let big: Vec<Ticket> = (0..4).map(|_| serve(f.admit(61234, conn().0))).collect();
        let small = serve(f.admit(0, conn().0));
        assert!(f.evict_from_largest());
        assert!(gone(&big[0]).await);
        assert!(!gone(&small).await);
        assert_eq!(f.held_by(61234), 3);
        drop(big);
        assert!(promoted.try_recv().is_err());
        assert!(f.evict_from_largest());
        assert!(gone(&small).await);
        assert!(!f.evict_from_largest(), "nothing left");
    }
}
