#!/usr/bin/env bash
# check.sh - compare libdanu's ABI with the committed baseline (ABI.md explains the rules).
#
#   tests/abi/check.sh [--lib path/to/libdanu.so] [--src SRCDIR] [--baseline DIR] [--no-abidiff]
#   tests/abi/check.sh --update [--src SRCDIR]      rewrite the baseline (at a release only)
#
# Without --lib the library is built from SRCDIR (debug info, in a temp dir).
# Checks, each printed as PASS/FAIL:
#   symbols  nm -D exports vs baseline/symbols.txt: removals fail, additions pass;
#            only danu_* symbols, all in a version node; SONAME libdanu.so.0
#   exports  every DANU_API function of danu.h is exported and vice versa
#   header   the baseline danu.h turned into _Static_asserts (tests/abi/hdrcheck.py)
#            compiled against the current danu.h: signatures, typedefs, enum
#            values, struct members (only appended), DANU_VERSION_MAJOR
#   doc      ABI.md lists exactly the DANU_API functions
#   docs     every DANU_API function of danu.h has its own doc block with a
#            summary (CONSTRUCTOR/DESTRUCTOR/METHOD/FUNCTION), @param for each
#            parameter, @return (not for void), Errors: (danu_status results),
#            Thread:, @since; with clang installed, also clang -Wdocumentation clean
#   abidiff  libabigail's abidiff against baseline/libdanu.abi (abidw XML) when
#            abigail-tools is installed (installed by apt when root; skipped with a
#            message otherwise: the header check covers the same promises)
# Exit: 0 all ran checks pass, 1 a check failed, 77 (meson: skipped) a required tool is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
lib=
baseline=
update=0
use_abidiff=1
while [ $# -gt 0 ]; do
    case $1 in
        --lib) lib=$2; shift 2 ;;
        --src) src=$(cd "$2" && pwd); shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --update) update=1; shift ;;
        --no-abidiff) use_abidiff=0; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
baseline=${baseline:-$here/baseline}
header=$src/include/danu.h
cc=${CC:-cc}
py=${PYTHON:-python3}

for tool in "$cc" "$py" nm readelf; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found (the ABI check needs a C compiler, python3 and binutils)"
        exit 77
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/danu-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1"; failed=1; }

# A debug-info libdanu.so built from $src, for abidw/abidiff (release builds
# carry no DWARF). Prints its path; the build log goes to $tmp/build.log.
build_debug_lib() {
    local b=$tmp/build
    if ! command -v meson >/dev/null 2>&1 || ! command -v ninja >/dev/null 2>&1; then
        echo "check.sh: meson and ninja are needed to build the library" >&2
        return 1
    fi
    if ! meson setup "$b" "$src" -Dbuildtype=debug -Dtests=false >"$tmp/build.log" 2>&1 ||
       ! meson compile -C "$b" lib/danu:shared_library >>"$tmp/build.log" 2>&1; then
        echo "check.sh: building $src failed:" >&2
        tail -20 "$tmp/build.log" >&2
        return 1
    fi
    echo "$b/lib/libdanu.so"
}

has_debug_info() { readelf -S "$1" 2>/dev/null | grep -q '\.debug_info'; }

# Exports as "NAME@@NODE" lines plus "node NODE" for version nodes.
exports_of() {
    nm -D --defined-only "$1" | awk '$2 == "A" { print "node " $3; next } { print $3 }' | LC_ALL=C sort
}

