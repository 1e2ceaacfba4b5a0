#!/bin/sh
# Builds the C library from the Rust static archive:
#   build-so.sh <path/to/libtelemetry.a> <out dir> [prefix] [version]
# writes <out>/libtelemetry.so.4.1.0 with its libtelemetry.so.4 and libtelemetry.so links,
# <out>/libtelemetry.a and <out>/libtelemetry.pc.
#
# Why a relink and not a cdylib: rustc passes its own anonymous version script to every cdylib
# link, which either breaks GNU ld or silently wins over ours under lld, leaving the exports
# unversioned. Relinking the whole static archive with gcc and the original version script
# gives exactly the original symbol versions (see docs/c-library.md).
set -eu
archive=$1
out=$2
prefix=${3:-/usr}
version=${4:-4.1.0}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
# Native libraries the Rust standard library needs (rustc --print native-static-libs), for
# static linkers (libtelemetry.pc); on glibc >= 2.34 only libc and libgcc_s end up NEEDED.
native="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
# The shared object takes the unwinder from libgcc_eh.a instead (-static-libgcc): one library
# fewer for every program that loads it to find, map and relocate (docs/benchmarks.md). Without
# that archive it needs libgcc_s.so.1 as before.
so_native="-lutil -lrt -lpthread -lm -ldl -lc"
if eh=$(${CC:-cc} -print-file-name=libgcc_eh.a) && [ -f "$eh" ]; then
  so_native="-static-libgcc $so_native"
else
  so_native="-lgcc_s $so_native"
fi
tmp="$out/.libtelemetry.so.$version.tmp"
# shellcheck disable=SC2086
${CC:-cc} -shared -o "$tmp" \
  -Wl,--whole-archive "$archive" -Wl,--no-whole-archive \
  -Wl,--version-script="$here/telemetry.sym" -Wl,-soname,libtelemetry.so.4 \
  -Wl,--no-undefined-version -Wl,--no-undefined -Wl,--as-needed -Wl,--gc-sections \
  -Wl,--strip-debug -Wl,-z,noexecstack -Wl,-z,relro,-z,now \
  $so_native
mv -f "$tmp" "$out/libtelemetry.so.$version"
ln -sf "libtelemetry.so.$version" "$out/libtelemetry.so.4"
ln -sf libtelemetry.so.4 "$out/libtelemetry.so"
cp -f "$archive" "$out/libtelemetry.a.tmp" && mv -f "$out/libtelemetry.a.tmp" "$out/libtelemetry.a"
sed -e "s|@prefix@|$prefix|g" -e "s|@version@|$version|g" -e "s|@native@|$native|g" \
  "$here/libtelemetry.pc.in" > "$out/libtelemetry.pc"
