#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace (unit, property,
# integration with real daemons and sockets, gcc-compiled C programs against the C library).
# Needs: the Rust toolchain with clippy and rustfmt, gcc, binutils (readelf), gdb (gcore, for
# the crash-probe tests), systemd (systemd-analyze, for the unit tests), xz-utils (xz cores),
# util-linux and mount (unshare, for the journal logging tests). scripts/install-deps.sh
# installs the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The install test uses every binary of the workspace from target/debug.
cargo build --workspace --locked
cargo test --workspace --locked
