#!/usr/bin/env bash
# compare.sh - `danu bench` on full-size danube-1.8b (synthetic weights) in
# BF16, Q8_0, Q4_0 and Q4_K_M, at 1 and 2 threads, next to llama.cpp's
# llama-bench figures measured on this kind of machine (2-core Zen 5,
# llama.cpp Feb 2025 CPU build, same synthetic weights; from the project's
# performance issue). Needs ~8 GB of disk in $DIR. Run it on a quiet machine.
#   PP, TG, REPS, TYPES, DIR, DANU: override the defaults below;
#   FAST_BF16=0 skips the extra BF16 row with --fast-bf16;
#   ISAS: the kernel levels also forced through DANU_ISA on x86-64 for the
#   integer types (default "avx2 avx2vnni": the CPUs without AVX-512; the
#   bench's kernels line names the level used, avx2 where AVX-VNNI is
#   absent), ISAS= skips those rows;
#   LONG_TYPES: the types also measured after DEPTH (4096) tokens of context
#   with an f16 and a q8_0 KV cache, side by side (default "q4_0"; llama.cpp:
#   7.8 tokens/s at 2 threads for Q4_0 there), LONG_TYPES= skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
DANU=${DANU:-build/examples/danu/danu}
DIR=${DIR:-/tmp/danu-full}
PP=${PP:-512}
TG=${TG:-128}
REPS=${REPS:-3}
TYPES=${TYPES:-"bf16 q8_0 q4_0 q4_k_m"}
[ -x "$DANU" ] || { meson setup build >/dev/null && ninja -C build >/dev/null; }
mkdir -p "$DIR"
free_gb=$(df -Pk "$DIR" | awk 'NR==2 {print int($4/1048576)}')
if [ "$free_gb" -lt 8 ]; then
  echo "compare.sh: only ${free_gb} GB free in $DIR; need about 8 GB. Set DIR." >&2
  exit 1
fi
[ -d "$DIR/danube-hf" ] || "$DANU" synth --config danube-1.8b --seed 1 --format hf "$DIR/danube-hf"

# llama.cpp: pp512 1t, tg128 1t, pp512 2t, tg128 2t
declare -A LLAMA=(
  [bf16]="44.9 6.98 85.8 10.8" [q8_0]="29.7 11.4 56.3 18.8"
  [q4_0]="32.0 18.1 58.8 31.7" [q4_k_m]="20.8 18.0 39.2 26.0")

# One bench run and its ratios to llama.cpp's figures for type $1.
bench_vs_llama() {   # type label file [danu bench flags...]
  local t=$1 label=$2 f=$3; shift 3
  echo "== $label: $(du -h "$f" | cut -f1) =="
  out=$("$DANU" bench -m "$f" -p "$PP" -n "$TG" -t 1,2 -r "$REPS" "$@")
  echo "$out"
  read -r l_pp1 l_tg1 l_pp2 l_tg2 <<<"${LLAMA[$t]}"
  for th in 1 2; do
    pp=$(echo "$out" | awk -v th="$th" -F'|' '$2+0==th && $3 ~ /pp/ {split($4,a," "); print a[1]}')
    tg=$(echo "$out" | awk -v th="$th" -F'|' '$2+0==th && $3 ~ /tg/ {split($4,a," "); print a[1]}')
    lpp=$([ "$th" = 1 ] && echo "$l_pp1" || echo "$l_pp2")
    ltg=$([ "$th" = 1 ] && echo "$l_tg1" || echo "$l_tg2")
    awk -v t="$label" -v th="$th" -v pp="$pp" -v tg="$tg" -v lpp="$lpp" -v ltg="$ltg" 'BEGIN {
      printf "   vs llama.cpp %-6s %dt: pp%s %.2fx (%s vs %s)   tg%s %.2fx (%s vs %s)\n",
        t, th, "'"$PP"'", pp / lpp, pp, lpp, "'"$TG"'", tg / ltg, tg, ltg }'
  done
}

for t in $TYPES; do
  f="$DIR/danube-$t.gguf"
  [ -e "$f" ] || "$DANU" quantize "$DIR/danube-hf" "$f" --type "$t"
  bench_vs_llama "$t" "$t" "$f"
  # BF16 also with activations rounded to bf16 as llama.cpp does (opt-in:
  # logits move by up to ~7e-3 of the largest; the default is exact)
  if [ "$t" = bf16 ] && [ "${FAST_BF16:-1}" = 1 ]; then
    bench_vs_llama bf16 "bf16 --fast-bf16" "$f" --fast-bf16
  fi
done

# The AVX2 levels forced (DANU_ISA caps the kernels), for the integer types
if [ "$(uname -m)" = x86_64 ]; then
  for isa in ${ISAS-avx2 avx2vnni}; do
    for t in $TYPES; do
      [ "$t" = bf16 ] && continue
      DANU_ISA=$isa bench_vs_llama "$t" "$t DANU_ISA=$isa" "$DIR/danube-$t.gguf"
    done
  done
fi

# Long contexts: generation after DEPTH tokens, f16 and q8_0 KV caches in one
# run each, alternating (the host's bandwidth drifts)
DEPTH=${DEPTH:-4096}
for t in ${LONG_TYPES-q4_0}; do
  f="$DIR/danube-$t.gguf"
  [ -e "$f" ] || "$DANU" quantize "$DIR/danube-hf" "$f" --type "$t"
  for kv in f16 q8_0; do
    echo "== $t tg${TG_LONG:-32} @ d$DEPTH, --kv-type $kv =="
    "$DANU" bench -m "$f" -p 0 -n "${TG_LONG:-32}" -d "$DEPTH" -t 1,2 -r "$REPS" --kv-type "$kv"
  done
done
