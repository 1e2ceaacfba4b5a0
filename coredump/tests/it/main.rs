//! Integration tests of the coredump crate against real cores of `tests/c/crash.c`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backtraces;
mod fixture;
mod robustness;
