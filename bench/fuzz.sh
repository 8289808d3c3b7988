#!/usr/bin/env bash
# fuzz.sh [SECONDS] - build the libFuzzer harnesses of tests/fuzz with clang
# (ASan + UBSan, the library as a clang-built static archive with coverage) and
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
targets=${FUZZ_TARGETS:-"gguf safetensors json config spm tok_encode tok_decode gguf_tokenizer state gbnf json_schema"}
CC=${FUZZ_CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (apt-get install clang)" >&2; exit 1; }
mkdir -p "$B"

# The library: every lib/ file compiled by clang with libFuzzer coverage,
# ASan and UBSan, into one static archive (no meson: the build stays
# independent of the test wiring). The ISA kernel files are built without
# sanitizers or coverage: clang needs minutes and GBs for them under ASan,
# they are fuzzed only through the state harness, and test_kernels checks them.
san="-fsanitize=address,undefined -fno-sanitize-recover=all"
cflags="-std=c11 -g -O1 -D_GNU_SOURCE -fvisibility=hidden -fno-math-errno -Iinclude -Ilib"
mkdir -p "$B/obj"
objs=()
compile() {   # src obj flags...
  local src=$1 obj=$2; shift 2
  if [ ! "$obj" -nt "$src" ] || [ -n "$(find lib -name '*.h' -newer "$obj" -print -quit)" ]; then
    $CC $cflags "$@" -c "$src" -o "$obj" || return 1
  fi
}
pids=()
for src in $(find lib -name '*.c' | sort); do
  obj=$B/obj/$(echo "${src#lib/}" | tr / _).o
  case "$src" in
    lib/common/os_win32.c) continue ;;   # the Windows half of the os layer
    lib/kernels/avx2vnni*.c) [ "$(uname -m)" = x86_64 ] || continue; flags="-mavx2 -mfma -mf16c -mavxvnni" ;;
    lib/kernels/avx2*.c) [ "$(uname -m)" = x86_64 ] || continue; flags="-mavx2 -mfma -mf16c" ;;
    lib/kernels/avx512*.c) [ "$(uname -m)" = x86_64 ] || continue
      flags="-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16" ;;
    lib/kernels/neon.c) [ "$(uname -m)" = aarch64 ] || continue; flags="" ;;
    lib/kernels/neon_dot.c) [ "$(uname -m)" = aarch64 ] || continue; flags="-march=armv8.2-a+dotprod" ;;
    lib/kernels/neon_i8mm.c) [ "$(uname -m)" = aarch64 ] || continue; flags="-march=armv8.2-a+dotprod+i8mm" ;;
    *) flags="-fsanitize=fuzzer-no-link $san" ;;
  esac
  objs+=("$obj")
  compile "$src" "$obj" $flags &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
done
for p in "${pids[@]}"; do wait "$p" || { echo "fuzz.sh: library build failed" >&2; exit 1; }; done
rm -f "$B/libdanu-fuzz.a"
ar rcs "$B/libdanu-fuzz.a" "${objs[@]}"

for t in $targets; do
  src=tests/fuzz/fuzz_$t.c
  $CC -fsanitize=fuzzer $san $cflags -DDN_TEST_DATA="\"$root/tests/data\"" -Itests/fuzz \
    "$src" "$B/libdanu-fuzz.a" -lm -lpthread -o "$B/fuzz_$t"
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
    d = f - s; r = 0; if (d > 0) r = e / d; note = ""; if (rc != 0) note = "  (exit " rc ", see log)"
    printf "%-15s executions %10d  seconds %6.1f  exec/s %8.0f  crashes %d%s\n", t, e, d, r, c, note }' > "$B/logs/$t.summary"
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
