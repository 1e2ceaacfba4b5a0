#!/usr/bin/env bash
# Runs the whole of telemetrics locally as a normal user: builds it, then starts telem-server
# (on an SQLite file), telemprobd and telempostd below a temporary directory (TELEM_ROOT), opts
# in there, sends records with telem-record-gen, hprobe and a C program, shows them stored in
# telem-server through its query API, shows `telemctl status` and `telemctl journal`, sends a
# crash report and prints the URL of its crash page (and, on a terminal, waits for Enter so the
# page can be opened), and stops everything.
# Nothing outside the temporary directory and target/ is read or written; it ends by itself.
# If a step fails, the daemons' logs are kept and their place is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

step=0
steps=9
say() { step=$((step + 1)); echo; echo "== $step/$steps $*"; }
indent() { sed 's/^/   /'; }

echo "telemetrics demo: telem-server, both daemons and four senders, below a temporary directory"

# TELEM_DEMO_PROFILE=debug runs an existing debug build without building (the e2e test of
# this script does that); the default builds and runs the release profile.
if [ "${TELEM_DEMO_PROFILE:-release}" = debug ]; then
  say "build: skipped, using the debug build in target/debug"
  bin=$PWD/target/debug
else
  say "build (release profile): a first build takes about 11 minutes on 2 cores, later ones seconds"
  cargo build --release --locked -p libtelemetry -p telemprobd -p telempostd -p telemctl \
    -p telem-record-gen -p probes -p telem-server
  bin=$PWD/target/release
fi

