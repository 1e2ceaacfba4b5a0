#!/usr/bin/env bash
# Runs the installed units under a real systemd: boots this machine's own OS in a container
# (systemd-nspawn, systemd as PID 1, a private network) on a throwaway overlay of the root file
# system, installs the release build there with scripts/install.sh as a package would, opts in,
# and checks what only a real service manager shows: socket activation, Type=notify readiness,
# the telemetry user and the whole sandbox (PrivateUsers=, SystemCallFilter=, ...) working,
# native journal logging, the path unit starting telempostd, ExecReload=, delivery to a local
# collector, a C program linked against the installed libtelemetry.so.4, the heartbeat probe's
# unit, a clean stop, and `telemctl opt-out` (units stopped, data deleted, sends refused).
#
#   sudo scripts/check-under-systemd.sh [--profile-dir DIR]
#
# Needs root, systemd-nspawn (systemd-container) and overlayfs. Installs the binaries of DIR
# (default target/release, built if missing); scripts/test.sh passes target/debug.
#
# Nothing is written to the real system: every change inside the container lands in a tmpfs
# that is discarded at the end. It boots a whole OS (about 20 s, and every service the host has
# enabled starts inside the container); scripts/test.sh runs it when it is root. The container
# starts without the host's telemetrics state, `telemetry` user, installed copy and journal.
# What it checks and found is in docs/systemd.md.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
profile_dir=target/release
while [ $# -gt 0 ]; do
  case "$1" in
    --profile-dir) profile_dir=$2; shift ;;
    *) echo "check-under-systemd: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

fail() { echo "check-under-systemd: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (systemd-nspawn, overlayfs mounts)"
command -v systemd-nspawn >/dev/null || fail "needs systemd-nspawn (apt-get install systemd-container)"
command -v nsenter >/dev/null || fail "needs nsenter (util-linux)"
for b in telemprobd telempostd telemctl telem-record-gen telem-collector telem-docgen; do
  if [ ! -x "$profile_dir/$b" ]; then
    [ "$profile_dir" = target/release ] || fail "$profile_dir/$b is missing: build first"
    # The daemons alone, so telem-server's tokio features do not reach them (install.sh too).
    cargo build --release -p telemprobd -p telempostd
    cargo build --release --workspace --exclude telemprobd --exclude telempostd
    break
  fi
done

work=$(mktemp -d /tmp/telem-systemd.XXXXXX)
log="$work.console"
machine="telemcheck$$"
nspawn=""
passed=0
cleanup() {
  if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
    init=$(pgrep -P "$nspawn" | head -n 1 || true)
    [ -n "$init" ] && nsenter -t "$init" -a systemctl poweroff >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
    kill "$nspawn" 2>/dev/null || true
    wait "$nspawn" 2>/dev/null || true
  fi
  umount "$work/root" 2>/dev/null || true
  umount "$work" 2>/dev/null || true
  rmdir "$work" 2>/dev/null || true
  if [ "$passed" = 1 ]; then rm -f "$log"; else echo "container console: $log" >&2; fi
}
trap cleanup EXIT

# The container's root: this root file system, read-only below, a tmpfs on top.
mount -t tmpfs -o size=2G tmpfs "$work"
mkdir -p "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$work/root"

# A clean slate: whatever telemetrics state, user, installed copy or journal the host has must
# not decide the outcome (an opt-in file on the host made `telemctl opt-in` a no-op, the host's
# journal and status files showed up in the output). Deleting on the overlay only hides the
# host's files from the container; the host keeps them.
r=$work/root
rm -rf "$r/etc/telemetrics" "$r/var/lib/telemetry" "$r/var/spool/telemetry" \
  "$r/var/log/telemetry" "$r/var/cache/telemetry" "$r/usr/share/defaults/telemetrics"
for b in telemprobd telempostd telemctl telem-record-gen crashprobe klogscanner journalprobe \
         pstoreprobe pstoreclean hprobe; do
  rm -f "$r/usr/local/bin/$b" "$r/usr/bin/$b"
done
find "$r/etc/systemd/system" "$r/usr/local/lib/systemd/system" "$r/usr/lib/systemd/system" \
  -maxdepth 2 \( -name 'telemprobd.*' -o -name 'telempostd.*' -o -name 'hprobe.*' \
  -o -name 'klogscanner.*' -o -name 'journal-probe*' -o -name 'crashprobe*' \
  -o -name 'pstore-probe.*' \) -exec rm -rf {} + 2>/dev/null || true
for f in passwd group shadow gshadow; do
  [ -f "$r/etc/$f" ] && sed -i '/^telemetry:/d' "$r/etc/$f"
done
# Its own journal: the container shares the host's machine id, so it would write to (and
# journalctl would read) the host's journal files.
find "$r/var/log/journal" -mindepth 1 -delete 2>/dev/null || true

echo "== booting this OS under systemd-nspawn (console: $log)"
systemd-nspawn -D "$work/root" --machine="$machine" --register=no --keep-unit \
  --private-network --link-journal=no --boot --console=read-only --bind-ro="$src:/telemetrics-src" \
  >"$log" 2>&1 &
nspawn=$!
init=""
for _ in $(seq 1 600); do
  kill -0 "$nspawn" 2>/dev/null || fail "the container did not boot; see $log"
  init=$(pgrep -P "$nspawn" | head -n 1 || true)
  if [ -n "$init" ]; then
    state=$(nsenter -t "$init" -a systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
  fi
  sleep 0.1
done
case "${state:-}" in running|degraded) ;; *) fail "the container's systemd is '${state:-?}'" ;; esac
echo "   systemd $(nsenter -t "$init" -a systemctl --version | head -n 1 | cut -d' ' -f2) is PID 1 in the container ($state)"

