#!/bin/sh
# run_tests.sh BUILD_DIR - build the C# binding with mcs and test it with mono
# against BUILD_DIR/lib/libdanu.so (meson test 'csharp'), then check that the
# Unity example compiles against a stub of the UnityEngine types it uses.
# Exits 77 (skipped) when mcs or mono is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: run_tests.sh BUILD_DIR}" && pwd)
lib="$build/lib"
command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1 || { echo "mcs/mono not found: skipped"; exit 77; }
[ -e "$lib/libdanu.so.0" ] || { echo "no $lib/libdanu.so.0: build the library first" >&2; exit 1; }

out="$build/bindings/csharp"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

echo "# mcs: Danu.dll and TestDanu.exe"
mcs -langversion:7 -target:library -warnaserror+ -out:"$out/Danu.dll" "$here"/src/*.cs
cp "$here/Danu.dll.config" "$out/"
mcs -langversion:7 -out:"$out/TestDanu.exe" -r:"$out/Danu.dll" -r:System.Core "$here/tests/TestDanu.cs"

echo "# the tests, libdanu found through LD_LIBRARY_PATH"
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono --debug "$out/TestDanu.exe" "$src"

echo "# library resolution"
# Without any hint "danu" must not resolve (else the override checks prove nothing)
if env -u LD_LIBRARY_PATH -u DANU_LIBRARY mono "$out/TestDanu.exe" --probe >"$work/none.txt" 2>&1; then
  echo "note: a libdanu.so.0 is installed system-wide ($(cat "$work/none.txt")): the negative check is skipped"
else
  grep -q DllNotFoundException "$work/none.txt" || { cat "$work/none.txt"; echo "FAIL no hint: expected DllNotFoundException"; exit 1; }
  echo "ok   without LD_LIBRARY_PATH or DANU_LIBRARY: DllNotFoundException"
fi
# DANU_LIBRARY: a copy in a directory no loader searches (non-ASCII name); the whole test runs on it
mkdir -p "$work/kopie-ü"
cp "$lib/libdanu.so.0" "$work/kopie-ü/libdanu-copy.so"
echo "# the tests again, libdanu loaded through DANU_LIBRARY=$work/kopie-ü/libdanu-copy.so"
env -u LD_LIBRARY_PATH DANU_LIBRARY="$work/kopie-ü/libdanu-copy.so" mono --debug "$out/TestDanu.exe" "$src" >"$work/env.txt" 2>&1 ||
  { cat "$work/env.txt"; echo "FAIL the tests with DANU_LIBRARY"; exit 1; }
tail -1 "$work/env.txt"
env -u LD_LIBRARY_PATH DANU_LIBRARY="$work/kopie-ü/libdanu-copy.so" mono "$out/TestDanu.exe" --probe
# Mono looks beside the assembly first: Danu.dll + Danu.dll.config + libdanu.so.0 in one directory
mkdir -p "$work/app"
cp "$out/Danu.dll" "$out/Danu.dll.config" "$out/TestDanu.exe" "$work/app/"
cp "$lib/libdanu.so.0" "$work/app/"
env -u LD_LIBRARY_PATH -u DANU_LIBRARY mono "$work/app/TestDanu.exe" --probe

echo "# the Unity example compiles (examples/unity against examples/unity/stub) and runs frame by frame"
u="$work/unity"
mkdir -p "$u"
cp "$out/Danu.dll" "$out/Danu.dll.config" "$u/"
mcs -langversion:7 -target:library -out:"$u/UnityEngine.dll" "$src/examples/unity/stub/UnityEngine.cs"
mcs -langversion:7 -target:library -warnaserror+ -out:"$u/DanuUnityExample.dll" -r:"$u/UnityEngine.dll" -r:"$u/Danu.dll" \
  "$src"/examples/unity/*.cs
echo "ok   examples/unity/*.cs compile with mcs"
mcs -langversion:7 -out:"$u/SimulateFrames.exe" -r:"$u/UnityEngine.dll" -r:"$u/Danu.dll" -r:"$u/DanuUnityExample.dll" \
  "$src/examples/unity/stub/SimulateFrames.cs"
LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" mono --debug "$u/SimulateFrames.exe" "$src"