abidw_of() {
    # Source paths relative to the source root so the XML does not name the machine.
    local rel
    rel=$("$py" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$src" "$(dirname "$(dirname "$1")")")
    abidw --no-corpus-path --no-comp-dir-path --headers-dir "$src/include" --drop-private-types "$1" |
        sed -e "s|filepath='$rel/|filepath='|g" -e "s|filepath='$src/|filepath='|g"
}

ensure_abigail() {
    command -v abidiff >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && [ -z "${DANU_ABI_NO_INSTALL:-}" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing abigail-tools (set DANU_ABI_NO_INSTALL=1 to prevent this)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q abigail-tools >"$tmp/apt.log" 2>&1 ||
            { apt-get update -q >>"$tmp/apt.log" 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q abigail-tools >>"$tmp/apt.log" 2>&1; }
    fi
    command -v abidiff >/dev/null 2>&1
}

if [ $update = 1 ]; then
    dbg=$(build_debug_lib) || exit 1
    mkdir -p "$baseline"
    cp "$header" "$baseline/danu.h"
    exports_of "$dbg" >"$baseline/symbols.txt"
    if ensure_abigail; then
        abidw_of "$dbg" >"$baseline/libdanu.abi" || exit 1
    else
        echo "abigail-tools unavailable: baseline/libdanu.abi not written"
    fi
    echo "baseline written to $baseline ($(grep -vc '^node ' "$baseline/symbols.txt") functions); commit it"
    exit 0
fi

if [ -z "$lib" ]; then
    lib=$(build_debug_lib) || exit 1
fi
[ -f "$lib" ] || { echo "check.sh: no library at $lib" >&2; exit 1; }
echo "library: $lib"
echo "baseline: $baseline"

# ---- symbols -------------------------------------------------------------
exports_of "$lib" >"$tmp/symbols.txt"
removed=$(LC_ALL=C comm -23 "$baseline/symbols.txt" "$tmp/symbols.txt")
added=$(LC_ALL=C comm -13 "$baseline/symbols.txt" "$tmp/symbols.txt")
leaked=$(grep -v -e '^node ' -e '^danu_[A-Za-z0-9_]*@@' "$tmp/symbols.txt")
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ -n "$added" ] && echo "  added (compatible): $(echo $added)"
if [ -n "$removed" ]; then fail "symbols: removed or moved to another version node: $(echo $removed)"
elif [ -n "$leaked" ]; then fail "symbols: exported outside the danu_* version nodes: $(echo $leaked)"
elif [ "$soname" != libdanu.so.0 ]; then fail "symbols: SONAME is '$soname', expected libdanu.so.0"
else pass "symbols: $(grep -vc '^node ' "$tmp/symbols.txt") exported, none removed, SONAME $soname"
fi

# ---- header declarations vs exports -------------------------------------
if "$py" "$here/hdrcheck.py" funcs "$header" | LC_ALL=C sort >"$tmp/declared.txt"; then
    grep -v '^node ' "$tmp/symbols.txt" | sed 's/@.*//' | LC_ALL=C sort >"$tmp/exported.txt"
    undef=$(LC_ALL=C comm -23 "$tmp/declared.txt" "$tmp/exported.txt")
    undecl=$(LC_ALL=C comm -13 "$tmp/declared.txt" "$tmp/exported.txt")
    if [ -n "$undef" ]; then fail "exports: declared in danu.h but not exported: $(echo $undef)"
    elif [ -n "$undecl" ]; then fail "exports: exported but not declared in danu.h: $(echo $undecl)"
    else pass "exports: the $(wc -l <"$tmp/declared.txt") DANU_API functions are exported"
    fi
else
    fail "exports: cannot parse $header"
fi

# ---- header check (compile-time) -----------------------------------------
if "$py" "$here/hdrcheck.py" gen "$baseline/danu.h" "$header" >"$tmp/hdrcheck.c" 2>"$tmp/gen.err" &&
   "$cc" -std=c11 -fsyntax-only -I "$src/include" -include danu.h "$tmp/hdrcheck.c" >"$tmp/cc.err" 2>&1; then
    pass "header: $(sed -n 's|/\* checked: \(.*\) \*/|\1|p' "$tmp/hdrcheck.c") match the baseline"
else
    fail "header: current danu.h breaks the baseline's promises:"
    cat "$tmp/gen.err"
    grep -E 'error' "$tmp/cc.err" | sed 's/^/  /' | head -20
fi

# ---- ABI.md ---------------------------------------------------------------
if "$py" "$here/hdrcheck.py" doc "$header" "$src/ABI.md" 2>"$tmp/doc.err"; then
    pass "doc: ABI.md lists every DANU_API function"
else
    fail "doc: ABI.md is out of date:"
    sed 's/^/  /' "$tmp/doc.err"
fi

# ---- function docs in danu.h ----------------------------------------------
if command -v clang >/dev/null 2>&1; then
    printf '#include "danu.h"\n' >"$tmp/docs.c"
    clang -std=c11 -fsyntax-only -Wdocumentation -Wdocumentation-unknown-command -I "$src/include" "$tmp/docs.c" \
        >>"$tmp/docs.err" 2>&1
fi
if "$py" "$here/hdrcheck.py" docs "$header" >"$tmp/docs.out" 2>>"$tmp/docs.err" && ! grep -qE 'warning|error' "$tmp/docs.err"; then
    pass "docs: $(cat "$tmp/docs.out")"
else
    fail "docs: a DANU_API function lacks part of its doc block ($(cat "$tmp/docs.out")):"
    sed 's/^/  /' "$tmp/docs.err"
fi

# ---- abidiff ----------------------------------------------------------------
if [ $use_abidiff = 0 ]; then
    echo "SKIP abidiff: --no-abidiff"
elif [ ! -f "$baseline/libdanu.abi" ]; then
    echo "SKIP abidiff: no baseline/libdanu.abi"
elif ! ensure_abigail; then
    echo "SKIP abidiff: abigail-tools is not installed (apt-get install abigail-tools); the header check stands in"
else
    dlib=$lib
    if ! has_debug_info "$lib"; then
        echo "  $lib has no debug info: building a debug copy from $src for abidiff"
        dlib=$(build_debug_lib) || { fail "abidiff: cannot build a debug library"; dlib=; }
    fi
    if [ -n "$dlib" ]; then
        abidiff --suppressions "$here/abidiff.suppr" --headers-dir2 "$src/include" --drop-private-types \
            "$baseline/libdanu.abi" "$dlib" >"$tmp/abidiff.txt" 2>&1
        rc=$?
        # rc bits: 1 error, 2 usage, 4 change, 8 incompatible change. Added
        # functions alone set 4; anything else that is reported is a break.
        summary=$(grep -E 'Functions changes summary|Variables changes summary' "$tmp/abidiff.txt" | tr '\n' ' ')
        if [ $((rc & 3)) != 0 ]; then
            fail "abidiff: could not compare (exit $rc)"; sed 's/^/  /' "$tmp/abidiff.txt" | head -20
        elif [ $rc = 0 ] || { [ $((rc & 8)) = 0 ] &&
                echo "$summary" | grep -q 'Functions changes summary: 0 Removed, 0 Changed' &&
                ! echo "$summary" | grep -qE 'Variables changes summary: [1-9]|Variables changes summary: 0 Removed, [1-9]'; }; then
            pass "abidiff: no incompatible change${summary:+ ($summary)}"
        else
            fail "abidiff: ABI changed (exit $rc):"
            sed 's/^/  /' "$tmp/abidiff.txt" | head -60
        fi
    fi
fi

if [ $failed != 0 ]; then
    echo "ABI check FAILED (rules: ABI.md; intended change at a major version: tests/abi/check.sh --update)"
    exit 1
fi
echo "ABI check passed"
exit 0
