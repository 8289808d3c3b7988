#!/usr/bin/env bash
# busy.sh [MODEL] - issue 16's target matrix: libdanu on a machine whose
# cores are never idle (a game's threads), then the ratios the issue sets.
#   MODEL: a .gguf or HF directory; default the full-size danube-1.8b shape
#   with synthetic weights in Q4_0 ($DIR/danube-q4_0.gguf, ~1.2 GB, made
#   with `danu synth` when missing). The tiny model is synthetic tiny-a.
#   1. MODEL idle, with --busy 2 and with --busy 4, at -t 1,2,4: pp and tg
#   2. tiny-a idle at -t 1 and -t 2
#   3. MODEL with 4 contexts at once (shared pool), 1 thread each vs 2 each
#   4. MODEL --busy 2 -t 2 generating in slices of $SLICE_US us: the wall
#      time per call against the budget (the overrun is at most one layer)
# Each measurement is short (-p 64 -n 16 -r 1 by default): the whole script
# takes a few minutes on 2 cores. Not part of CI.
#   PP, TG, REPS, THREADS, BUSY, SLICE_US, DIR, DANU, TINY_TYPE: override
#   the defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
DANU=${DANU:-build/examples/danu/danu}
DIR=${DIR:-/tmp/danu-full}
PP=${PP:-64}
TG=${TG:-16}
REPS=${REPS:-1}
THREADS=${THREADS:-1,2,4}
BUSY=${BUSY:-"0 2 4"}
SLICE_US=${SLICE_US:-4000}
TINY_TYPE=${TINY_TYPE:-bf16}
[ -x "$DANU" ] || { meson setup build >/dev/null && ninja -C build >/dev/null; }
mkdir -p "$DIR"

MODEL=${1:-$DIR/danube-q4_0.gguf}
if [ ! -e "$MODEL" ]; then
  if [ -n "${1:-}" ]; then echo "busy.sh: $MODEL does not exist" >&2; exit 1; fi
  free_mb=$(df -Pk "$DIR" | awk 'NR==2 {print int($4/1024)}')
  if [ "$free_mb" -lt 1300 ]; then
    echo "busy.sh: only ${free_mb} MB free in $DIR; the synthetic Q4_0 model needs about 1.2 GB." \
         "Set DIR or give a model path." >&2
    exit 1
  fi
  echo "busy.sh: writing the full-size synthetic Q4_0 model to $MODEL (${free_mb} MB free)"
  "$DANU" synth --config danube-1.8b --seed 1 --format gguf --type q4_0 "$MODEL"
fi
TINY=$DIR/tiny-a-seed1-$TINY_TYPE.gguf
[ -e "$TINY" ] || "$DANU" synth --config tiny-a --seed 1 --format gguf --type "$TINY_TYPE" "$TINY" >/dev/null

# tokens/s of one row of a `danu bench` table: rate OUTPUT THREADS TEST
rate() {
  echo "$1" | awk -F'|' -v th="$2" -v te="$3" '{
    t = $2; gsub(/ /, "", t); n = $3; gsub(/^ +| +$/, "", n)
    if (t == th && n == te) { split($4, a, " "); print a[1]; exit } }'
}

SUMMARY=()
# ratio LABEL NUM DEN TARGET: one line of the summary
ratio() {
  local line
  line=$(awk -v l="$1" -v a="$2" -v b="$3" -v t="$4" 'BEGIN {
    if (a == "" || b == "" || b + 0 == 0) { printf "| %-34s | %8s | >= %-4s | %-4s |", l, "n/a", t, "?"; exit }
    r = a / b; printf "| %-34s | %8.2f | >= %-4s | %-4s |", l, r, t, (r >= t ? "ok" : "MISS") }')
  SUMMARY+=("$line   ($2 / $3 t/s)")
}

OUT=
bench() {   # label, then danu bench flags: prints the table, keeps it in $OUT
  local label=$1; shift
  echo "== $label: danu bench $* =="
  OUT=$("$DANU" bench "$@")
  echo "$OUT"
  echo
}

t0=$(date +%s)
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
echo "busy.sh: $(nproc) cores, load average $load; $MODEL and $TINY; -p $PP -n $TG -r $REPS"
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  echo "busy.sh: warning: other programs are running (load $load): \"idle\" is not idle, the ratios are noisy"
fi
echo

# 1. idle and busy at -t 1,2,4
for b in $BUSY; do
  flags=(-m "$MODEL" -p "$PP" -n "$TG" -r "$REPS" -t "$THREADS")
  [ "$b" -gt 0 ] && flags+=(--busy "$b")
  label=$([ "$b" -gt 0 ] && echo "busy $b" || echo "idle")
  bench "$label" "${flags[@]}"
  out=$OUT
  for test in "pp$PP" "tg$TG"; do
    ratio "$label $test -t2/-t1" "$(rate "$out" 2 "$test")" "$(rate "$out" 1 "$test")" 1
    ratio "$label $test -t4/-t2" "$(rate "$out" 4 "$test")" "$(rate "$out" 2 "$test")" 0.7
  done
done

# 2. tiny-a idle: -t 2 must not lose to -t 1 (longer runs: it is fast)
bench "tiny-a idle" -m "$TINY" -p 256 -n 128 -r 3 -t 1,2
out=$OUT
ratio "tiny-a pp256 -t2/-t1" "$(rate "$out" 2 pp256)" "$(rate "$out" 1 pp256)" 0.9
ratio "tiny-a tg128 -t2/-t1" "$(rate "$out" 2 tg128)" "$(rate "$out" 1 tg128)" 0.9

# 3. four contexts at once on the shared pool: 1 thread each vs 2 each
bench "4 contexts, shared pool" -m "$MODEL" -p "$PP" -n "$TG" -r "$REPS" -t 1,2 --contexts 4
out=$OUT
for test in "pp$PP" "tg$TG"; do
  ratio "4 ctx $test 4x2/4x1 (sum)" "$(rate "$out" 4x2 "$test sum")" "$(rate "$out" 4x1 "$test sum")" 0.8
done

# 4. sliced generation on a busy machine: per-call wall time against the budget
bench "busy 2, slices of $SLICE_US us" -m "$MODEL" -p "$PP" -n "$TG" -r "$REPS" -t 2 --busy 2 \
  --slice-us "$SLICE_US"
out=$OUT
slices=$(echo "$out" | awk -F'|' -v us="$SLICE_US" '$3 ~ /(pp|tg)[0-9]/ && NF >= 13 {
  n = $3; gsub(/^ +| +$/, "", n)
  printf "  %-6s %6d calls: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f ms (budget %.2f ms)\n", n, $9, $10, $11, $12, $13, us / 1000 }')

echo "== summary (issue 16 targets; $(nproc) cores, load average $load at the start," \
  "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null) at the end, $(( $(date +%s) - t0 )) s) =="
printf "| %-34s | %8s | %-7s | %-4s |\n" "ratio" "value" "target" ""
printf "|%s|%s|%s|%s|\n" "------------------------------------" "----------" "---------" "------"
printf "%s\n" "${SUMMARY[@]}"
echo "slices (busy 2, -t 2):"
echo "$slices"