demo=$(mktemp -d "${TMPDIR:-/tmp}/telemetrics-demo.XXXXXX")
pids=()
cleanup() {
  local status=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$status" -eq 0 ]; then
    rm -rf "$demo"
  else
    echo >&2
    echo "demo: step $step failed. The logs are kept in $demo:" >&2
    ls "$demo"/*.log 2>/dev/null | sed 's/^/   /' >&2 || true
    echo "   (delete the directory when done: rm -r $demo)" >&2
  fi
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

say "telem-server: the backend, storing what it receives in an SQLite file"
cat > "$demo/telem-server.toml" <<CONF
# Port 0: any free port; the server logs the one it got.
listen = "127.0.0.1:0"
[storage]
path = "$demo/records.db"
CONF
NO_COLOR=1 "$bin/telem-server" serve --config "$demo/telem-server.toml" >"$demo/telem-server.log" 2>&1 &
pids+=($!)
# Its log line "listening addr=127.0.0.1:PORT" (colour codes removed, should there be any).
server_port() {
  sed 's/\x1b\[[0-9;]*m//g' "$demo/telem-server.log" | grep -m1 -o 'listening addr=127\.0\.0\.1:[0-9]*' |
    cut -d: -f2
}
server_listening() { [ -n "$(server_port)" ]; }
wait_for "telem-server" server_listening
port=$(server_port)
api="http://127.0.0.1:$port/api/v1"
echo "   listening on http://127.0.0.1:$port: /v2/collector for telempostd, $api/ for queries"

# The administrator's config layer, below TELEM_ROOT like every other path.
cat > "$TELEM_ROOT/etc/telemetrics/telemetrics.conf" <<CONF
[settings]
server=http://127.0.0.1:$port/v2/collector
daemon_recycling_enabled=false
CONF

say "opt in: telemctl opt-in (nothing is recorded or sent without it)"
# Only its first line: without systemd it goes on to say the daemons must be started by hand,
# which the next step does.
opted=$("$bin/telemctl" opt-in)
echo "${opted%%$'\n'*}" | indent

say "daemons: telemprobd takes records on a Unix socket and spools them, telempostd delivers them"
"$bin/telemprobd" >"$demo/telemprobd.log" 2>&1 &
pids+=($!)
echo "   telemprobd  pid $!, socket $TELEM_ROOT/run/telem-0"
wait_for "telemprobd's socket" test -S "$TELEM_ROOT/run/telem-0"
"$bin/telempostd" --scan-interval-ms 1000 >"$demo/telempostd.log" 2>&1 &
pids+=($!)
echo "   telempostd  pid $!, delivering to http://127.0.0.1:$port/v2/collector"

say "sending four records (each one is on disk in the spool when its sender returns)"
sent() { printf '   %-44s sent %s\n' "$1" "$2"; }
"$bin/telem-record-gen" -c org.example/demo/hello -s 2 -p "hello from telem-record-gen"
sent "telem-record-gen -p" "org.example/demo/hello"
echo "payload from standard input" | "$bin/telem-record-gen" -c org.example/demo/stdin
sent "telem-record-gen, payload on standard input" "org.example/demo/stdin"
"$bin/hprobe" -u >/dev/null
sent "hprobe (the hello probe)" "org.clearlinux/hello/world"
sh libtelemetry/build-so.sh "$bin/libtelemetry.a" "$demo/lib" >/dev/null
gcc -o "$demo/send_record" examples/send_record.c -Iinclude -L"$demo/lib" -ltelemetry -Wl,-rpath,"$demo/lib"
"$demo/send_record" demo >/dev/null
sent "examples/send_record.c (libtelemetry.so.4)" "org.example/c-example/hello"

say "at telem-server: waiting for all four, then reading them back through the query API"
# Python's urllib with no proxy (a proxy from the environment must not see 127.0.0.1).
urlopen='import json, urllib.request; urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open'
four_stored() {
  local n
  n=$(python3 -c "$urlopen"'
import sys; print(len(json.load(urlopen(sys.argv[1]))["records"]))' "$api/records" 2>/dev/null) || return 1
  [ "$n" -ge 4 ]
}
wait_for "delivery" four_stored
python3 - "$api" <<'PY'
import json, sys, urllib.request
api = sys.argv[1]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
get = lambda path: json.load(opener.open(api + path))
senders = {
    "org.example/demo/hello": "telem-record-gen",
    "org.example/demo/stdin": "telem-record-gen",
    "org.clearlinux/hello/world": "hprobe",
    "org.example/c-example/hello": "send_record.c",
}
records = get("/records")["records"]
print(f"   {len(records)} records received (GET /api/v1/records, newest first):")
for r in records:
    c = r["classification"]
    payload = r["payload"].strip().replace("\n", " | ")
    print(f'   {c:<30} from {senders.get(c, "?"):<17} severity {r["severity"]}  payload {payload!r}')
counts = get("/counts/classification?classification=org.example/*")["counts"]
print("   GET /api/v1/counts/classification?classification=org.example/*:")
for c in counts:
    print(f'   {c["key"]:<30} {c["count"]}')
PY

say "telemctl status: the daemons, the spool, the last delivery and error"
# The daemons refresh their status files at most once a second.
wait_for "the status files" sh -c "'$bin/telemctl' status | grep -q 'delivered 4'"
"$bin/telemctl" status | indent

say "telemctl journal -V: every record that left the spool, and what became of it"
"$bin/telemctl" journal -V | indent

say "the web pages: a crash report as crashprobe sends it, and its crash group"
cat > "$demo/crash.txt" <<'CRASH'
Process: /usr/bin/demo-app
PID: 4242
Signal: 6

Backtrace (TID 4242):
#0 raise() - [/usr/lib64/libc.so.6] - raise.c:26
#1 abort() - [/usr/lib64/libc.so.6] - abort.c:79
#2 parse_config() - [/usr/bin/demo-app] - /src/demo-app/config.c:42
#3 main() - [/usr/bin/demo-app] - /src/demo-app/main.c:60
CRASH
"$bin/telem-record-gen" -c org.clearlinux/crash/clr -s 2 -P "$demo/crash.txt"
sent "telem-record-gen -P crash.txt" "org.clearlinux/crash/clr"
grouped() {
  python3 -c "$urlopen"'
import sys; sys.exit(not json.load(urlopen(sys.argv[1]))["groups"])' "$api/crashes" 2>/dev/null
}
wait_for "the crash group" grouped
python3 - "http://127.0.0.1:$port" <<'PY'
import json, re, sys, urllib.parse, urllib.request
base = sys.argv[1]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
group = json.load(opener.open(base + "/api/v1/crashes"))["groups"][0]
print(f'   grouped under {group["function"]} in {group["module"]} (the first frame after raise and abort)')
url = base + "/crashes/group?" + urllib.parse.urlencode(
    {"function": group["function"], "module": group["module"]})
page = opener.open(url)
title = re.search(r"<title>(.*?)</title>", page.read().decode(), re.S)
print(f"   GET {url}: {page.status}, {title.group(1).strip() if title else 'no title'}")
print(f"   top crashers: {base}/crashes   records: {base}/records")
print(f"   the crash page: {url}")
PY
if [ -t 0 ] && [ -t 1 ]; then
  read -r -p "   open it in a browser; press Enter to stop the demo " _ || true
fi

echo
echo "== stopping telem-server and both daemons; deleting $demo"
