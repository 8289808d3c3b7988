#!/usr/bin/env bash
# run.sh - the Windows stage: cross-build danu.dll, tests/win/test_win.exe and
# the danu CLI (danu.exe) with MinGW-w64 (cross/x86_64-w64-mingw32.txt), check
# the DLL's exports and imports (tests/abi/check_dll.sh), run the test program
# under Wine, then danu.exe (synth, run, tokenize, bench) against the Linux
# danu built from the same source: the same model bytes, the same text, the
# same token ids, with non-ASCII file names and arguments.
# Installs nothing: needs x86_64-w64-mingw32-gcc-win32, wine, meson, ninja, cc
# (Debian: apt-get install gcc-mingw-w64-x86-64 wine64 meson ninja-build).
#
#   tests/win/run.sh [BUILD_DIR]     default BUILD_DIR: build-win in the source
#
# The Wine prefix lives in BUILD_DIR/wineprefix (made on the first run, ~1 min);
# the tests write into BUILD_DIR/win-tmp, BUILD_DIR/win-tmp2 and
# BUILD_DIR/win-cli. The Linux danu is built in BUILD_DIR/native, or
# DANU_NATIVE_BUILD names a configured native build directory to use (its
# danu target is brought up to date). Exit 0 when all passes, 1 on a failure,
# 77 when a tool is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build-win}
t_start=$(date +%s)

for tool in x86_64-w64-mingw32-gcc-win32 x86_64-w64-mingw32-objdump wine meson ninja python3 cc cmp; do
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
win_ok=1
if [ "$rc" -ne 0 ] || ! grep -qE '^[0-9]+ passed, 0 failed' "$out"; then win_ok=0; fi

# ---- danu.exe under Wine against the Linux danu -----------------------------
step "native danu (to compare with)"
cli_ok=1
native=${DANU_NATIVE_BUILD:-$build/native}
if [ ! -f "$native/build.ninja" ]; then
    meson setup "$native" "$src" --buildtype=release -Dtests=false >"$build/native-setup.log" 2>&1 ||
        { cat "$build/native-setup.log"; echo "FAIL: native meson setup"; exit 1; }
fi
ninja -C "$native" -j2 examples/danu/danu >"$build/native-ninja.log" 2>&1 ||
    { tail -40 "$build/native-ninja.log"; echo "FAIL: native build of danu"; exit 1; }
ldanu=$native/examples/danu/danu
wdanu=$build/examples/danu/danu.exe

