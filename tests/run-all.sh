#!/usr/bin/env bash
# run-all.sh - build everything and run every test suite: the README's test
# command and what CI runs. Installs missing Debian packages when root.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v meson >/dev/null 2>&1 || need+=(meson)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v python3 >/dev/null 2>&1 || need+=(python3)
pkg-config --exists check 2>/dev/null || need+=(check)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q "${need[@]}"
  else
    echo "run-all.sh: missing ${need[*]}: install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

build=${BUILD_DIR:-build-test}
meson setup "$build" --buildtype=release >/dev/null 2>&1 || meson setup --reconfigure "$build" --buildtype=release
ninja -C "$build"
meson test -C "$build" --print-errorlogs --num-processes 2
