#!/usr/bin/env bash
# run.sh - the Windows stage: cross-build danu.dll and tests/win/test_win.exe
# with MinGW-w64 (cross/x86_64-w64-mingw32.txt), check the DLL's exports and
# imports (tests/abi/check_dll.sh), and run the test program under Wine.
# Installs nothing: needs x86_64-w64-mingw32-gcc-win32, wine, meson, ninja
# (Debian: apt-get install gcc-mingw-w64-x86-64 wine64 meson ninja-build).
#
#   tests/win/run.sh [BUILD_DIR]     default BUILD_DIR: build-win in the source
#
# The Wine prefix lives in BUILD_DIR/wineprefix (made on the first run, ~1 min);
# the test writes into BUILD_DIR/win-tmp. Exit 0 when all passes, 1 on a
# failure, 77 when a tool is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build-win}
t_start=$(date +%s)

for tool in x86_64-w64-mingw32-gcc-win32 x86_64-w64-mingw32-objdump wine meson ninja python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found (Debian: apt-get install gcc-mingw-w64-x86-64 wine64 meson ninja-build)"
        exit 77
    fi
done

step() { echo "== $1 ($(( $(date +%s) - t_start )) s)"; }

step "cross-build in $build"
mkdir -p "$build"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$src" --cross-file "$src/cross/x86_64-w64-mingw32.txt" \
        --buildtype=release -Ddefault_library=shared -Dtests=false >"$build/run-setup.log" 2>&1 ||
        { cat "$build/run-setup.log"; echo "FAIL: meson setup"; exit 1; }
fi
ninja -C "$build" -j2 >"$build/run-ninja.log" 2>&1 || { tail -40 "$build/run-ninja.log"; echo "FAIL: cross-build"; exit 1; }
if grep -q 'warning:' "$build/run-ninja.log"; then
    grep 'warning:' "$build/run-ninja.log" | head -20
    echo "FAIL: the cross-build has warnings"
    exit 1
fi
dll=$build/lib/danu.dll
exe=$build/tests/win/test_win.exe

step "DLL exports and imports"
bash "$src/tests/abi/check_dll.sh" "$dll" --src "$src" || { echo "FAIL: check_dll.sh"; exit 1; }

step "test_win.exe under Wine"
cp "$dll" "$build/tests/win/"   # next to the exe: the DLL search finds it there
export WINEPREFIX=$build/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ ! -d "$WINEPREFIX" ]; then
    wineboot -i >/dev/null 2>&1 || wine cmd /c exit >/dev/null 2>&1 || true
fi
rm -rf "$build/win-tmp"
mkdir -p "$build/win-tmp"
out=$build/test_win.log
# What runtime dispatch should pick here (cpuid + xgetbv inside Wine see the
# host CPU): AVX-512 (with VNNI and BF16) > AVX2+FMA+F16C > scalar.
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512_vnni && has avx512_bf16; then isa=3
elif has avx2 && has fma && has f16c; then isa=2
else isa=1; fi
export DN_WIN_EXPECT_ISA=$isa
# Wine maps the Unix paths: Z:\... is the root directory.
wine "$exe" "$src/tests/data" "$build/win-tmp" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then
    step "goldens again with the AVX2 kernels (DANU_ISA=avx2)"
    rm -rf "$build/win-tmp2"
    mkdir -p "$build/win-tmp2"
    [ "$isa" -gt 2 ] && export DN_WIN_EXPECT_ISA=2
    DANU_ISA=avx2 wine "$exe" "$src/tests/data" "$build/win-tmp2" models 2>&1 | tee "$build/test_win_avx2.log"
    rc=${PIPESTATUS[0]}
    grep -qE '^[0-9]+ passed, 0 failed' "$build/test_win_avx2.log" || rc=1
fi
wineserver -w 2>/dev/null || true
step "done"
if [ "$rc" -ne 0 ] || ! grep -qE '^[0-9]+ passed, 0 failed' "$out"; then
    echo "FAIL: test_win.exe (exit $rc)"
    exit 1
fi
exit 0