step "danu.exe under Wine"
cfail() { echo "FAIL danu.exe: $1"; cli_ok=0; }
cpass() { echo "PASS danu.exe: $1"; }
imports=$(x86_64-w64-mingw32-objdump -p "$wdanu" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)
foreign=$(echo "$imports" | grep -v -E '^(kernel32|msvcrt|ucrtbase|advapi32|user32|ntdll|bcrypt|api-ms-win-[a-z0-9-]+)\.dll$')
if [ -n "$foreign" ]; then cfail "imports non-system DLLs: $(echo $foreign)"
else cpass "imports only system DLLs ($(echo $imports))"; fi
# Non-ASCII names and text: outside the ANSI code page, so they reach the
# program only through the UTF-16 command line (dn_args_utf8) and _wfopen.
d=$build/win-cli
rm -rf "$d"
mkdir -p "$d/dïr-目录"
model=$d/dïr-目录/模型-é.gguf
prompt_file=$d/dïr-目录/提示-ü.txt
printf 'Grüße aus 東京: the capital of France is' >"$prompt_file"
export LC_ALL=C.UTF-8   # Wine turns the Unix argv and file names into UTF-16 by the locale
# wexe NAME ARGS...: danu.exe ARGS, stdout to $d/NAME.win, stderr to $d/NAME.win.err;
# nexe NAME ARGS...: the Linux danu likewise into $d/NAME.lin
wexe() { local n=$1; shift; wine "$wdanu" "$@" >"$d/$n.win" 2>"$d/$n.win.err"; }
nexe() { local n=$1; shift; "$ldanu" "$@" >"$d/$n.lin" 2>"$d/$n.lin.err"; }
same() {   # NAME WHAT: both exits 0 (given) and equal non-empty stdout
    if [ "$2" -ne 0 ] || [ "$3" -ne 0 ]; then cfail "$1: exit $2 (Wine), $3 (Linux); stderr: $(head -c 400 "$d/$1.win.err")"
    elif [ ! -s "$d/$1.win" ]; then cfail "$1: no output"
    elif ! cmp -s "$d/$1.win" "$d/$1.lin"; then
        cfail "$1: Windows and Linux differ"; head -c 300 "$d/$1.win"; echo; head -c 300 "$d/$1.lin"; echo
    else cpass "$1: the same $(wc -c <"$d/$1.win") bytes as Linux"; fi
}
wexe synth synth --config tiny-a --seed 7 "$model"; wrc=$?
nexe synth synth --config tiny-a --seed 7 "$d/linux.gguf"; lrc=$?
if [ "$wrc" -ne 0 ] || [ ! -s "$model" ]; then cfail "synth: exit $wrc, no $model; stderr: $(head -c 400 "$d/synth.win.err")"
elif [ "$lrc" -ne 0 ] || ! cmp -s "$model" "$d/linux.gguf"; then cfail "synth: the model differs from Linux's (exit $lrc)"
else cpass "synth: a model byte for byte as Linux's ($(wc -c <"$model") bytes)"; fi
if [ -s "$model" ]; then
    gen=(-n 12 --temp 0 -t 2)
    wexe run run -m "$model" -p "The capital of France is" "${gen[@]}"; wrc=$?
    nexe run run -m "$model" -p "The capital of France is" "${gen[@]}"; lrc=$?
    same run $wrc $lrc
    wexe run-file run -m "$model" -f "$prompt_file" --slice-us 500 "${gen[@]}"; wrc=$?
    nexe run-file run -m "$model" -f "$prompt_file" --slice-us 500 "${gen[@]}"; lrc=$?
    same run-file $wrc $lrc
    grep -q 'peak RSS [1-9]' "$d/run.win.err" && cpass "run: reports a peak RSS" ||
        cfail "run: no peak RSS in: $(cat "$d/run.win.err")"
    wexe tokenize tokenize -m "$model" -p "Grüße aus 東京 – ½ €"; wrc=$?
    nexe tokenize tokenize -m "$model" -p "Grüße aus 東京 – ½ €"; lrc=$?
    same tokenize $wrc $lrc
    # quotes, backslashes and blanks: Wine quotes them into the command line,
    # dn_args_utf8 must split it back as Linux got it (the 東: not the runtime's
    # ANSI argv, which it falls back to when it counts differently)
    tricky='say "hi 東" \\"x\\" a\\b\\\\" c:\\dir\\ "" 	tab  end\\'
    wexe tokenize-quotes tokenize -m "$model" -p "$tricky" --no-bos; wrc=$?
    nexe tokenize-quotes tokenize -m "$model" -p "$tricky" --no-bos; lrc=$?
    same tokenize-quotes $wrc $lrc
    # bench: 2 contexts on 1 thread each (their threads meet at dn_barrier)
    wexe bench bench -m "$model" -p 16 -n 8 -r 2 -t 1 --contexts 2; wrc=$?
    if [ "$wrc" -ne 0 ]; then cfail "bench: exit $wrc; stderr: $(head -c 400 "$d/bench.win.err")"
    elif ! grep -qE '^\| +1 \| pp16 .*\| +[0-9.]+ ± +[0-9.]+ \| +-?[0-9]+ \|' "$d/bench.win" ||
         ! grep -qE '^\| +1 \| tg8 .*\| +[0-9.]+ ± +[0-9.]+ \|' "$d/bench.win" ||
         ! grep -qE '^\| +2x1 \| tg8 sum .*%' "$d/bench.win"; then
        cfail "bench: no pp16/tg8 rows:"; cat "$d/bench.win"
    else cpass "bench: pp16 and tg8 rows"; sed 's/^/  /' "$d/bench.win"; fi
fi
wineserver -w 2>/dev/null || true
step "done"
if [ "$win_ok" -ne 1 ]; then
    echo "FAIL: test_win.exe (exit $rc)"
    exit 1
fi
[ "$cli_ok" -eq 1 ] || { echo "FAIL: danu.exe"; exit 1; }
exit 0
