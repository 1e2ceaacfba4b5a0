#!/bin/sh
# Benchmark: a >= 300 MiB core of a crashed 3-thread C program (-g -O0), crashprobe against
# eu-stack and gdb on the same core, without and with libc's separate debug info.
# Usage: coredump/bench/unwind.sh [HEAP_MIB] [RUNS]
# Needs gcc, /usr/bin/time, hyperfine, eu-stack (elfutils), gdb, and libc6-dbg installed for
# the "with debug info" half. "Without" points every tool's debug-file search at an empty
# directory (crashprobe --debug-dir, eu-stack --debuginfo-path, gdb debug-file-directory), which
# is what an uninstalled libc6-dbg looks like to each of them.
# Cores come from the kernel when core_pattern is a plain file name, else from gdb's gcore.
set -eu
HEAP=${1:-300}
RUNS=${2:-15}
WS=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset DEBUGINFOD_URLS

for tool in gcc hyperfine eu-stack gdb python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "unwind.sh: $tool is needed" >&2; exit 1; }
done

cargo build --release -q -p probes --bin crashprobe --manifest-path "$WS/Cargo.toml"
PROBE="$WS/target/release/crashprobe"
BIN="$TMP/crashme"
gcc -g -O0 -pthread -o "$BIN" "$WS/coredump/tests/c/crash.c"

mkdir "$TMP/run" "$TMP/empty"
PATTERN=$(cat /proc/sys/kernel/core_pattern)
case "$PATTERN" in
    \|* | */*) METHOD=gdb ;;
    *) METHOD=kernel ;;
esac
if [ "$METHOD" = kernel ]; then
    (cd "$TMP/run" && ulimit -c unlimited && "$BIN" threads heap "$HEAP" >/dev/null 2>&1) || true
fi
CORE=$(ls "$TMP"/run/* 2>/dev/null | head -n1 || true)
if [ -z "$CORE" ]; then
    METHOD=gdb
    CORE="$TMP/run/gdb.core"
    gdb -nx -batch -ex run -ex "gcore $CORE" --args "$BIN" threads heap "$HEAP" >/dev/null 2>&1
fi

mkdir -p "$TMP/root/etc/telemetrics"
touch "$TMP/root/etc/telemetrics/opt-in" "$TMP/root/etc/telemetrics/opt-in-no-privacy-filters"
export TELEM_ROOT="$TMP/root"

LIBC=$(ldd "$BIN" | awk '/libc.so/ {print $3}')
LIBC_ID=$(readelf -n "$LIBC" | awk '/Build ID/ {print $3}')
LIBC_DBG="/usr/lib/debug/.build-id/$(echo "$LIBC_ID" | cut -c1-2)/$(echo "$LIBC_ID" | cut -c3-).debug"
[ -f "$LIBC_DBG" ] || { echo "unwind.sh: $LIBC_DBG missing: apt-get install libc6-dbg" >&2; exit 1; }

echo "core: $(du -m --apparent-size "$CORE" | cut -f1) MiB ($METHOD), $(nproc) CPUs, $(uname -r)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), hyperfine median of $RUNS"
echo "tools: $(eu-stack --version | head -n1), $(gdb --version | head -n1), libc debug file $LIBC_DBG"

# case NAME SCRIPT: runs SCRIPT (a sh script) with hyperfine and /usr/bin/time; sets MS and MIB.
case_() {
    printf '%s\n' "$2" >"$TMP/cmd.sh"
    hyperfine -N -w 2 -r "$RUNS" --export-json "$TMP/h.json" "sh $TMP/cmd.sh" >/dev/null 2>&1
    MS=$(python3 -c "import json;print('%.1f' % (json.load(open('$TMP/h.json'))['results'][0]['median']*1000))")
    /usr/bin/time -f '%M' -o "$TMP/rss" sh "$TMP/cmd.sh" >/dev/null 2>&1 || true
    MIB=$(python3 -c "print('%.1f' % ($(tail -n1 "$TMP/rss")/1024))")
}

half() { # $1 = label, $2 = debug dir for the tools ("" = their default)
    if [ -n "$2" ]; then
        PD="--debug-dir $2"
        ED="--debuginfo-path=$2"
        GD="-iex 'set debug-file-directory $2'"
    else
        PD="" ED="" GD=""
    fi
    P="$PROBE -p crashme -n --flood-window 0 $PD"
    # The probe must (or must not) have found libc's debug file by build-id.
    OUT=$(cat "$CORE" | $P 2>/dev/null)
    if echo "$OUT" | grep -q 'libc-start.c'; then FOUND=yes; else FOUND=no; fi
    echo
    echo "### $1 (crashprobe used libc's debug file: $FOUND)"
    echo
    echo "| case | wall (median) | peak RSS | wall / eu-stack -s -i |"
    echo "|---|---|---|---|"
    EU_MS=""
    row() {
        case_ "$1" "$2"
        EU_MS=${EU_MS:-$MS}
        printf '| %s | %s ms | %s MiB | %s |\n' "$1" "$MS" "$MIB" \
            "$(python3 -c "print('%.2f' % ($MS/$EU_MS))")"
    }
    # First: the reference the others are divided by.
    row "\`eu-stack -s -i --core\`" "eu-stack -s -i $ED --core=$CORE --executable=$BIN"
    row "\`cat core \\| crashprobe -n\` (pipe, one pass)" "cat $CORE | $P"
    row "\`crashprobe -n -c core\` (file, seeks)" "$P -c $CORE"
    row "\`eu-stack --core\` (no names from DWARF, no lines)" "eu-stack $ED --core=$CORE --executable=$BIN"
    row "\`gdb -batch -ex 'thread apply all bt'\`" "gdb -nx -batch $GD -ex 'thread apply all bt' $BIN $CORE"
    row "\`cat core > /dev/null\` (the pipe's floor)" "cat $CORE > /dev/null"
}

half "Without libc debug info" "$TMP/empty"
half "With libc debug info (libc6-dbg)" ""
