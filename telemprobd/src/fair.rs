//! Fair sharing of connection slots among the users that send (`SO_PEERCRED` uid).
//!
//! The socket is open to every local user, so one user must not be able to hold every slot
//! with connections that send nothing (or a byte now and then) while the other users' senders
//! wait in the backlog until their own timeout. Each connection served by a task (one whose
//! frame was not whole at accept) holds a [`Ticket`] under its uid:
//!
//! - a uid holds at most `per_uid` of them: a new connection of a uid at its cap makes that
//!   uid's oldest connection go (answered -ETIMEDOUT and closed);
//! - when every slot of the daemon is taken, the oldest connection of the uid holding the most
//!   is asked to go, so a newcomer of another uid gets a slot at once.
//!
//! A well-behaved sender writes its frame right after connecting and is served within
//! microseconds, so it is never the oldest for long: what goes first is what idles longest.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// Connections of one uid, oldest first.
type Queue = VecDeque<(u64, Arc<Notify>)>;

/// The registry of task-served connections by uid.
#[derive(Debug)]
pub struct Fair {
    per_uid: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_uid: HashMap<u32, Queue>,
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
        let mut inner = self.fair.lock();
        if let Some(q) = inner.by_uid.get_mut(&self.uid) {
            q.retain(|(id, _)| *id != self.id);
            if q.is_empty() {
                inner.by_uid.remove(&self.uid);
            }
        }
    }
}

impl Fair {
    /// A registry allowing `per_uid` connections per uid (at least one).
    pub fn new(per_uid: usize) -> Arc<Fair> {
        Arc::new(Fair {
            per_uid: per_uid.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection of `uid`, asking that uid's oldest to go when it is at its cap.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Ticket {
        let evicted = Arc::new(Notify::new());
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let q = inner.by_uid.entry(uid).or_default();
        while q.len() >= self.per_uid {
            if let Some((_, old)) = q.pop_front() {
                old.notify_one();
            }
        }
        q.push_back((id, evicted.clone()));
        drop(inner);
        Ticket {
            fair: self.clone(),
            uid,
            id,
            evicted,
        }
    }

    /// Asks the oldest connection of the uid holding the most to go (every slot is taken).
    /// False when no connection is registered (the slots are held by records being stored).
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

    /// Connections registered for `uid` (tests, logs).
    pub fn held_by(&self, uid: u32) -> usize {
        self.lock().by_uid.get(&uid).map_or(0, VecDeque::len)
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

    #[tokio::test(flavor = "current_thread")]
    async fn a_uid_at_its_cap_loses_its_oldest_connection_and_others_keep_theirs() {
        let f = Fair::new(3);
        let a: Vec<Ticket> = (0..3).map(|_| f.admit(1000)).collect();
        let root = f.admit(0);
        assert_eq!(f.held_by(1000), 3);
        let newest = f.admit(1000);
        assert!(gone(&a[0]).await, "the oldest of uid 1000 goes");
        assert!(!gone(&a[1]).await && !gone(&a[2]).await && !gone(&newest).await);
        assert!(!gone(&root).await, "another uid is not touched");
        assert_eq!(f.held_by(1000), 3);
        drop(a);
        assert_eq!(f.held_by(1000), 1, "closing frees the places");
        drop(newest);
        assert_eq!(f.held_by(1000), 0);
        assert_eq!(f.held_by(0), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn when_full_the_largest_holder_gives_way() {
        let f = Fair::new(10);
        let big: Vec<Ticket> = (0..4).map(|_| f.admit(61234)).collect();
        let small = f.admit(0);
        assert!(f.evict_from_largest());
        assert!(gone(&big[0]).await);
        assert!(!gone(&small).await);
        assert_eq!(f.held_by(61234), 3);
        drop(big);
        assert!(f.evict_from_largest());
        assert!(gone(&small).await);
        assert!(!f.evict_from_largest(), "nothing left");
    }
}
