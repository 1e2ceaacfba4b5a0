//! A local stand-in for the Clear Linux telemetrics-backend collector, for tests.
//!
//! It validates records exactly as the upstream collector does (docs/collector-protocol.md),
//! also accepts the v2.4 client's JSON body on `/v3/collector`, keeps what it accepted, logs
//! every request, and can be told to misbehave (status codes, delays, dropped connections).
//! See docs/test-collector.md.

mod collector;
mod server;
mod state;
mod tls;
/// The record checks live in the shared core, one implementation for this collector and
/// telem-server.
pub use telemetry::collector_protocol as validate;

pub use collector::Collector;
pub use server::{serve, serve_with, Dropped};
pub use state::{Fault, Options, RequestLog, State, StoredRecord, Summary, DEFAULT_TID};
