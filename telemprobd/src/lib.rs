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
