#!/usr/bin/env bash
# run-all.sh - build everything and run every test: the README's test command
# and what CI runs. Stages:
#   1. the Check suites, bindings, examples and ABI check (meson test: the
#      default setup, which leaves out the suite 'slow')
#   2. the slow stage (meson test --suite slow, one test at a time): wall-clock
#      bounds, idle workers' CPU use over a time window, the ABI self-test
#   3. the NEON kernels, cross-compiled for aarch64 and run under qemu-user
#   4. Windows: danu.dll, tests/win/test_win.exe and danu.exe cross-built with
#      MinGW-w64, the DLL's exports checked, the test run under Wine, danu.exe's
#      output against stage 1's danu (tests/win/run.sh)
#   5. the whole suite under ASan+UBSan, the threaded suites under TSan
#   6. each libFuzzer harness for FUZZ_SECONDS (default 60)
# DANU_TEST_QUICK=1 runs stage 1 only. Installs missing Debian packages when root.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=${DANU_TEST_QUICK:-0}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have meson || need+=(meson)
have ninja || need+=(ninja-build)
have cc || need+=(gcc)
have c++ || need+=(g++)
have pkg-config || need+=(pkg-config)
have python3 || need+=(python3)
have mcs || need+=(mono-mcs)           # the C# binding test (meson test csharp)
have mono || need+=(mono-runtime)
# the python_install test makes a venv with pip (Debian: python3-venv)
venv_probe=$(mktemp -d)
python3 -m venv "$venv_probe/v" >/dev/null 2>&1 || need+=(python3-venv)
rm -rf "$venv_probe"
pkg-config --exists check 2>/dev/null || need+=(check)
if [ "$quick" != 1 ]; then
  have clang || need+=(clang libclang-rt-14-dev)
  have aarch64-linux-gnu-gcc || need+=(gcc-aarch64-linux-gnu)
  have qemu-aarch64 || need+=(qemu-user)
  have x86_64-w64-mingw32-gcc-win32 || need+=(gcc-mingw-w64-x86-64)
  have wine || need+=(wine64 wine)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q "${need[@]}"
  else
    echo "run-all.sh: missing ${need[*]}: install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

t0=$(date +%s)
stage() { echo; echo "=== run-all.sh: $1 ($(( $(date +%s) - t0 )) s so far) ==="; }

stage "1/6 build and test suites"
build=${BUILD_DIR:-build-test}
meson setup "$build" --buildtype=release >/dev/null 2>&1 || meson setup --reconfigure "$build" --buildtype=release
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2
[ "$quick" = 1 ] && exit 0

stage "2/6 slow stage (wall-clock bounds, time windows)"
meson test -C "$build" --no-rebuild --print-errorlogs --num-processes 1 --suite slow

stage "3/6 NEON kernels under qemu-aarch64"
DN_TEST_LIGHT=1 sh tests/cross/run-neon.sh "$PWD/build-arm64"

stage "4/6 Windows (MinGW-w64 cross-build, Wine)"
DANU_NATIVE_BUILD=$(cd "$build" && pwd) bash tests/win/run.sh "$PWD/build-win"

stage "5/6 sanitizers"
bash tests/sanitize.sh

stage "6/6 fuzzing, ${FUZZ_SECONDS:-60} s per target"
FUZZ_BUILD_DIR="$PWD/build-fuzz" bash bench/fuzz.sh "${FUZZ_SECONDS:-60}"

stage "done"
