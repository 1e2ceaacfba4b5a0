//! telemprobd: accepts telemetry records from probes over a Unix socket and spools them
//! durably, answering each with a status word (0 = on disk).
//!
//! Layout (mini-redis style): [`server::run`] is the seam tests use in-process;
//! [`listener`] binds or takes the systemd socket; [`handler`] serves one connection;
//! [`fair`] shares the connection slots among the sending users;
//! [`store`] is the group-commit spool writer with the quota; [`stock`] creates its temporary
//! files ahead and [`workers`] are its sync threads; [`ratelimit`] the pure window
//! logic; [`machineid`] the id substituted into records; [`stats`] counters and status file;
//! [`shutdown`] the signals; [`cli`] is used by the binary (logging: the `daemon-logging` crate).

use std::time::Duration;

/// How long a helper thread (the spool writer with its sync threads, the stock filler) stays
/// after its last piece of work. An idle daemon is one thread blocked in `epoll_wait`; a
/// burst keeps its threads, and the next burst after this long starts them again (a few
/// thread starts, tens of microseconds each). Ten seconds, as tokio's blocking pool.
pub const THREAD_KEEP_ALIVE: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(10)
};

pub mod cli;
pub mod fair;
pub mod fast;
pub mod handler;
pub mod listener;
pub mod machineid;
pub mod peer;
pub mod ratelimit;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod stock;
pub mod store;
pub mod workers;
