#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine that already has the Rust
# toolchain, gcc and python3. Safe to run again.
set -euo pipefail
need=()
command -v readelf >/dev/null || need+=(binutils)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v gdb >/dev/null || need+=(gdb)
command -v systemd-analyze >/dev/null || need+=(systemd)
# journalprobe's real-journal test writes journal files with systemd-journal-remote.
[ -x /lib/systemd/systemd-journal-remote ] || [ -x /usr/lib/systemd/systemd-journal-remote ] \
  || need+=(systemd-journal-remote)
# The journald logging tests run each daemon in a private mount namespace (unshare, mount).
command -v unshare >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
# crashprobe's test of xz-compressed cores compresses a real core with liblzma's CLI.
command -v xz >/dev/null || need+=(xz-utils)
# scripts/check-under-systemd.sh boots this OS under systemd-nspawn to run the real units.
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
# telem-server's PostgreSQL tests run initdb and postgres from /usr/lib/postgresql/*/bin in a
# private cluster of their own (as nobody, via setpriv): the package's own service is not used.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v setpriv >/dev/null || need+=(util-linux)
# telem-server's browser tests drive a headless Chromium over WebDriver.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
for c in clippy rustfmt; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
