#!/bin/sh
# Build test_kernels for aarch64 and run it under qemu: DANU_ISA=scalar,
# baseline NEON (qemu's cortex-a53 model has no dot product) and the
# default (qemu's "max" CPU: NEON + dotprod + i8mm). test_x16_neon runs
# the x16 gemms of neon_dot and neon_i8mm on "max", neon_dot alone on
# cortex-a76 (dot product, no i8mm) and the baseline fallback on
# cortex-a53.
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
ninja -C "$build" tests/test_kernels tests/test_repack tests/test_x16_neon

export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export CK_DEFAULT_TIMEOUT=1200 CK_FORK=no
echo "== DANU_ISA=scalar"
DANU_ISA=scalar qemu-aarch64 "$build/tests/test_kernels"
echo "== baseline NEON (cortex-a53: no dotprod)"
QEMU_CPU=cortex-a53 qemu-aarch64 "$build/tests/test_kernels"
echo "== default (max CPU: neon_i8mm)"
qemu-aarch64 "$build/tests/test_kernels"
echo "== repacked x16 layouts on every NEON table (x16 gemms or per-block fallback), max CPU"
qemu-aarch64 "$build/tests/test_repack"
echo "== x16 gemms: neon_dot and neon_i8mm (max CPU), neon_dot alone (cortex-a76), fallback (cortex-a53)"
QEMU_CPU=max qemu-aarch64 "$build/tests/test_x16_neon"
QEMU_CPU=cortex-a76 qemu-aarch64 "$build/tests/test_x16_neon"
QEMU_CPU=cortex-a53 qemu-aarch64 "$build/tests/test_x16_neon"
