#!/usr/bin/env bash
# check_dll.sh - the Windows side of the ABI check (tests/abi/check.sh is the
# ELF side): what danu.dll exports and imports, and danu.h under MSVC rules.
#
#   tests/abi/check_dll.sh path/to/danu.dll [--src SRCDIR]
#
# Checks, each printed as PASS/FAIL:
#   exports  the DLL's export table lists exactly the DANU_API functions of
#            danu.h (as hdrcheck.py reads them, the same list check.sh holds
#            the ELF exports and ABI.md to), none of the baseline's removed;
#            an ABI.md that lags danu.h is a WARN here (check.sh fails on it)
#   imports  only Windows system DLLs: no libwinpthread-1.dll, libgcc_s_*.dll
#            or other MinGW runtime DLL
#   msvc     danu.h as MSVC sees it (_WIN32, _MSC_VER, no __GNUC__, system
#            headers stubbed) holds no GCC-only construct and compiles as
#            strict C11 and C++11
# Exit: 0 all pass, 1 a check failed, 77 a tool is missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
dll=
while [ $# -gt 0 ]; do
    case $1 in
        --src) src=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) dll=$1; shift ;;
    esac
done
[ -n "$dll" ] && [ -f "$dll" ] || { echo "check_dll.sh: no DLL given or $dll missing" >&2; exit 2; }
objdump=${OBJDUMP:-x86_64-w64-mingw32-objdump}
py=${PYTHON:-python3}
cc=${CC:-cc}
for tool in "$objdump" "$py" "$cc"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done
header=$src/include/danu.h
tmp=$(mktemp -d "${TMPDIR:-/tmp}/danu-dll.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; failed=1; }

"$objdump" -p "$dll" >"$tmp/pe.txt" || { fail "objdump cannot read $dll"; exit 1; }

# ---- exports ---------------------------------------------------------------
sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' "$tmp/pe.txt" | sed -n 's/^[[:space:]]*\[[[:space:]]*[0-9]*\][[:space:]]*//p' |
    LC_ALL=C sort >"$tmp/exported.txt"
"$py" "$here/hdrcheck.py" funcs "$header" | LC_ALL=C sort >"$tmp/declared.txt"
grep -v '^node ' "$here/baseline/symbols.txt" | sed 's/@.*//' | LC_ALL=C sort >"$tmp/baseline.txt"
undef=$(LC_ALL=C comm -23 "$tmp/declared.txt" "$tmp/exported.txt")
undecl=$(LC_ALL=C comm -13 "$tmp/declared.txt" "$tmp/exported.txt")
removed=$(LC_ALL=C comm -23 "$tmp/baseline.txt" "$tmp/exported.txt")
if [ ! -s "$tmp/exported.txt" ]; then fail "exports: $dll exports nothing"
elif [ -n "$undef" ]; then fail "exports: declared in danu.h but not exported by the DLL: $(echo $undef)"
elif [ -n "$undecl" ]; then fail "exports: exported by the DLL but not declared in danu.h: $(echo $undecl)"
elif [ -n "$removed" ]; then fail "exports: in the ABI baseline but not in the DLL: $(echo $removed)"
else pass "exports: the DLL exports exactly the $(wc -l <"$tmp/exported.txt") DANU_API functions of danu.h (baseline kept)"
fi
# ABI.md against danu.h is check.sh's "doc" check (it fails there); here a note
if ! "$py" "$here/hdrcheck.py" doc "$header" "$src/ABI.md" 2>"$tmp/doc.err"; then
    echo "WARN doc: ABI.md lags danu.h (tests/abi/check.sh fails on it):"; sed 's/^/  /' "$tmp/doc.err"
fi

# ---- imports ---------------------------------------------------------------
sed -n 's/^[[:space:]]*DLL Name: //p' "$tmp/pe.txt" | tr 'A-Z' 'a-z' | LC_ALL=C sort -u >"$tmp/imports.txt"
foreign=$(grep -v -E '^(kernel32|msvcrt|ucrtbase|advapi32|user32|ntdll|bcrypt|api-ms-win-[a-z0-9-]+)\.dll$' "$tmp/imports.txt")
if [ -n "$foreign" ]; then fail "imports: needs non-system DLLs: $(echo $foreign)"
else pass "imports: only system DLLs ($(echo $(cat "$tmp/imports.txt")))"
fi

# ---- danu.h under MSVC rules ------------------------------------------------
mkdir -p "$tmp/stub"
: >"$tmp/stub/stddef.h"
: >"$tmp/stub/stdint.h"
if "$cc" -E -P -undef -nostdinc -I"$tmp/stub" -D_WIN32=1 -D_WIN64=1 -D_MSC_VER=1930 -D_M_X64=1 "$header" \
        >"$tmp/msvc.h" 2>"$tmp/msvc.err"; then
    gnu=$(grep -n -E '__attribute__|__extension__|__typeof|__builtin|__asm|__declspec\(dllexport\)' "$tmp/msvc.h")
    { printf '#include <stddef.h>\n#include <stdint.h>\n'; cat "$tmp/msvc.h"; } >"$tmp/msvc.c"
    if [ -n "$gnu" ]; then fail "msvc: GCC-only constructs outside #ifdef __GNUC__:"; echo "$gnu" | sed 's/^/  /' | head
    elif ! "$cc" -std=c11 -pedantic-errors -Wall -Wextra -Werror -fsyntax-only "$tmp/msvc.c" 2>"$tmp/msvc.err"; then
        fail "msvc: danu.h as MSVC sees it is not strict C11:"; head -20 "$tmp/msvc.err" | sed 's/^/  /'
    elif command -v c++ >/dev/null 2>&1 && ! c++ -x c++ -std=c++11 -pedantic-errors -Wall -Werror -fsyntax-only "$tmp/msvc.c" 2>"$tmp/msvc.err"; then
        fail "msvc: danu.h as MSVC sees it is not strict C++11:"; head -20 "$tmp/msvc.err" | sed 's/^/  /'
    else pass "msvc: danu.h with _MSC_VER and without __GNUC__ is plain C11/C++11"
    fi
else
    fail "msvc: cannot preprocess danu.h:"; sed 's/^/  /' "$tmp/msvc.err"
fi
exit $failed
