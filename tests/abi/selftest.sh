#!/usr/bin/env bash
# selftest.sh - prove that tests/abi/check.sh catches ABI breaks and lets
# compatible changes through. Each case edits a copy of the source tree
# (danu.h, and lib/api.c where the definition must follow), builds it, runs
# check.sh on it and compares the PASS/FAIL lines with what is expected. The "append" case also runs tests/abi/baseline_user.c, compiled
# against the baseline header, on the grown library: old binaries must still
# work when danu_allocator grows.
#
#   tests/abi/selftest.sh [SRCDIR]
# Exit: 0 all cases behave, 1 otherwise, 77 tools missing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${1:-$here/../..}" && pwd)
cc=${CC:-cc}
for tool in "$cc" python3 nm readelf meson ninja; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: $tool not found"; exit 77; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/danu-abi-selftest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The pristine copy: sources only (no .git, build dirs or test data except the
# tokenizer the CLI embeds). Cases edit a second copy, restored from it before
# each case, built incrementally in one debug build dir (debug info for abidiff).
mkdir "$tmp/pristine"
(cd "$src" && tar cf - --exclude=./.git --exclude='./build*' --exclude=./tests/data . ) | (cd "$tmp/pristine" && tar xf -)
mkdir -p "$tmp/pristine/tests/data"
cp -r "$src/tests/data/llama2-tokenizer" "$tmp/pristine/tests/data/"
cp -a "$tmp/pristine" "$tmp/tree"
edited="include/danu.h lib/api.c ABI.md"
if ! meson setup "$tmp/build" "$tmp/tree" -Dbuildtype=debug -Dtests=false >"$tmp/setup.log" 2>&1; then
    echo "selftest: meson setup failed"; cat "$tmp/setup.log"; exit 1
fi

errors=0
# run_case NAME EXPECT EDIT: EXPECT is "pass" or the check names that must FAIL.
run_case() {
    local name=$1 expect=$2 edit=$3 f
    for f in $edited; do cp "$tmp/pristine/$f" "$tmp/tree/$f"; done   # new mtime: ninja rebuilds
    (cd "$tmp/tree" && eval "$edit") || { echo "BAD  $name: the edit failed"; errors=1; return; }
    if ! meson compile -C "$tmp/build" lib/danu:shared_library >"$tmp/$name.build.log" 2>&1; then
        echo "BAD  $name: the edited tree does not build"; tail -20 "$tmp/$name.build.log"; errors=1; return
    fi
    "$here/check.sh" --src "$tmp/tree" --lib "$tmp/build/lib/libdanu.so" --baseline "$here/baseline" \
        >"$tmp/$name.log" 2>&1
    local rc=$?
    local failed
    failed=$(sed -n 's/^FAIL \([a-z]*\):.*/\1/p' "$tmp/$name.log" | tr '\n' ' ')
    local ok=1
    if [ "$expect" = pass ]; then
        [ $rc = 0 ] || ok=0
    else
        [ $rc = 1 ] || ok=0
        for c in $expect; do
            case " $failed " in *" $c "*) ;; *) ok=0 ;; esac
        done
    fi
    if [ $ok = 1 ]; then
        echo "ok   $name: expected ${expect}, check.sh exit $rc${failed:+, failed: $failed}"
    else
        echo "BAD  $name: expected ${expect}, check.sh exit $rc${failed:+, failed: $failed}"
        sed 's/^/     /' "$tmp/$name.log"
        errors=1
    fi
}

have_abidiff=0
command -v abidiff >/dev/null 2>&1 && have_abidiff=1
with_abidiff() { if [ $have_abidiff = 1 ]; then echo "$1 abidiff"; else echo "$1"; fi; }

H=include/danu.h
# 1. Unchanged tree: everything passes (guards against a check that always fails).
run_case unchanged pass 'true'
[ $errors = 0 ] || { echo "ABI self-test FAILED: the unchanged tree does not pass"; exit 1; }
# 2. A member inserted in the middle of danu_allocator. A uint32_t after
#    struct_size falls into padding, so every old offset and the size stay the
#    same; it is still a break (old callers leave it uninitialised).
run_case insert_member "$(with_abidiff header)" \
    "sed -i 's/^    uint32_t struct_size;/    uint32_t struct_size;\n    uint32_t flags;/' $H && grep -q 'uint32_t flags;' $H"
