#!/usr/bin/env bash
# Installs telemetrics: binaries, libtelemetry.so.4 with its links, libtelemetry.a, telemetry.h,
# libtelemetry.pc, systemd units, tmpfiles.d, sysusers.d, sysctl.d, the default config with
# every key commented, and man pages (section 1 from the binaries' clap definitions, section 3
# for the C library, section 5 for telemetrics.conf) plus bash/zsh/fish completions, generated
# by telem-docgen (built alongside them).
#
#   scripts/install.sh [--no-build] [--profile-dir DIR] [--help]
#
#   --no-build         install what DIR holds, do not build (the default builds the release
#                      profile into target/release)
#   --profile-dir DIR  take the binaries from DIR (default target/release)
#
# Environment (defaults in brackets):
#   PREFIX [/usr/local], DESTDIR [empty: the live system], BINDIR [$PREFIX/bin],
#   LIBDIR [$PREFIX/lib], INCLUDEDIR [$PREFIX/include], DATADIR [$PREFIX/share],
#   SYSCONFDIR [/etc], VENDORCONFDIR [/usr/share/defaults/telemetrics: the one place the
#   programs read the vendor config from, whatever the prefix], UNITDIR, TMPFILESDIR,
#   SYSUSERSDIR, SYSCTLDIR, SYSTEMCONFDIR [below $PREFIX/lib, where systemd looks for both
#   /usr and /usr/local], MANDIR [$DATADIR/man], BASHCOMPLETIONDIR, ZSHCOMPLETIONDIR,
#   FISHCOMPLETIONDIR [each shell's vendor directory below $DATADIR]; SOURCE_DATE_EPOCH, when
#   set, dates the man pages.
#
# A packager: `PREFIX=/usr DESTDIR=$pkgdir scripts/install.sh`. Paths inside the units are
# substituted from these values.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
profile_dir=target/release
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --profile-dir) profile_dir=${2:?--profile-dir needs a directory}; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-$PREFIX/bin}
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
DATADIR=${DATADIR:-$PREFIX/share}
SYSCONFDIR=${SYSCONFDIR:-/etc}
# Compiled into every program (libtelemetry's VENDOR_CONFIG), so not below PREFIX.
VENDORCONFDIR=${VENDORCONFDIR:-/usr/share/defaults/telemetrics}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
TMPFILESDIR=${TMPFILESDIR:-$PREFIX/lib/tmpfiles.d}
SYSUSERSDIR=${SYSUSERSDIR:-$PREFIX/lib/sysusers.d}
SYSCTLDIR=${SYSCTLDIR:-$PREFIX/lib/sysctl.d}
SYSTEMCONFDIR=${SYSTEMCONFDIR:-$PREFIX/lib/systemd/system.conf.d}
MANDIR=${MANDIR:-$DATADIR/man}
BASHCOMPLETIONDIR=${BASHCOMPLETIONDIR:-$DATADIR/bash-completion/completions}
ZSHCOMPLETIONDIR=${ZSHCOMPLETIONDIR:-$DATADIR/zsh/site-functions}
FISHCOMPLETIONDIR=${FISHCOMPLETIONDIR:-$DATADIR/fish/vendor_completions.d}

bins="telemprobd telempostd telemctl telem_journal telem-record-gen crashprobe klogscanner journalprobe pstoreprobe pstoreclean hprobe rasprobe"
if [ "$build" = 1 ]; then
  # The daemons alone first: built with the whole workspace, cargo would unify tokio's features
  # with telem-server's and link its multi-thread scheduler (and libm) into them.
  cargo build --release --locked -p telemprobd -p telempostd
  cargo build --release --locked --workspace --exclude telem-collector --exclude telemprobd \
    --exclude telempostd
  profile_dir=target/release
fi
for b in $bins telem-docgen; do
  [ -x "$profile_dir/$b" ] || { echo "install.sh: $profile_dir/$b is missing (build first)" >&2; exit 1; }
done

