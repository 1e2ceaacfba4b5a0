//! Integration tests of telempostd: the real binary (and `run` in-process) against the local
//! test collector on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod delivery;
mod every_record;
mod faults;
mod proxy;
mod restart;
mod spool_rules;
mod tls;
