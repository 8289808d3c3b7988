#!/usr/bin/env bash
# quantize_sizes.sh - `danu quantize` on the full-size danube-1.8b shape
# (synthetic weights, seed 1, HF bf16 written by `danu synth` when missing):
# output size, wall and CPU time and peak RSS (/usr/bin/time -v) per type
# (on a busy machine cpu s is the figure to compare: wall s grows with load), then
# (CHECK=1, default) the quantized file's last-position logits on the
# golden "capital" prompt against transformers (tests/data/golden).
# Each output is deleted after measuring unless KEEP=1.
# Usage: bench/quantize_sizes.sh   (env: DIR, TYPES, THREADS, DANU, KEEP, CHECK)
set -euo pipefail
cd "$(dirname "$0")/.."
DANU=${DANU:-build/examples/danu/danu}
DIR=${DIR:-/tmp/danu-quantize}
TYPES=${TYPES:-"q8_0 q4_0 q4_k_m q5_k_m q6_k"}
THREADS=${THREADS:-2}
KEEP=${KEEP:-0}
CHECK=${CHECK:-1}
[ -x "$DANU" ] || { meson setup build >/dev/null && ninja -C build >/dev/null; }
[ -x /usr/bin/time ] || { echo "quantize_sizes.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
mkdir -p "$DIR"
HF="$DIR/danube-hf"

# Disk: the HF checkpoint (3.7 GB) unless present, plus the largest output
# (q8_0: 1.9 GB; all of them, 7.2 GB, with KEEP=1), plus 0.5 GB of slack.
need_mb=500
[ -d "$HF" ] || need_mb=$((need_mb + 3700))
if [ "$KEEP" = 1 ]; then need_mb=$((need_mb + 7200)); else need_mb=$((need_mb + 1950)); fi
free_mb=$(df -Pk "$DIR" | awk 'NR==2 {print int($4/1024)}')
if [ "$free_mb" -lt "$need_mb" ]; then
  echo "quantize_sizes.sh: only ${free_mb} MB free in $DIR; need about ${need_mb} MB. Set DIR or free space." >&2
  exit 1
fi
echo "disk: ${free_mb} MB free in $DIR, about ${need_mb} MB needed"

if [ ! -d "$HF" ]; then
  "$DANU" synth --config danube-1.8b --seed 1 --format hf "$HF"
fi
hf_mb=$(du -sm "$HF" | cut -f1)
echo "input: $HF (HF bf16, ${hf_mb} MB); $THREADS threads; $(nproc) cores"
echo

G=tests/data/golden/danube-1.8b.capital
prompt=$(grep '^prompt' $G.txt | cut -d' ' -f2-)
printf '%-8s %9s %7s %8s %7s %5s %7s  %s\n' type "size MB" "bits/w" "wall s" "cpu s" "cpu%" "RSS MB" "vs transformers (last position)"
for t in $TYPES; do
  out="$DIR/danube-$t.gguf"
  rm -f "$out" "$out.tmp"
  /usr/bin/time -v "$DANU" quantize "$HF" "$out" --type "$t" -t "$THREADS" 2> "$DIR/time-$t.txt" ||
    { cat "$DIR/time-$t.txt" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$DIR/time-$t.txt")
  rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$DIR/time-$t.txt")
  cpu=$(awk -F': ' '/(User|System) time/ {s += $2} END {printf "%.1f", s}' "$DIR/time-$t.txt")
  pct=$(awk -F': ' '/Percent of CPU/ {print $2}' "$DIR/time-$t.txt")
  bytes=$(stat -c %s "$out")
  # 1,831,201,280 weights in danube-1.8b (embeddings, output and norms included)
  bits=$(awk -v b="$bytes" 'BEGIN {printf "%.2f", b * 8 / 1831201280}')
  check=""
  if [ "$CHECK" = 1 ]; then
    "$DANU" eval -m "$out" -t "$THREADS" --tokens "$prompt" -o "$DIR/$t.last.f32" 2>/dev/null
    check=$(python3 bench/compare_logits.py "$DIR/$t.last.f32" $G.last.f32 32000 --label "" | sed 's/^ *rows *1 *//')
  fi
  printf '%-8s %9.1f %7s %8.1f %7s %5s %7.0f  %s\n' "$t" "$(awk -v b="$bytes" 'BEGIN {print b / 1e6}')" "$bits" \
    "$wall" "$cpu" "$pct" "$(awk -v k="$rss_kb" 'BEGIN {print k / 1024}')" "$check"
  [ "$KEEP" = 1 ] || rm -f "$out"
done
