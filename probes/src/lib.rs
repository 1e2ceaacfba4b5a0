//! Telemetry probes. Each probe is a binary under `src/bin/`; shared logic lives in modules here.
//!
//! - [`oops`]: the kernel oops parser (klogscanner, pstoreprobe).
//! - [`send`]: shared plumbing: config, opt-in check, payload fitting, dry-run printing.
//! - [`args`]: the command line of each probe binary (also read by `telem-docgen`).
//! - [`cli`]: argument parsing and logging set-up common to the probe binaries.
//! - [`coredumpd`]: crashprobe's `--journal` mode (systemd-coredump's journal entries).
//! - [`kmsg`], [`pstore`], [`journal`], [`hello`], [`ras`]: the logic of each probe, testable
//!   without its binary.

pub mod args;
pub mod cli;
pub mod coredumpd;
pub mod crash;
pub mod hello;
pub mod journal;
pub mod kmsg;
pub mod oops;
pub mod pstore;
pub mod ras;
pub mod send;
pub mod state;