d() { install -d -m 0755 "$DESTDIR$1"; }
for dir in "$BINDIR" "$LIBDIR/pkgconfig" "$INCLUDEDIR" "$UNITDIR" "$TMPFILESDIR" "$SYSUSERSDIR" \
           "$SYSCTLDIR" "$SYSTEMCONFDIR" "$VENDORCONFDIR" "$MANDIR/man1" "$MANDIR/man3" "$MANDIR/man5" \
           "$BASHCOMPLETIONDIR" "$ZSHCOMPLETIONDIR" "$FISHCOMPLETIONDIR"; do
  d "$dir"
done
for b in $bins; do
  install -m 0755 "$profile_dir/$b" "$DESTDIR$BINDIR/$b"
done

# The C library: relink the static archive with the original version script.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
sh libtelemetry/build-so.sh "$profile_dir/libtelemetry.a" "$stage" "$PREFIX"
install -m 0755 "$stage/libtelemetry.so.4.1.0" "$DESTDIR$LIBDIR/libtelemetry.so.4.1.0"
ln -sf libtelemetry.so.4.1.0 "$DESTDIR$LIBDIR/libtelemetry.so.4"
ln -sf libtelemetry.so.4 "$DESTDIR$LIBDIR/libtelemetry.so"
install -m 0644 "$stage/libtelemetry.a" "$DESTDIR$LIBDIR/libtelemetry.a"
sed -e "s|^libdir=.*|libdir=$LIBDIR|" -e "s|^includedir=.*|includedir=$INCLUDEDIR|" \
  "$stage/libtelemetry.pc" > "$stage/libtelemetry.pc.out"
install -m 0644 "$stage/libtelemetry.pc.out" "$DESTDIR$LIBDIR/pkgconfig/libtelemetry.pc"
install -m 0644 include/telemetry.h "$DESTDIR$INCLUDEDIR/telemetry.h"

subst() {
  sed -e "s|@bindir@|$BINDIR|g" -e "s|@sysconfdir@|$SYSCONFDIR|g" "$1"
}
for f in systemd/*.service.in systemd/*.socket.in systemd/*.path.in systemd/*.timer.in; do
  name=$(basename "$f" .in)
  subst "$f" > "$stage/$name"
  install -m 0644 "$stage/$name" "$DESTDIR$UNITDIR/$name"
done
subst systemd/telemetrics-dirs.conf.in > "$stage/telemetrics-dirs.conf"
install -m 0644 "$stage/telemetrics-dirs.conf" "$DESTDIR$TMPFILESDIR/telemetrics-dirs.conf"
install -m 0644 systemd/telemetrics.sysusers.conf "$DESTDIR$SYSUSERSDIR/telemetrics.conf"
subst systemd/40-crash-probe.conf.in > "$stage/40-crash-probe.conf"
install -m 0644 "$stage/40-crash-probe.conf" "$DESTDIR$SYSCTLDIR/40-crash-probe.conf"
install -m 0644 systemd/40-core-ulimit.conf "$DESTDIR$SYSTEMCONFDIR/40-core-ulimit.conf"
install -m 0644 systemd/telemetrics.conf "$DESTDIR$VENDORCONFDIR/telemetrics.conf"

# Man pages (one per binary, plus telemctl-<subcommand>; telemetry(3) and one per C function;
# telemetrics.conf(5)) and completions, rendered from the same clap definitions the binaries
# parse with, the C library's return-value table and the configuration defaults. telem-docgen
# itself is not installed.
"$profile_dir/telem-docgen" man "$stage/man"
"$profile_dir/telem-docgen" completions "$stage/completions"
for s in 1 3 5; do
  for f in "$stage"/man/man$s/*.$s; do
    install -m 0644 "$f" "$DESTDIR$MANDIR/man$s/$(basename "$f")"
  done
done
comp=$stage/completions
for b in $bins; do
  install -m 0644 "$comp/bash-completion/completions/$b" "$DESTDIR$BASHCOMPLETIONDIR/$b"
  install -m 0644 "$comp/zsh/site-functions/_$b" "$DESTDIR$ZSHCOMPLETIONDIR/_$b"
  install -m 0644 "$comp/fish/vendor_completions.d/$b.fish" "$DESTDIR$FISHCOMPLETIONDIR/$b.fish"
done
echo "installed telemetrics into ${DESTDIR:-/}$PREFIX"
