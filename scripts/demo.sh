#!/usr/bin/env bash
# Runs the whole of telemetrics locally as a normal user: builds it, then starts the test
# collector, telemprobd and telempostd below a temporary directory (TELEM_ROOT), opts in there,
# sends records with telem-record-gen, hprobe and a C program, shows them arriving at the
# collector, shows `telemctl status` and `telemctl journal`, and stops everything.
# Nothing outside the temporary directory and target/ is read or written; it ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# TELEM_DEMO_PROFILE=debug runs an existing debug build without building (the e2e test of
# this script does that); the default builds and runs the release profile.
if [ "${TELEM_DEMO_PROFILE:-release}" = debug ]; then
  bin=$PWD/target/debug
else
  echo "== building (release)"
  cargo build --release --locked -q -p libtelemetry -p telemprobd -p telempostd -p telemctl \
    -p telem-record-gen -p probes -p telem-collector
  bin=$PWD/target/release
fi

demo=$(mktemp -d "${TMPDIR:-/tmp}/telemetrics-demo.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$demo"
}
trap cleanup EXIT
export TELEM_ROOT="$demo/root"
unset TELEM_CONFIG
mkdir -p "$TELEM_ROOT"/{run,etc/telemetrics,var/spool/telemetry,var/lib/telemetry,var/log/telemetry/records,var/cache/telemetry}

wait_for() { # wait_for <what> <test command...>: up to 20 s
  local what=$1; shift
  for _ in $(seq 200); do "$@" && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what" >&2; return 1
}

echo "== test collector on 127.0.0.1 (speaks the backend's /v2/collector protocol)"
"$bin/telem-collector" --listen 127.0.0.1:0 --port-file "$demo/port" --store "$demo/received.jsonl" \
  >"$demo/collector.log" 2>&1 &
pids+=($!)
wait_for "the collector" test -s "$demo/port"
port=$(cat "$demo/port")

# The administrator's config layer, below TELEM_ROOT like every other path.
cat > "$TELEM_ROOT/etc/telemetrics/telemetrics.conf" <<CONF
[settings]
server=http://127.0.0.1:$port/v2/collector
daemon_recycling_enabled=false
CONF

echo "== telemctl opt-in"
"$bin/telemctl" opt-in

echo "== starting telemprobd and telempostd"
"$bin/telemprobd" >"$demo/telemprobd.log" 2>&1 &
pids+=($!)
wait_for "telemprobd's socket" test -S "$TELEM_ROOT/run/telem-0"
"$bin/telempostd" --scan-interval-ms 1000 >"$demo/telempostd.log" 2>&1 &
pids+=($!)

echo "== sending records"
"$bin/telem-record-gen" -c org.example/demo/hello -s 2 -p "hello from telem-record-gen"
echo "payload from standard input" | "$bin/telem-record-gen" -c org.example/demo/stdin
"$bin/hprobe" -u
sh libtelemetry/build-so.sh "$bin/libtelemetry.a" "$demo/lib" >/dev/null
gcc -o "$demo/send_record" examples/send_record.c -Iinclude -L"$demo/lib" -ltelemetry -Wl,-rpath,"$demo/lib"
"$demo/send_record" demo

echo "== waiting for the collector to receive all four"
wait_for "delivery" sh -c "[ \$(wc -l < '$demo/received.jsonl' 2>/dev/null || echo 0) -ge 4 ]"
python3 - "$demo/received.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    h = r["headers"]
    print(f'  {h["classification"]:<32} severity {h["severity"]}  machine {h["machine-id"][:8]}…  payload {r["payload"].strip()!r}')
PY

echo "== telemctl status"
# The daemons refresh their status files at most once a second.
wait_for "the status files" sh -c "'$bin/telemctl' status | grep -q 'delivered 4'"
"$bin/telemctl" status
echo "== telemctl journal"
"$bin/telemctl" journal
echo "== stopping"
