#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace (unit, property,
# integration with real daemons and sockets, gcc-compiled C programs against the C library).
# Needs: the Rust toolchain with clippy and rustfmt, gcc, binutils (readelf), gdb (gcore, for
# the crash-probe tests), systemd (systemd-analyze, for the unit tests), xz-utils (xz cores),
# util-linux and mount (unshare, for the journal logging tests), systemd-container
# (systemd-nspawn, for the check under a real systemd). scripts/install-deps.sh installs the
# Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The install test uses every binary of the workspace from target/debug.
cargo build --workspace --locked
cargo test --workspace --locked
# The installed units under a real systemd (PID 1 in a container on a throwaway overlay): needs
# root and systemd-nspawn. CI has both and must run it; elsewhere it is skipped with a note.
if [ "$(id -u)" -eq 0 ] && command -v systemd-nspawn >/dev/null; then
  scripts/check-under-systemd.sh --profile-dir target/debug
elif [ -n "${CI:-}" ]; then
  echo "test.sh: CI must run scripts/check-under-systemd.sh (root and systemd-nspawn)" >&2
  exit 1
else
  echo "test.sh: not root or no systemd-nspawn: scripts/check-under-systemd.sh skipped" >&2
fi
