//! telempostd: delivers spooled telemetry records to the collector over HTTP(S).
//!
//! - [`spool_scan`]: finding records oldest first and opening them safely; [`watch`]: inotify.
//! - [`deliver`]: the ureq agent, the `headers` and `json` encodings, outcome classification.
//! - [`retry`]: the backoff policy (pure); [`rate`]: rate limiting by wall-clock windows.
//! - [`finish`]: journaling and unlinking delivered records on a thread of their own, which
//!   [`finishing`] runs only while records leave;
//!   [`readahead`]: reading the next record while the collector answers.
//! - [`attempts`]: failure counts for the head-of-line rule; [`quarantine`]: moving files that
//!   are not records aside.
//! - [`status`]: the status file for `telemctl status`.
//! - [`cli`]: the command line (also read by `telem-docgen` for the man page).
//! - [`daemon`]: the loop tying them together; [`run`] is what the binary and the tests call.
//!
//! The journal format lives in the shared core (`telemetry::journal`) so `telemctl journal`
//! reads what this daemon writes.

pub mod attempts;
pub mod cli;
pub mod daemon;
pub mod deliver;
pub mod finish;
pub mod finishing;
pub mod quarantine;
pub mod rate;
pub mod readahead;
pub mod resolve;
pub mod retry;
pub mod spool_scan;
pub mod status;
pub mod watch;

pub use daemon::{run, Error, Exit, Options, Tuning};
