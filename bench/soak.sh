#!/usr/bin/env bash
# soak.sh [SECONDS=60] [THREADS=3] [MODEL] - build bench/soak.c against a
# release build of the library and run it: several threads share one model
# (synthetic tiny-a unless MODEL is given) through many contexts,
# generations and state save/load cycles; fails on any error, on a greedy
# result that changes, or on RSS growth above SOAK_LIMIT_PCT (default 5).
#   SOAK_BUILD_DIR   meson build dir (default build-soak)
set -euo pipefail
cd "$(dirname "$0")/.."
b=${SOAK_BUILD_DIR:-build-soak}
if [ ! -f "$b/build.ninja" ]; then
  meson setup "$b" --buildtype=release -Dtests=false >/dev/null
fi
ninja -C "$b" lib/libdanu.a >/dev/null
cc -std=c11 -O2 -g -D_GNU_SOURCE -DDN_TEST_DATA="\"$PWD/tests/data\"" -Iinclude bench/soak.c "$b/lib/libdanu.a" \
  -lm -lpthread -o "$b/soak"
exec "$b/soak" "${1:-60}" "${2:-3}" "${3:-}" "${SOAK_LIMIT_PCT:-5}"
