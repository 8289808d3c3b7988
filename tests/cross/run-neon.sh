#!/bin/sh
# Build test_kernels for aarch64 and run it under qemu: DANU_ISA=scalar,
# baseline NEON (qemu's cortex-a53 model has no dot product) and the
# default (qemu's "max" CPU: NEON + dotprod).
#   tests/cross/run-neon.sh [build-dir]      (default /tmp/build-arm64)
# Installs what it needs with apt-get when missing (root, Debian multiarch).
# Runs take ~1 min each; DN_TEST_LIGHT=1 in the environment shrinks the
# shapes (seconds). CK_FORK=no: Check's forked test cases spin forever
# under qemu-user (timer/fork emulation), in-process ones run fine.
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-/tmp/build-arm64}

need=""
command -v aarch64-linux-gnu-gcc >/dev/null || need="$need gcc-aarch64-linux-gnu"
command -v qemu-aarch64 >/dev/null || need="$need qemu-user"
[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/check.pc ] || need="$need check:arm64 libsubunit-dev:arm64"
if [ -n "$need" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q $need
fi

if [ -d "$build" ]; then
    meson setup --reconfigure --cross-file "$src/tests/cross/aarch64-linux-gnu.ini" "$build" "$src" >/dev/null
else
    meson setup --cross-file "$src/tests/cross/aarch64-linux-gnu.ini" "$build" "$src" >/dev/null
fi
ninja -C "$build" tests/test_kernels tests/test_repack

export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export CK_DEFAULT_TIMEOUT=1200 CK_FORK=no
echo "== DANU_ISA=scalar"
DANU_ISA=scalar qemu-aarch64 "$build/tests/test_kernels"
echo "== baseline NEON (cortex-a53: no dotprod)"
QEMU_CPU=cortex-a53 qemu-aarch64 "$build/tests/test_kernels"
echo "== default (max CPU: neon_dot)"
qemu-aarch64 "$build/tests/test_kernels"
echo "== repacked x16 layouts on the NEON tables (per-block fallback), max CPU"
qemu-aarch64 "$build/tests/test_repack"
