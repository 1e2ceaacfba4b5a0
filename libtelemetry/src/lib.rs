//! libtelemetry: the shared core of the telemetrics client.
//!
//! Every program of the workspace builds records, frames, spool files and configuration through
//! this crate, so there is exactly one parser for each format:
//!
//! - [`record`]: the 15 headers of record format 4 and a payload; [`validate`] the field rules;
//!   [`sysinfo`] where the header values come from.
//! - [`frame`]: the socket frame between the library and telemprobd.
//! - [`spool`]: the spool file shared by telemprobd and telempostd.
//! - [`config`]: `telemetrics.conf`, layered; [`env`] the environment variables.
//! - [`optin`], [`machine_id`]: opt-in files and the machine id.
//! - [`client`]: sending a record and reading telemprobd's acknowledgement.
//! - [`collector_protocol`]: the checks a collector applies to a record received over HTTP.
//! - [`service_args`]: the daemons' command lines under a service manager, read without clap.
//!
//! The C library (`libtelemetry.so.4`, `telemetry.h`) is the `ffi` module, the only place with
//! `unsafe` code.

/// What `-V`/`--version` of every program prints after its name: our version, then on a second
/// line the release of the original client (telemetrics-client) this one replaces; the original
/// printed its bare package version.
pub const VERSION_TEXT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncompatible with telemetrics-client 2.4.3"
);

pub mod client;
pub mod collector_protocol;
pub mod config;
pub mod env;
pub mod error;
pub mod frame;
pub mod journal;
pub mod machine_id;
pub mod optin;
pub mod record;
pub mod service_args;
pub mod spool;
pub mod status;
pub mod sysinfo;
pub mod timefmt;
pub mod validate;

#[allow(unsafe_code)]
mod ffi;

pub use config::Config;
pub use error::{Error, Result};
pub use record::Record;
pub use sysinfo::SysInfo;
