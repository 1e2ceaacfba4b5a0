#!/usr/bin/env bash
# Runs telemetrics locally as a normal user, entirely below a temporary directory (TELEM_ROOT):
# nothing on the real system is read or written except the build in target/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p telem-record-gen
bin=target/release
demo=$(mktemp -d "${TMPDIR:-/tmp}/telemetrics-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
export TELEM_ROOT="$demo/root"
mkdir -p "$TELEM_ROOT/etc/telemetrics"

echo "== a record, printed instead of sent (telem-record-gen -o -n)"
"$bin/telem-record-gen" -o -n -c org.example/demo/hello -s 2 -p "hello from the demo"

echo
echo "== sending while not opted in is refused, and says why"
"$bin/telem-record-gen" -c org.example/demo/hello -p "hello" || true
echo
echo "The daemons (telemprobd, telempostd) are not part of this build yet, so records are only"
echo "printed; this demo grows as they land."
