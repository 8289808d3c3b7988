#!/usr/bin/env bash
# fuzz.sh [SECONDS] - build the libFuzzer harnesses of tests/fuzz with clang
# (ASan + UBSan, the library as a clang-built static lib with coverage) and
# run each for SECONDS (default 60). Prints per target: executions, seconds,
# executions/s, crashes. Exit status 1 if any target crashed.
#   FUZZ_BUILD_DIR  build + corpus dir (default /tmp/danu-fuzz); the working
#                   corpus under it grows across runs
#   FUZZ_JOBS       targets run at once (default: online cores)
#   FUZZ_TARGETS    subset, e.g. "gguf json"
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
B=${FUZZ_BUILD_DIR:-/tmp/danu-fuzz}
jobs=${FUZZ_JOBS:-$(nproc)}
targets=${FUZZ_TARGETS:-"gguf safetensors json config spm tok_encode tok_decode gguf_tokenizer state"}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang)" >&2; exit 1; }
mkdir -p "$B"

# the library: every lib/ file compiled by clang with coverage for libFuzzer
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
if [ ! -f "$B/lib/build.ninja" ]; then
  CC=$CC CFLAGS="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -g" \
    meson setup "$B/lib" "$root" -Db_sanitize=address,undefined -Db_lundef=false \
      -Dtests=false --buildtype=debugoptimized >"$B/meson-setup.log" 2>&1 \
    || { cat "$B/meson-setup.log"; exit 1; }
fi
ninja -C "$B/lib" lib/libdanu.a >"$B/ninja.log" 2>&1 || { tail -30 "$B/ninja.log"; exit 1; }

for t in $targets; do
  src=tests/fuzz/fuzz_$t.c
  if [ ! "$B/fuzz_$t" -nt "$src" ] || [ ! "$B/fuzz_$t" -nt "$B/lib/lib/libdanu.a" ]; then
    $CC -fsanitize=fuzzer $san -g -O1 -std=c11 -D_GNU_SOURCE -DDN_TEST_DATA="\"$root/tests/data\"" \
      -Iinclude -Ilib -Itests/fuzz "$src" "$B/lib/lib/libdanu.a" -lm -lpthread -o "$B/fuzz_$t"
  fi
done

# seeds, regenerated each run (small and derived from tests/data)
rm -rf "$B/seeds"
python3 tests/fuzz/make_corpus.py "$B/seeds"
if [[ " $targets " == *" state "* ]]; then
  mkdir -p "$B/seeds/state"
  DN_FUZZ_SEED_OUT="$B/seeds/state" "$B/fuzz_state" >/dev/null 2>&1
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mkdir -p "$B/logs" "$B/artifacts"
run_one() {
  local t=$1
  mkdir -p "$B/corpus/$t"
  rm -f "$B/artifacts/$t-"*
  local start=$(date +%s.%N) rc=0
  "$B/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2560 -max_len=131072 \
    -artifact_prefix="$B/artifacts/$t-" "$B/corpus/$t" "$B/seeds/$t" >"$B/logs/$t.log" 2>&1 || rc=$?
  local end=$(date +%s.%N)
  local execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/logs/$t.log" | tail -1)
  local crashes=$(ls "$B/artifacts/$t-"* 2>/dev/null | wc -l)
  [ "$rc" != 0 ] && [ "$crashes" = 0 ] && crashes=1
  awk -v t="$t" -v e="${execs:-0}" -v s="$start" -v f="$end" -v c="$crashes" -v rc="$rc" 'BEGIN {
    d = f - s; printf "%-15s executions %10d  seconds %6.1f  exec/s %8.0f  crashes %d%s\n",
      t, e, d, d > 0 ? e / d : 0, c, rc ? "  (exit " rc ", see log)" : "" }' > "$B/logs/$t.summary"
}
pids=()
for t in $targets; do
  run_one "$t" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
done
wait
fail=0
for t in $targets; do
  cat "$B/logs/$t.summary"
  grep -q "crashes 0" "$B/logs/$t.summary" || { fail=1; echo "  log: $B/logs/$t.log; inputs: $B/artifacts/$t-*"; }
done
exit $fail
