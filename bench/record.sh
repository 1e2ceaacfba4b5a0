#!/usr/bin/env bash
# Benchmarks of the foundation (docs/benchmarks.md):
#  1. whole-process time of `telem-record-gen -n` (hyperfine, many runs), with `true` as the
#     same-run baseline for process start-up on this machine;
#  2. tm_create_record + tm_set_payload + tm_free_record in a loop through the C library.
# Needs hyperfine (apt-get install hyperfine). Writes nothing outside target/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p libtelemetry -p telem-record-gen
out=target/bench-clib
sh libtelemetry/build-so.sh target/release/libtelemetry.a "$out" >/dev/null
gcc -O2 -o target/bench-create-record bench/create_record.c -Iinclude -L"$out" -ltelemetry -Wl,-rpath,"$PWD/$out"

echo "== record creation through the C library"
./target/bench-create-record 20000

echo "== whole process: telem-record-gen -n (baseline: true)"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 50 --runs 1000 --export-json target/bench-cli.json \
    "true" \
    "./target/release/telem-record-gen -n -c org.example/bench/cli -p payload" >/dev/null
  python3 - <<'PY'
import json, statistics
d = json.load(open("target/bench-cli.json"))["results"]
base = statistics.median(d[0]["times"]) * 1e3
cli = statistics.median(d[1]["times"]) * 1e3
print(f"true (baseline)            median {base:.3f} ms")
print(f"telem-record-gen -n        median {cli:.3f} ms  ({cli/base:.2f}x baseline)")
PY
else
  echo "hyperfine not installed (apt-get install hyperfine); skipping the CLI timing"
fi