# 3. A changed signature (float bias -> double), header and definition alike.
run_case change_signature "$(with_abidiff header)" \
    "sed -i 's/danu_token id, float bias)/danu_token id, double bias)/' $H lib/api.c &&
     grep -q 'double bias' $H && grep -q 'double bias' lib/api.c"
# 4. A removed function: gone from the header and no longer exported.
run_case remove_function "$(with_abidiff 'symbols header')" \
    "sed -i '/danu_context_clear_stop_strings(danu_context \*ctx);/d' $H &&
     sed -i 's/^danu_status danu_context_clear_stop_strings(/static danu_status removed_clear_stop_strings(/' lib/api.c &&
     sed -i '/danu_context_clear_stop_strings/d' ABI.md && ! grep -q danu_context_clear_stop_strings $H"
# 5. A changed enum value.
run_case change_enum header "sed -i 's/DANU_ERR_STATE = 11,/DANU_ERR_STATE = 15,/' $H && grep -q 'DANU_ERR_STATE = 15' $H"
# 6. A function in danu.h that ABI.md does not list.
run_case undocumented doc \
    "sed -i 's/^DANU_API danu_status danu_context_clear(/DANU_API danu_status danu_selftest_added(void);\n&/' $H &&
     printf 'danu_status danu_selftest_added(void) { return DANU_OK; }\n' >>lib/api.c"
# 7. Compatible: a new function, documented in danu.h (its own doc block) and ABI.md.
run_case add_function pass \
    "sed -i 's|^/\*\* METHOD. Forget every cached token|/** FUNCTION. Self-test addition.\n *  @return OK. Errors: none.\n *  Thread: any thread.\n *  @since 0.1 */\nDANU_API danu_status danu_selftest_added(void);\n&|' $H &&
     grep -q 'danu_selftest_added(void);' $H &&
     printf 'danu_status danu_selftest_added(void) { return DANU_OK; }\n' >>lib/api.c &&
     sed -i 's/^- \`danu_context_clear\` - /- \`danu_selftest_added\` - self-test addition.\n&/' ABI.md"
# 8. and 9. A doc block that lacks a part: the thread rule of
#    danu_context_clear, the @param of danu_context_set_logit_bias's bias.
run_case doc_without_thread docs \
    "sed -i '/METHOD. Forget every cached token/,/Thread:/{/Thread:/d}' $H &&
     ! sed -n '/METHOD. Forget every cached token/,/danu_context_clear(/p' $H | grep -q Thread:"
run_case doc_without_param docs \
    "sed -i '/@param bias added to the logit/d' $H && ! grep -q '@param bias' $H"
# 10. Compatible: a member appended to danu_allocator (struct_size tells old callers apart).
run_case append_member pass \
    "sed -i 's/^    void \*user;\$/    void *user;\n    uint64_t selftest_reserved;/' $H && grep -q selftest_reserved $H"

# Old binaries on the grown library: baseline_user (baseline header, so
# struct_size 40) against the library of case 8, still in the build dir.
if "$cc" -std=c11 -D_GNU_SOURCE -I "$here/baseline" "$here/baseline_user.c" -o "$tmp/baseline_user" \
       -L "$tmp/build/lib" -ldanu -Wl,-rpath,"$tmp/build/lib" >"$tmp/bu.log" 2>&1 &&
   mkdir -p "$tmp/models" &&
   "$tmp/baseline_user" "$src/tests/data/llama2-tokenizer/tokenizer.model" "$tmp/models" >>"$tmp/bu.log" 2>&1; then
    echo "ok   append_member: a program built against the baseline header runs on the grown library"
else
    echo "BAD  append_member: a program built against the baseline header fails on the grown library:"
    sed 's/^/     /' "$tmp/bu.log"
    errors=1
fi

[ $have_abidiff = 1 ] || echo "note: abidiff not installed; the cases checked the symbol, header and doc checks only"
if [ $errors != 0 ]; then echo "ABI self-test FAILED"; exit 1; fi
echo "ABI self-test passed"
