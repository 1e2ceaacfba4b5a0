#!/bin/sh
# Benchmark: a >= 300 MiB core piped into `crashprobe --dry-run`, wall time and peak RSS,
# versus eu-stack and gdb when installed. Usage: coredump/bench/unwind.sh [HEAP_MIB]
# Needs gcc, /usr/bin/time; hyperfine, eu-stack (elfutils), gdb are used when present.
# Cores come from the kernel when core_pattern is a plain file name, else from gdb's gcore.
set -eu
HEAP=${1:-300}
WS=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

cargo build --release -q -p probes --bin crashprobe --manifest-path "$WS/Cargo.toml"
PROBE="$WS/target/release/crashprobe"
gcc -g -O0 -pthread -o "$TMP/crashme" "$WS/coredump/tests/c/crash.c"

mkdir "$TMP/run"
PATTERN=$(cat /proc/sys/kernel/core_pattern)
case "$PATTERN" in
    \|* | */*) METHOD=gdb ;;
    *) METHOD=kernel ;;
esac
if [ "$METHOD" = kernel ]; then
    (cd "$TMP/run" && ulimit -c unlimited && "$TMP/crashme" threads heap "$HEAP" >/dev/null 2>&1) || true
fi
CORE=$(ls "$TMP"/run/* 2>/dev/null | head -n1 || true)
if [ -z "$CORE" ]; then
    METHOD=gdb
    CORE="$TMP/run/gdb.core"
    gdb -nx -batch -ex run -ex "gcore $CORE" --args "$TMP/crashme" threads heap "$HEAP" >/dev/null 2>&1
fi
SIZE=$(du -m --apparent-size "$CORE" | cut -f1)
echo "core: $SIZE MiB ($METHOD), $(nproc) CPUs, $(uname -r)"

mkdir -p "$TMP/root/etc/telemetrics"
touch "$TMP/root/etc/telemetrics/opt-in" "$TMP/root/etc/telemetrics/opt-in-no-privacy-filters"
export TELEM_ROOT="$TMP/root"

rss() { # peak RSS in MiB of a shell command line
    /usr/bin/time -f '%M' -o "$TMP/rss" sh -c "$1" >/dev/null 2>&1 || true
    echo "$(( $(tail -n1 "$TMP/rss") / 1024 ))"
}
wall() { # mean wall time of a shell command line
    if command -v hyperfine >/dev/null; then
        hyperfine -N -w 1 -r 5 --export-json "$TMP/h.json" "sh -c '$1'" >/dev/null 2>&1
        python3 -c "import json;print('%.0f ms' % (json.load(open('$TMP/h.json'))['results'][0]['mean']*1000))"
    else
        s=$(date +%s%N); sh -c "$1" >/dev/null 2>&1 || true; e=$(date +%s%N)
        echo "$(( (e - s) / 1000000 )) ms"
    fi
}
row() { printf '| %-44s | %9s | %6s MiB |\n' "$1" "$(wall "$2")" "$(rss "$3")"; }

echo "| case | wall | peak RSS |"
echo "|---|---|---|"
P="$PROBE -p crashme -n --flood-window 0"
row "crashprobe -n, stdin pipe, no libc debug info" \
    "cat $CORE | $P --debug-dir /nonexistent" "cat $CORE | $P --debug-dir /nonexistent"
row "crashprobe -n, stdin pipe, libc debug info" "cat $CORE | $P" "cat $CORE | $P"
row "crashprobe -n, -c core file, no debug info" "$P -c $CORE --debug-dir /nonexistent" "$P -c $CORE --debug-dir /nonexistent"
# The pipe's RSS: time measures the sh -c tree's largest process; cat is small.
row "cat core > /dev/null (pipe floor)" "cat $CORE > /dev/null" "cat $CORE > /dev/null"
if command -v eu-stack >/dev/null; then
    row "eu-stack -s -i --core (file only)" "eu-stack -s -i --core $CORE" "eu-stack -s -i --core $CORE"
else
    echo "| eu-stack: not installed (apt-get install elfutils) | | |"
fi
if command -v gdb >/dev/null; then
    G="gdb -nx -batch -ex \"thread apply all bt\" $TMP/crashme $CORE"
    row "gdb -batch thread apply all bt" "$G" "$G"
fi
