//! Integration tests of the probes: the oops parser on real samples, and each probe binary run
//! for real against a fake telemprobd on a Unix socket in a temporary root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod hprobe;
mod journalprobe;
mod journalprobe_real;
mod klogscanner;
mod oops_golden;
mod pstore;
mod rasprobe;
mod rasprobe_parse;
