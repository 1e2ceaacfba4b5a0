#!/usr/bin/env bash
# Runs a command on a host that looks like one where telemetrics is installed and in use: a
# `telemetry` system user, /etc/telemetrics/opt-in and opt-in-static-machine-id, and a populated
# /var/lib/telemetry (machine id, daemon status files, a probe's state). The test suite must not
# notice: every test builds what it needs below its own root. CI runs the suite once more this way.
#
#   sudo scripts/with-host-pollution.sh scripts/test.sh
#
# Only what was missing is created, and only that is removed again when the command ends
# (also on failure or Ctrl-C), so whatever the host had before is left exactly as it was.
# Exits with the command's status. Needs root (useradd, /etc).
set -euo pipefail
if [ $# -eq 0 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
  sed -n '2,11s/^# \{0,1\}//p' "$0"
  [ $# -eq 0 ] && exit 2 || exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "with-host-pollution: needs root" >&2; exit 1; }

user_created=0
created=() # files and directories this script made, removed in reverse order
cleanup() {
  local i
  for ((i = ${#created[@]} - 1; i >= 0; i--)); do
    if [ -d "${created[i]}" ] && [ ! -L "${created[i]}" ]; then
      rmdir "${created[i]}" 2>/dev/null || echo "with-host-pollution: left ${created[i]} (not empty)" >&2
    else
      rm -f "${created[i]}"
    fi
  done
  if [ "$user_created" = 1 ]; then userdel telemetry; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_dir() {
  local d
  for d in "$@"; do
    if [ ! -e "$d" ]; then
      mkdir "$d"
      created+=("$d")
    fi
  done
}
make_file() { # make_file PATH CONTENT: only when PATH does not exist
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then
    printf '%s' "$2" > "$1"
    created+=("$1")
  fi
}

if ! getent passwd telemetry >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin telemetry
  user_created=1
fi
make_dir /etc/telemetrics /var/lib/telemetry
make_file /etc/telemetrics/opt-in ""
make_file /etc/telemetrics/opt-in-static-machine-id "host-static-machine-id"
make_file /var/lib/telemetry/machine_id "0123456789abcdef0123456789abcdef"
now=$(date +%s)
make_file /var/lib/telemetry/telemprobd.status \
  "pid=1
started=$now
updated=$now
counter.received=7
"
make_file /var/lib/telemetry/telempostd.status \
  "pid=1
started=$now
updated=$now
last_error=host pollution: this must not show in a test
last_error_at=$now
counter.delivered=5
"
make_file /var/lib/telemetry/journalprobe.cursor "s=host-pollution-cursor"
echo "with-host-pollution: telemetry user $(id -u telemetry), /etc/telemetrics and /var/lib/telemetry populated"

status=0
"$@" || status=$?
exit "$status"
