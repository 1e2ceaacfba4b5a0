//! telem-server: the telemetry backend. It receives records over the collector protocol
//! (`telemetry::collector_protocol` holds the checks), stores each once in SQLite or
//! PostgreSQL, and answers queries over a small JSON API.
//!
//! - [`config`]: the TOML configuration and its checks.
//! - [`crash`]: crash signatures (the blamed frame of a backtrace) and the skip list.
//! - [`retention`]: the purge of old records.
//! - [`store`]: the storage interface, its two engines, filters and migrations.
//! - [`ingest`]: group commit (one writer task, one transaction per burst).
//! - [`http`]: the routes; [`api`]: the crash-group and hardware parts of the query API;
//!   [`metrics`]: the `/metrics` counters.
//! - [`web`]: the HTML pages (login, overview, records, population, crashes, hardware) and their
//!   charts.
//! - [`tls`]: HTTPS on the listener (rustls).
//! - [`server`]: `run`, which wires them together for a bound listener and a shutdown future.

pub mod api;
pub mod config;
pub mod crash;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod retention;
pub mod server;
pub mod store;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::run;
