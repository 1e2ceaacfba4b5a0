//! The accept loop and the daemon's lifetime: start the spool writer, accept clients (capped),
//! apply reloaded configs, keep the machine id and status file fresh, exit when idle (if
//! recycling is on) or when told to, without losing any accepted record.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telemetry::Config;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};

use crate::fair::{Admitted, Fair, Ticket};
use crate::fast;
use crate::handler::{self, Shared};
use crate::listener::Listener;
use crate::machineid::{self, MachineId};
use crate::peer::Peer;
use crate::ratelimit::{Limits, PerUid};
use crate::stats::{Stats, StatusWriter};
use crate::store::{self, StoreConfig};

/// Shortest time between two writes of the status file.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Tuning that is not in the config file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time a client has to send its whole frame.
    pub client_timeout: Duration,
    /// Time a client has to send its first byte (capped by `client_timeout`).
    pub first_byte_timeout: Duration,
    /// Most connections one uid may have waiting for their frame (see [`crate::fair`]).
    pub per_uid_clients: usize,
    /// Time without clients after which the daemon exits, when `daemon_recycling_enabled`.
    pub idle_exit: Duration,
    /// Most connections served at once.
    pub max_clients: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(1),
            per_uid_clients: 64,
            idle_exit: Duration::from_secs(300),
            max_clients: 512,
        }
    }
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The shutdown future resolved.
    Stopped,
    /// No client for the idle time, with recycling enabled.
    Idle,
}

/// Serves `listener` until `shutdown` resolves (or the daemon is idle), then stops accepting,
/// lets started frames finish, commits and answers every queued record, writes the final
/// status and removes the socket file if it is ours. A new value in `config` is applied as a
/// reload.
///
/// # Errors
/// The spool cannot be opened at start.
pub async fn run(
    mut listener: Listener,
    mut config: watch::Receiver<Arc<Config>>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<Exit> {
    let cfg = config.borrow_and_update().clone();
    let stats = Arc::new(Stats::default());
    let (store, store_done) = store::start(StoreConfig::from_config(&cfg), stats.clone())?;
    let machine_id = Arc::new(MachineId::new(&cfg));
    let mut status = StatusWriter::new(&cfg);
    status.write(&stats, true);
    let shared = Arc::new(Shared {
        config: config.clone(),
        limiter: Mutex::new(PerUid::new(Limits::from_config(&cfg))),
        machine_id: machine_id.clone(),
        stats: stats.clone(),
        store: store.clone(),
        own_uid: rustix::process::getuid().as_raw(),
        client_timeout: options.client_timeout,
        first_byte_timeout: options.first_byte_timeout,
        cfg_warned: AtomicBool::new(false),
    });
    let max = options.max_clients.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let max_parked = parked_bound(max);
    let (fair, mut promoted) = Fair::new(options.per_uid_clients, max_parked);
    let (stop_tx, stop_rx) = watch::channel(false);

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "ready");

    tokio::pin!(shutdown);
    // No timer runs while nothing happens: the status file is looked at every second only
    // from a client's arrival until two looks in a row found nothing new and no record or
    // connection in hand (a count changed by another thread just as the first look ran is
    // caught by the second), and the writer's threads are parked after a quiet spell.
    let mut status_at: Option<Instant> = None;
    let mut status_seen = stats.generation();
    let mut status_quiet = 0u8;
    let mut park_at: Option<Instant> = None;
    let mut id_tick = interval_at(
        Instant::now() + machineid::CHECK_EVERY,
        machineid::CHECK_EVERY,
    );
    id_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_activity = Instant::now();
    let mut config_open = true;
    // Scratch space for looking at a new connection's frame (`fast::serve`).
    let mut peek = vec![0u8; telemetry::frame::MAX_FRAME];

    let exit = loop {
        let recycling = config.borrow().daemon_recycling_enabled;
        let mut activity = false;
        tokio::select! {
            () = &mut shutdown => break Exit::Stopped,
            (accepted, permit) = accept(&listener, &slots, &fair) => {
                last_activity = Instant::now();
                activity = true;
                match accepted {
                    Ok(fd) => {
                        // Served here if the whole frame is already queued, else by a task.
                        let others = || listener.has_waiting();
                        if let Err((fd, permit)) = fast::serve(fd, permit, &mut peek, &shared, others) {
                            match Peer::of(&fd) {
                                Ok(p) => match fair.admit(p.uid, fd) {
                                    Admitted::Serve(fd, t) => spawn_handler(fd, permit, Some(t), &shared, &stop_rx),
                                    Admitted::Parked => stats.bump(&stats.parked),
                                },
                                Err(_) => spawn_handler(fd, permit, None, &shared, &stop_rx),
                            }
                        }
                    }
                    Err(e) => {
                        // Out of fds or memory: back off instead of spinning; clients wait in
                        // the backlog meanwhile.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Some((fd, ticket)) = promoted.recv() => {
                activity = true;
                // A parked connection got its uid's free place: served as if just accepted.
                let permit = slots.clone().try_acquire_owned().ok();
                let others = || listener.has_waiting();
                if let Err((fd, permit)) = fast::serve(fd, permit, &mut peek, &shared, others) {
                    spawn_handler(fd, permit, Some(ticket), &shared, &stop_rx);
                }
            }
            changed = config.changed(), if config_open => match changed {
                Ok(()) => {
                    activity = true;
                    let cfg = config.borrow_and_update().clone();
                    apply_config(&cfg, &shared, &store, &mut status).await;
                }
                Err(_) => config_open = false,
            },
            () = sleep_until(status_at.unwrap_or(last_activity)), if status_at.is_some() => {
                status.write(&stats, false);
                let seen = stats.generation();
                let busy = slots.available_permits() != max || !store.idle();
                status_quiet = if seen != status_seen || busy { 0 } else { status_quiet + 1 };
                status_seen = seen;
                status_at = (status_quiet < 2).then(|| Instant::now() + STATUS_EVERY);
            }
            () = sleep_until(park_at.unwrap_or(last_activity)), if park_at.is_some() => {
                park_at = if slots.available_permits() == max && store.idle() {
                    store.park();
                    None
                } else {
                    Some(Instant::now() + crate::THREAD_KEEP_ALIVE)
                };
            }
            _ = id_tick.tick() => machine_id.refresh(&config.borrow().clone()),
            () = sleep_until(last_activity + options.idle_exit), if recycling => {
                if slots.available_permits() == max {
                    tracing::info!(secs = options.idle_exit.as_secs(), "no client for a while; exiting (recycling)");
                    break Exit::Idle;
                }
                last_activity = Instant::now();
            }
        }
        if activity {
            let now = Instant::now();
            if status_at.is_none() {
                status_at = Some(now + STATUS_EVERY);
                status_quiet = 0;
            }
            park_at = Some(now + crate::THREAD_KEEP_ALIVE);
        }
    };

    // Parked connections are not served any more; they are closed with the registry (one that
    // sent a frame sees a reset, not a clean end of stream it could take for success).
    promoted.close();
    drop(promoted);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    // No new clients; the socket file goes first so new senders fail fast.
    listener.remove_socket_file();
    drop(listener);
    // Clients that have not started a frame are closed; the others finish (bounded by the
    // client timeout) and get their answer.
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    // Every handle to the writer is gone once the handlers are: it drains its queue and stops.
    drop(shared);
    drop(store);
    store_done.wait().await;
    status.write(&stats, true);
    tracing::info!(?exit, "stopped");
    Ok(exit)
}

/// Waits for a free slot, then for a client. When every slot is taken, the oldest connection
/// of the uid holding the most is asked to make room first, so that whoever comes next is
/// served rather than left in the backlog. Cancel-safe: a slot taken without a client is given
/// back when the future is dropped.
async fn accept(
    listener: &Listener,
    slots: &Arc<Semaphore>,
    fair: &Fair,
) -> (io::Result<OwnedFd>, Option<OwnedSemaphorePermit>) {
    let permit = match slots.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            fair.evict_from_largest();
            slots.clone().acquire_owned().await.ok()
        }
    };
    let accepted = listener.accept().await;
    (accepted, permit)
}

