#!/usr/bin/env bash
# Start-up and client cost of telem-record-gen against C baselines (docs/benchmarks.md):
#   bench/startup.sh [--rounds N] [--profile] [--also OTHER-TELEM-RECORD-GEN]
# Whole-process times, every command once per round in turn (bench/spawnbench.c), medians:
#  - `true`: an empty process on this machine, the same-run baseline;
#  - `cfloor -n -o` / `telem-record-gen -n -o`: read the system facts, print the record;
#  - `cfloor` / `telem-record-gen` / `libsend`: build a record and send it to answerd, a daemon
#    that answers at once, so only the client's cost is measured. cfloor (bench/cfloor.c) is the
#    floor of a lean C client doing the same; libsend is a C program sending through our
#    libtelemetry.so.4;
#  - `corig` / `telem-record-gen` again: corig (bench/corig.c) does, for one record, the steps
#    the original library documents for a create + send (every header fact read afresh, the
#    whole configuration file parsed, no answer read): the baseline for the send target; `corig
#    -a` does the same and then waits for the daemon's answer, as our client does.
# --profile adds callgrind instruction counts of the -n -o runs (needs valgrind): where start-up
# goes. --also times another build of telem-record-gen (an older commit's) in the same rounds. The C programs are built here with gcc. Writes nothing outside target/.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=1000
profile=0
also=
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --also) also=$(realpath "$2"); shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--profile] [--also BIN]" >&2; exit 2 ;;
  esac
done

cargo build --release -q -p libtelemetry -p telem-record-gen
out=$PWD/target/bench-startup
clib=$out/clib
mkdir -p "$out"
sh libtelemetry/build-so.sh target/release/libtelemetry.a "$clib" >/dev/null
for p in cfloor corig answerd spawnbench; do
  gcc -O2 -Wall -o "$out/$p" "bench/$p.c"
done
gcc -O2 -Wall -o "$out/libsend" bench/libsend.c -Iinclude -L"$clib" -ltelemetry \
  -Wl,-rpath,"$clib"
gen=$PWD/target/release/telem-record-gen

# A private root: opted in, socket_path pointing at answerd.
root=$(mktemp -d "$out/root.XXXXXX")
sock=$root/telem.sock
mkdir -p "$root/etc/telemetrics"
: > "$root/etc/telemetrics/opt-in"
printf '[settings]\nsocket_path=%s\n' "$sock" > "$root/etc/telemetrics/telemetrics.conf"
"$out/answerd" "$sock" &
daemon=$!
trap 'kill $daemon 2>/dev/null; rm -rf "$root"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.01; done
export TELEM_ROOT=$root
unset TELEM_CONFIG TELEM_SYSINFO_ROOT

args="-c org.example/bench/cli -p payload"
# Each C baseline right above the command it is compared to.
cat > "$root/commands" <<EOT
$(type -P true)
$gen -n $args
$out/cfloor -n -o $args
$gen -n -o $args
$out/cfloor $args
$gen $args
$out/libsend org.example/bench/cli payload
$out/corig $args
$gen $args
$out/corig -a $args
$gen $args
EOT
if [ -n "$also" ]; then
  printf '%s -n -o %s\n%s %s\n' "$also" "$args" "$also" "$args" >> "$root/commands"
fi
echo "== whole process, $rounds interleaved rounds; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$out/spawnbench" "$rounds" "$root/commands" | sed "s|$PWD/||g"

if [ "$profile" = 1 ]; then
  if ! command -v valgrind >/dev/null; then
    echo "valgrind not installed; no profile" >&2
    exit 0
  fi
  echo "== instructions (callgrind), -n -o"
  for cmd in "$(type -P true)" "$out/cfloor -n -o $args" "$gen -n -o $args" \
    ${also:+"$also -n -o $args"}; do
    f=$root/callgrind.out
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --callgrind-out-file="$f" $cmd >/dev/null 2>"$root/vg.err"
    total=$(sed -n 's/.*Collected : *//p' "$root/vg.err")
    echo "$total  ${cmd#"$PWD"/}"
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null |
      grep -E ':(_dl_start|_dl_relocate_object|pthread_getattr_np[^ ]*|clap_builder::derive::Parser::try_parse[^ ]*|telem_record_gen::run::run|telemetry::sysinfo::SysInfo::gather) \[' |
      sed -E 's/^ *([0-9,]+) \([^)]*\) +[^:]*:([^ ]+) .*/      \1  \2/' || true
  done
fi
