//! A fixed set of OS threads that take items from one shared queue: the spool writer hands each
//! written record to them so that several records' syncs are in flight at once (see
//! `store`). Knows nothing about spools: it runs a function on items and counts what is
//! still in hand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The threads and the queue in front of them.
pub struct Workers<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    /// Items submitted and not yet finished (queued or being worked on).
    busy: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

/// The queue, and the condition idle threads wait on. A queue under a mutex with a condition
/// variable wakes exactly one thread per item; a shared `mpsc::Receiver` behind a mutex woke
/// two (the one blocked in `recv`, then the next one waiting for the lock to block there).
struct Shared<T> {
    queue: Mutex<Queue<T>>,
    ready: Condvar,
}

struct Queue<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // A panic while holding the lock cannot leave the queue inconsistent (push/pop only).
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Send + 'static> Workers<T> {
    /// Starts up to `n` threads named `name` (small stacks: the work is a few syscalls) that
    /// call `work` on each item. Threads that cannot be started are logged and done without;
    /// with none at all, [`Workers::submit`] gives every item back.
    pub fn start(n: usize, name: &str, work: impl Fn(T) + Send + Sync + 'static) -> Workers<T> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let work = Arc::new(work);
        let busy = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (shared, work, busy) = (shared.clone(), work.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .stack_size(64 * 1024)
                .spawn(move || run(&shared, &*work, &busy));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    tracing::warn!(error = %e, thread = name, "worker thread not started");
                    break;
                }
            }
        }
        Workers {
            shared,
            busy,
            threads,
        }
    }

    /// Queues `item` for the next free thread, or gives it back when no thread runs.
    ///
    /// # Errors
    /// No worker thread is running: the caller does the work itself.
    pub fn submit(&self, item: T) -> Result<(), T> {
        if self.threads.is_empty() {
            return Err(item);
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.shared.lock().items.push_back(item);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Nothing queued and nothing being worked on.
    pub fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Finishes every item submitted so far, then stops the threads.
    pub fn finish(mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One thread: takes items until the queue is closed and empty.
fn run<T>(shared: &Shared<T>, work: &(impl Fn(T) + ?Sized), busy: &AtomicUsize) {
    loop {
        let item = {
            let mut queue = shared.lock();
            loop {
                if let Some(item) = queue.items.pop_front() {
                    break item;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        // A panic loses this item (dropping it closes whatever it holds, e.g. a sender's
        // connection, which the sender sees as an error) but not the thread, nor the count
        // that `idle` relies on.
        let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(item)));
        if worked.is_err() {
            tracing::error!("a worker's job panicked; it was dropped");
        }
        busy.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_item_is_worked_on_once_and_finish_waits_for_all() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = Workers::start(4, "test", move |i: u32| {
            std::thread::sleep(Duration::from_millis(1));
            s.lock().unwrap().push(i);
        });
        for i in 0..100 {
            w.submit(i).unwrap();
        }
        w.finish();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn idle_only_when_nothing_is_queued_or_running() {
        let (go_tx, go_rx) = std::sync::mpsc::sync_channel::<()>(0);
        let go_rx = Mutex::new(go_rx);
        let w = Workers::start(1, "test", move |()| {
            let _ = go_rx.lock().unwrap().recv();
        });
        assert!(w.idle());
        w.submit(()).unwrap();
        w.submit(()).unwrap();
        assert!(!w.idle());
        go_tx.send(()).unwrap();
        assert!(!w.idle(), "one item is still queued");
        go_tx.send(()).unwrap();
        // The counter drops just after the work returns.
        let start = std::time::Instant::now();
        while !w.idle() {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        w.finish();
    }

    #[test]
    fn a_panicking_item_is_dropped_and_the_threads_go_on() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let w = Workers::start(2, "test", move |i: u32| {
            assert_ne!(i % 10, 3, "item {i} panics");
            d.fetch_add(1, Ordering::SeqCst);
        });
        for i in 0..50 {
            w.submit(i).unwrap();
        }
        let start = std::time::Instant::now();
        while !w.idle() {
            assert!(start.elapsed() < Duration::from_secs(10), "count stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
        w.finish();
        assert_eq!(done.load(Ordering::SeqCst), 45);
    }

    #[test]
    fn without_threads_items_come_back() {
        let w = Workers::start(0, "test", |_: u8| unreachable!());
        assert_eq!(w.submit(7), Err(7));
        assert!(w.idle());
        w.finish();
    }
}