/// Serves a connection in a task of its own, which reads the frame as it comes, with a timeout,
/// holding a place among its uid's connections.
fn spawn_handler(
    fd: OwnedFd,
    permit: Option<OwnedSemaphorePermit>,
    ticket: Option<Ticket>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) {
    let stream = match tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot register a connection");
            return;
        }
    };
    let (shared, stop) = (shared.clone(), stop.clone());
    tokio::spawn(async move {
        handler::handle(stream, shared, stop, ticket).await;
        drop(permit);
    });
}

/// Descriptors left for parked connections: the soft `RLIMIT_NOFILE`, raised to the hard limit
/// first (systemd's default hard limit is 524288), less the task slots and a reserve for the
/// spool's files and the runtime; at most 65536.
fn parked_bound(max_clients: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: l.maximum,
        maximum: l.maximum,
    };
    let soft = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => l.maximum,
        Err(_) => l.current,
    };
    let soft = soft.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let bound = soft
        .saturating_sub(max_clients)
        .saturating_sub(256)
        .min(65536);
    tracing::debug!(bound, "connections that may be parked");
    bound
}

async fn apply_config(
    cfg: &Config,
    shared: &Shared,
    store: &store::StoreHandle,
    status: &mut StatusWriter,
) {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    match shared.limiter.lock() {
        Ok(mut l) => l.set_limits(Limits::from_config(cfg)),
        Err(p) => p.into_inner().set_limits(Limits::from_config(cfg)),
    }
    if let Err(e) = store.reconfigure(StoreConfig::from_config(cfg)).await {
        tracing::error!(error = %e, "new spool settings not applied; keeping the old ones");
    }
    shared.machine_id.refresh(cfg);
    status.set_config(cfg);
    tracing::info!("configuration applied");
}