# Everything below runs inside the container.
nsenter -t "$init" -a /usr/bin/env PROFILE_DIR="$profile_dir" /bin/bash -s <<'INSIDE'
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
trap 'echo "FAIL: in the container, line $LINENO: $BASH_COMMAND" >&2' ERR
cd /telemetrics-src

echo "== installing as a package would (PREFIX=/usr), users, directories"
PREFIX=/usr scripts/install.sh --no-build --profile-dir "$PROFILE_DIR" >/dev/null
systemd-sysusers
systemd-tmpfiles --create >/dev/null 2>&1 || true
systemctl daemon-reload
uid=$(id -u telemetry) || fail "sysusers did not create the telemetry user"

echo "== a local collector, and the configuration pointing at it"
systemd-run --quiet --unit=telem-collector "/telemetrics-src/$PROFILE_DIR/telem-collector" \
  --listen 127.0.0.1:18181 --store /root/collected.jsonl
mkdir -p /etc/telemetrics
printf '[settings]\nserver=http://127.0.0.1:18181/v2/collector\n' > /etc/telemetrics/telemetrics.conf

echo "== telemctl opt-in (enables and starts the units)"
telemctl opt-in
systemctl is-active --quiet telemprobd.socket || fail "telemprobd.socket is not listening"
systemctl is-active --quiet telempostd.path || fail "telempostd.path is not active"

echo "== records: telem-record-gen, and a C program linked against the installed library"
telem-record-gen -c org.test/systemd/cli -s 1 -p "from telem-record-gen, under systemd"
gcc -o /root/send_record examples/send_record.c -ltelemetry
/root/send_record >/dev/null
systemctl is-active --quiet telemprobd.service || fail "socket activation did not start telemprobd"
[ "$(systemctl show -p Type --value telemprobd.service)" = notify ] || fail "telemprobd is not Type=notify"
pid=$(systemctl show -p MainPID --value telemprobd.service)
[ "$(stat -c %u /proc/"$pid")" = "$uid" ] || fail "telemprobd does not run as the telemetry user"

echo "== delivery (the path unit starts telempostd)"
for _ in $(seq 1 300); do
  [ -f /root/collected.jsonl ] && [ "$(wc -l < /root/collected.jsonl)" -ge 2 ] && break
  sleep 0.1
done
[ "$(wc -l < /root/collected.jsonl 2>/dev/null || echo 0)" -eq 2 ] \
  || fail "the collector did not get both records: $(cat /root/collected.jsonl 2>/dev/null)"
grep -q '"classification":"org.test/systemd/cli"' /root/collected.jsonl || fail "the CLI record is missing"
[ -z "$(find /var/spool/telemetry -maxdepth 1 -type f ! -name '.*')" ] || fail "records left in the spool"

echo "== the heartbeat probe's unit (what hprobe.timer starts daily)"
systemctl start hprobe.service
[ "$(systemctl show -p Result --value hprobe.service)" = success ] || fail "hprobe.service failed"
for _ in $(seq 1 300); do
  [ "$(wc -l < /root/collected.jsonl)" -ge 3 ] && break
  sleep 0.1
