#!/usr/bin/env bash
# sanitize.sh - the whole meson test suite under AddressSanitizer +
# UndefinedBehaviorSanitizer (gcc), then the multi-threaded suites (context:
# two threads on one model, abort from another thread; api: abort during
# generation; threads: contexts and models sharing a pool, a host job
# system, slices run on other threads; batch: many contexts in one pass;
# grammar_threads: one constraint used by contexts on four threads)
# under ThreadSanitizer. Any report
# fails the run.
#   SAN_BUILD_DIR / TSAN_BUILD_DIR   build dirs (default build-asan, build-tsan)
#   SAN_JOBS                         parallel tests (default: online cores)
#   SAN_SKIP_TSAN=1 / SAN_SKIP_ASAN=1  only one of the two parts
set -euo pipefail
cd "$(dirname "$0")/.."
asan=${SAN_BUILD_DIR:-build-asan}
tsan=${TSAN_BUILD_DIR:-build-tsan}
jobs=${SAN_JOBS:-$(nproc)}
t0=$(date +%s)

setup() {   # dir sanitizer
  if [ -f "$1/build.ninja" ]; then
    meson setup --reconfigure "$1" >/dev/null
  else
    meson setup "$1" -Db_sanitize="$2" -Db_lundef=false --buildtype=debugoptimized >/dev/null
  fi
}

if [ "${SAN_SKIP_ASAN:-0}" != 1 ]; then
  # ASan + UBSan: every suite. UBSan's checks are recoverable under gcc, so
  # halt_on_error makes the first report fail the test.
  setup "$asan" address,undefined
  ninja -C "$asan"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  # Tests that load the sanitized libdanu.so into a Python interpreter (ctypes
  # bindings, example scripts) stop with "ASan runtime does not come first":
  # those, and only those, are rerun with ASan preloaded and leak checking off
  # (the interpreter's own allocations would be reported).
  rc=0
  meson test -C "$asan" --print-errorlogs --num-processes "$jobs" --timeout-multiplier 3 || rc=$?
  if [ "$rc" != 0 ]; then
    rerun=$(python3 - "$asan/meson-logs/testlog.json" <<'PY'
import json, sys
bad, other = [], []
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] in ("OK", "SKIP", "EXPECTEDFAIL"):
        continue
    out = (t.get("stdout") or "") + (t.get("stderr") or "")
    (bad if "does not come first" in out else other).append(t["name"].split(" / ")[-1])
print(" ".join(bad) if bad and not other else "")
PY
  )
    [ -n "$rerun" ] || { echo "sanitize.sh: ASan+UBSan suite failed" >&2; exit 1; }
    preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    echo "sanitize.sh: rerunning with ASan preloaded: $rerun"
    # shellcheck disable=SC2086
    meson test -C "$asan" --print-errorlogs --num-processes "$jobs" --timeout-multiplier 3 \
      --wrapper "env LD_PRELOAD='$preload' ASAN_OPTIONS=detect_leaks=0:abort_on_error=1" $rerun
  fi
  echo "sanitize.sh: ASan+UBSan suite passed in $(($(date +%s) - t0)) s"
fi
t1=$(date +%s)

if [ "${SAN_SKIP_TSAN:-0}" != 1 ]; then
  setup "$tsan" thread
  ninja -C "$tsan" tests/test_context tests/test_api tests/test_threads tests/test_batch tests/test_grammar   # only what runs (TSan builds are slow)
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:history_size=4
  meson test -C "$tsan" --no-rebuild --print-errorlogs --num-processes "$jobs" --timeout-multiplier 6 context api threads batch grammar_threads
  # the idle-workers check (context's slow stage) under TSan too, as before it moved there
  meson test -C "$tsan" --no-rebuild --print-errorlogs --num-processes 1 --timeout-multiplier 6 --suite slow context_slow
  echo "sanitize.sh: ThreadSanitizer (context, api, threads, batch, grammar_threads) passed in $(($(date +%s) - t1)) s"
fi
echo "sanitize.sh: all clean in $(($(date +%s) - t0)) s"
