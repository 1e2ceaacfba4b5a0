//! A local stand-in for the Clear Linux telemetrics-backend collector, for tests.
//!
//! It validates records exactly as the upstream collector does (collector-protocol.md §3),
//! also accepts the v2.4 client's JSON body on `/v3/collector`, keeps what it accepted, logs
//! every request, and can be told to misbehave (status codes, delays, dropped connections).
//! See docs/test-collector.md.

mod collector;
mod server;
mod state;
mod tls;
pub mod validate;

pub use collector::Collector;
pub use server::{serve, serve_with, Dropped};
pub use state::{Fault, Options, RequestLog, State, StoredRecord, Summary, DEFAULT_TID};