done
if ! grep -q '"classification":"org.clearlinux/heartbeat/ping"' /root/collected.jsonl; then
  journalctl --no-pager -u hprobe.service -u telempostd.service | tail -20
  fail "the heartbeat did not reach the collector"
fi

echo "== a failed service, reported by journal-probe-tail.service from the journal"
# The probe runs sandboxed (ProtectKernelTunables=), which in a container shows the host's boot
# id: this also checks that it still reads the container's boot (docs/probes.md).
systemctl is-active --quiet journal-probe-tail.service || fail "journal-probe-tail.service is not running"
for _ in $(seq 1 100); do
  [ -s /var/lib/telemetry/journalprobe.cursor ] && break
  sleep 0.1
done
[ -s /var/lib/telemetry/journalprobe.cursor ] || fail "journalprobe -t stored no journal position"
systemd-run --quiet --wait --unit=telemcheck-fails /bin/false || true
for _ in $(seq 1 300); do
  grep -q 'telemcheck-fails.service: Main process exited, code=exited' /root/collected.jsonl && break
  sleep 0.1
done
if ! grep '"classification":"org.clearlinux/journal/error"' /root/collected.jsonl \
    | grep -q 'telemcheck-fails.service: Main process exited, code=exited'; then
  journalctl --no-pager -u journal-probe-tail.service | tail -20
  fail "the failed service was not reported"
fi

echo "== the other probes' units start under their sandboxes"
systemctl start journal-probe.service
[ "$(systemctl show -p Result --value journal-probe.service)" = success ] || fail "journal-probe.service failed"
systemctl start crashprobe-journal.service
sleep 1
if ! systemctl is-active --quiet crashprobe-journal.service; then
  journalctl --no-pager -u crashprobe-journal.service | tail -20
  fail "crashprobe-journal.service is not running"
fi
systemctl stop crashprobe-journal.service
# Its stderr is the journal already: each message once, not also through the native protocol.
[ "$(journalctl --no-pager -o cat -u crashprobe-journal.service | grep -c 'no entry of this boot')" = 1 ] \
  || fail "crashprobe-journal.service logs its warning $(journalctl -o cat -u crashprobe-journal.service | grep -c 'no entry of this boot') times, not once"
if journalctl --no-pager -o cat -u journal-probe.service -u crashprobe-journal.service \
    | grep -E "error|ERROR"; then
  fail "errors from the probes"
fi

echo "== reload (ExecReload= sends SIGHUP) and the native journal"
systemctl reload telempostd.service
journalctl --sync
ready=$(journalctl -o verbose --no-pager -t telemprobd MESSAGE=ready)
echo "$ready" | grep -q "PRIORITY=5" || fail "telemprobd's 'ready' is not in the journal at notice level"
echo "$ready" | grep -q "_UID=$uid" || fail "telemprobd's journal entries are not from the telemetry user"
echo "$ready" | grep -q "CODE_FILE=telemprobd/src/server.rs" || fail "no structured fields in the journal"
for _ in $(seq 1 50); do
  journalctl --no-pager -t telempostd | grep -q "configuration reloaded" && break
  sleep 0.1
done
journalctl --no-pager -t telempostd | grep -q "configuration reloaded" || fail "telempostd did not reload"

echo "== idle exit (daemon recycling) and activation again"
# Both daemons exit after --idle-exit-secs without work (300 s by default; 2 s here). Nothing
# may be left that keeps the path unit starting telempostd again, and the next record must
# start telemprobd again from its socket.
for u in telemprobd telempostd; do
  mkdir -p /etc/systemd/system/$u.service.d
  printf '[Service]\nExecStart=\nExecStart=/usr/bin/%s --idle-exit-secs 2\n' "$u" \
    > /etc/systemd/system/$u.service.d/idle.conf
done
systemctl daemon-reload
systemctl stop telemprobd.service telempostd.service
before=$(wc -l < /root/collected.jsonl)
telem-record-gen -c org.test/systemd/idle -s 1 -p "before the idle exit"
for _ in $(seq 1 300); do
  [ "$(wc -l < /root/collected.jsonl)" -gt "$before" ] && break
  sleep 0.1
