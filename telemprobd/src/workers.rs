//! Up to N OS threads that take items from one shared queue: the spool writer hands each
//! written record to them so that several records' syncs are in flight at once (see
//! `store`). Knows nothing about spools: it runs a function on items and counts what is
//! still in hand.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The threads and the queue in front of them. Threads are started as items need them (an item
/// queued with no thread waiting for it starts one, up to the limit) and end after
/// [`crate::THREAD_KEEP_ALIVE`] without an item.
pub struct Workers<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    /// Items submitted and not yet finished (queued or being worked on).
    busy: Arc<AtomicUsize>,
    work: Arc<dyn Fn(T) + Send + Sync>,
    name: String,
    max: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
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
    /// Threads running.
    live: usize,
    /// Threads waiting for an item.
    waiting: usize,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // A panic while holding the lock cannot leave the queue inconsistent (push/pop only).
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Send + 'static> Workers<T> {
    /// Up to `n` threads named `name` (small stacks: the work is a few syscalls) that call
    /// `work` on each item, started as items come. With `n` = 0, or when no thread can be
    /// started, [`Workers::submit`] gives the item back.
    pub fn start(n: usize, name: &str, work: impl Fn(T) + Send + Sync + 'static) -> Workers<T> {
        Workers {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    items: VecDeque::new(),
                    closed: false,
                    live: 0,
                    waiting: 0,
                }),
                ready: Condvar::new(),
            }),
            busy: Arc::new(AtomicUsize::new(0)),
            work: Arc::new(work),
            name: name.to_string(),
            max: n,
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Queues `item` for the next free thread (starting one if none is free and fewer than
    /// the limit run), or gives it back when no thread runs.
    ///
    /// # Errors
    /// No worker thread is running: the caller does the work itself.
    pub fn submit(&self, item: T) -> Result<(), T> {
        if self.max == 0 {
            return Err(item);
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        let mut queue = self.shared.lock();
        queue.items.push_back(item);
        let spawn = queue.items.len() > queue.waiting && queue.live < self.max;
        if spawn {
            queue.live += 1;
        }
        drop(queue);
        if spawn {
            let (shared, work, busy) = (self.shared.clone(), self.work.clone(), self.busy.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{}", self.name, self.live_index()))
                .stack_size(64 * 1024)
                .spawn(move || run(&shared, &*work, &busy));
            match spawned {
                Ok(t) => {
                    let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
                    threads.retain(|t| !t.is_finished());
                    threads.push(t);
                }
                Err(e) => {
                    tracing::warn!(error = %e, thread = %self.name, "worker thread not started");
                    let mut queue = self.shared.lock();
                    queue.live -= 1;
                    if queue.live == 0 {
                        // Nobody to take it: the last item queued is this one.
                        if let Some(item) = queue.items.pop_back() {
                            self.busy.fetch_sub(1, Ordering::AcqRel);
                            return Err(item);
                        }
                    }
                }
            }
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// A number for a new thread's name.
    fn live_index(&self) -> usize {
        self.shared.lock().live.saturating_sub(1)
    }

    /// Nothing queued and nothing being worked on.
    pub fn idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }

    /// Finishes every item submitted so far, then stops the threads.
    pub fn finish(self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// One thread: takes items until the queue is closed and empty, or none came for the
/// keep-alive.
fn run<T>(shared: &Shared<T>, work: &(dyn Fn(T) + Send + Sync), busy: &AtomicUsize) {
    loop {
        let item = {
            let mut queue = shared.lock();
            loop {
                if let Some(item) = queue.items.pop_front() {
                    break item;
                }
                if queue.closed {
                    queue.live -= 1;
                    return;
                }
                queue.waiting += 1;
                let (q, waited) = shared
                    .ready
                    .wait_timeout(queue, crate::THREAD_KEEP_ALIVE)
                    .unwrap_or_else(|p| p.into_inner());
                queue = q;
                queue.waiting -= 1;
                if waited.timed_out() && queue.items.is_empty() && !queue.closed {
                    queue.live -= 1;
                    return;
                }
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

    /// Threads of this process whose name starts with `prefix`.
    fn threads_named(prefix: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
            .count()
    }

    #[test]
    fn threads_start_as_items_need_them_and_end_when_idle() {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        let w = Workers::start(4, "lazyw", move |()| {
            let _ = go_rx.lock().unwrap().recv();
        });
        assert_eq!(threads_named("lazyw"), 0, "none before the first item");
        w.submit(()).unwrap();
        // A thread names itself once it runs.
        let named = |n: usize| {
            let start = std::time::Instant::now();
            while threads_named("lazyw") != n {
                assert!(start.elapsed() < Duration::from_secs(20), "not {n} threads");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        named(1);
        // Two more while the first is busy: each finds no free thread and starts one.
        w.submit(()).unwrap();
        w.submit(()).unwrap();
        named(3);
        for _ in 0..3 {
            go_tx.send(()).unwrap();
        }
        // Idle past the keep-alive (300 ms in tests): they end.
        let start = std::time::Instant::now();
        while threads_named("lazyw") > 0 {
            assert!(start.elapsed() < Duration::from_secs(20), "threads stay");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(w.idle());
        // And the next item starts one again.
        w.submit(()).unwrap();
        go_tx.send(()).unwrap();
        w.finish();
    }

    #[test]
    fn without_threads_items_come_back() {
        let w = Workers::start(0, "test", |_: u8| unreachable!());
        assert_eq!(w.submit(7), Err(7));
        assert!(w.idle());
        w.finish();
    }
}
