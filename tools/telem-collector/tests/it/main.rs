//! Integration tests: real HTTP over 127.0.0.1 against `Collector` and the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod common;
mod dedup;
mod faults;
mod machine_facts;
mod protocol;