done
grep -q '"classification":"org.test/systemd/idle"' /root/collected.jsonl || fail "the record was not delivered"
for _ in $(seq 1 150); do
  ! systemctl is-active --quiet telemprobd.service && ! systemctl is-active --quiet telempostd.service && break
  sleep 0.1
done
for u in telemprobd.service telempostd.service; do
  ! systemctl is-active --quiet "$u" || fail "$u did not exit when idle"
  [ "$(systemctl show -p Result --value "$u")" = success ] || fail "$u did not exit cleanly when idle"
done
sleep 3
for u in telemprobd.service telempostd.service; do
  if systemctl is-active --quiet "$u"; then
    ls -la /var/spool/telemetry
    fail "$u was started again with nothing to do"
  fi
done
systemctl is-active --quiet telemprobd.socket || fail "telemprobd.socket stopped listening"
before=$(wc -l < /root/collected.jsonl)
telem-record-gen -c org.test/systemd/after-idle -s 1 -p "after the idle exit"
for _ in $(seq 1 300); do
  [ "$(wc -l < /root/collected.jsonl)" -gt "$before" ] && break
  sleep 0.1
done
grep -q '"classification":"org.test/systemd/after-idle"' /root/collected.jsonl \
  || fail "the record after the idle exit was not delivered"
rm -r /etc/systemd/system/telemprobd.service.d /etc/systemd/system/telempostd.service.d
systemctl daemon-reload

echo "== the units' exposure as systemd rates it"
systemd-analyze security --no-pager telemprobd.service telempostd.service journal-probe-tail.service \
  | sed -n '/^UNIT/,$p'

echo "== telemctl status / journal"
telemctl status | tee /root/status.txt
! grep -q "last delivery: never" /root/status.txt || fail "telemctl status forgot the deliveries"
telemctl journal

echo "== telemctl stop / start / restart / is-active / config"
telemctl stop >/dev/null
for u in telemprobd.socket telempostd.path hprobe.timer journal-probe-tail.service telemprobd.service telempostd.service; do
  ! systemctl is-active --quiet "$u" || fail "$u is still active after telemctl stop"
done
# As the original: it prints systemctl's word for the socket and the path unit, and exits 0.
[ "$(telemctl is-active)" = "$(printf 'telemprobd : inactive\ntelempostd : inactive')" ] \
  || fail "telemctl is-active after stop: $(telemctl is-active)"
telemctl start >/dev/null
for u in telemprobd.socket telempostd.path hprobe.timer journal-probe-tail.service; do
  systemctl is-active --quiet "$u" || fail "$u is not active after telemctl start"
done
telemctl restart >/dev/null
systemctl is-active --quiet telemprobd.socket || fail "telemprobd.socket is not active after telemctl restart"
telem-record-gen -c org.test/systemd/restart -s 1 -p "after telemctl restart"
[ "$(telemctl is-active)" = "$(printf 'telemprobd : active\ntelempostd : active')" ] \
  || fail "telemctl is-active after restart: $(telemctl is-active)"
telemctl config | grep -q "127.0.0.1:18181" || fail "telemctl config does not show the configured server"

echo "== a clean stop"
systemctl stop telemprobd.socket telemprobd.service telempostd.path telempostd.service
for u in telemprobd.service telempostd.service; do
  [ "$(systemctl show -p Result --value "$u")" = success ] || fail "$u did not stop cleanly"
done
if journalctl --no-pager -p err -t telemprobd -t telempostd | grep -v -- '-- No entries --' | grep -q .; then
  journalctl --no-pager -p err -t telemprobd -t telempostd
  fail "errors in the daemons' journal"
fi
echo "== telemctl opt-out"
telemctl opt-out
[ ! -e /etc/telemetrics/opt-in ] || fail "the opt-in file is still there"
for u in telemprobd.socket telempostd.path hprobe.timer; do
  ! systemctl is-active --quiet "$u" || fail "$u is still active after opt-out"
done
[ ! -e /var/lib/telemetry/machine_id ] || fail "the machine id is still there after opt-out"
if telem-record-gen -c org.test/systemd/late -s 1 -p "after opt-out" 2>/root/late.err; then
  fail "a record was accepted after opt-out"
fi
grep -q "not opted in" /root/late.err || fail "no clear error after opt-out: $(cat /root/late.err)"
echo "PASS: the units work under systemd $(systemctl --version | head -n 1 | cut -d' ' -f2)"
INSIDE
passed=1
