#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace (unit, property,
# integration with real daemons and sockets, gcc-compiled C programs against the C library),
# then, as root, the installed units under a real systemd. Every part runs even when an earlier
# one fails, every test target runs even when another fails (--no-fail-fast), and the last line
# is one summary of all parts; the exit status is 0 only when no part failed.
#
# Needs: the Rust toolchain with clippy and rustfmt, gcc, binutils (readelf), gdb (gcore, for
# the crash-probe tests), systemd (systemd-analyze, for the unit tests), xz-utils (xz cores),
# util-linux and mount (unshare, for the journal logging tests), systemd-container
# (systemd-nspawn, for the check under a real systemd). scripts/install-deps.sh installs the
# Debian packages.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp "${TMPDIR:-/tmp}/telem-test.XXXXXX") || exit 1
trap 'rm -f "$log"' EXIT
summary=()
failed=0
part() { # part NAME STATUS [DETAIL]
  summary+=("$1 $2${3:+ ($3)}")
  [ "$2" = FAILED ] && failed=1
  return 0
}
run_part() { # run_part NAME COMMAND...
  local name=$1; shift
  echo "== $name: $*"
  if "$@"; then part "$name" ok; else part "$name" FAILED; fi
}

run_part fmt cargo fmt --all -- --check
run_part clippy cargo clippy --workspace --all-targets --locked -- -D warnings

# The install test uses every binary of the workspace from target/debug.
echo "== tests: cargo build --workspace, cargo test --workspace --no-fail-fast"
build=0
cargo build --workspace --locked || build=$?
test_status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || test_status=$?
# cargo names each failed target as `-p CRATE --test NAME` (or --lib, --bin, --doc); the C
# tests are the target c_api.
failed_targets=$(grep -o '`-p [^`]*`' "$log" | sort -u || true)
c_failed=$(grep -c -- '--test c_api`' <<<"$failed_targets" || true)
other_failed=$(grep -vc -- '--test c_api`' <<<"$failed_targets" || true)
[ -n "$failed_targets" ] || other_failed=0
counts() { # counts FILTER: "P passed, F failed" over the "test result:" lines of the targets
  awk -v want="$1" '
    /^ *(Running|Doc-tests) / { c_api = ($0 ~ /tests\/c_api\.rs/) }
    /^test result:/ && ((want == "c") == c_api) {
      for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^passed/) p += $i
        if ($(i + 1) ~ /^failed/) f += $i
      }
    }
    END { printf "%d passed, %d failed", p, f }' "$log"
}
if [ "$build" -ne 0 ] || { [ "$test_status" -ne 0 ] && [ -z "$failed_targets" ]; }; then
  # Nothing ran, or cargo failed before naming a target (a compile error).
  part tests FAILED "did not build"
  part "C tests" FAILED "did not build"
else
  if [ "$other_failed" -gt 0 ]; then
    part tests FAILED "$(counts rust); failed targets: $(grep -v -- '--test c_api`' <<<"$failed_targets" | tr -d '`' | paste -sd, -)"
  else
    part tests ok "$(counts rust)"
  fi
  if [ "$c_failed" -gt 0 ]; then part "C tests" FAILED "$(counts c)"; else part "C tests" ok "$(counts c)"; fi
fi

# The installed units under a real systemd (PID 1 in a container on a throwaway overlay): needs
# root and systemd-nspawn. CI has both and must run it; elsewhere it is skipped with a note.
if [ "$(id -u)" -eq 0 ] && command -v systemd-nspawn >/dev/null; then
  run_part "systemd check" scripts/check-under-systemd.sh --profile-dir target/debug
elif [ -n "${CI:-}" ]; then
  echo "test.sh: CI must run scripts/check-under-systemd.sh (root and systemd-nspawn)" >&2
  part "systemd check" FAILED "needs root and systemd-nspawn in CI"
else
  echo "test.sh: not root or no systemd-nspawn: scripts/check-under-systemd.sh skipped" >&2
  part "systemd check" skipped "needs root and systemd-nspawn"
fi

line=$(printf '%s, ' "${summary[@]}")
echo "test.sh: ${line%, }"
exit "$failed"
