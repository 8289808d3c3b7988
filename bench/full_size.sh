#!/usr/bin/env bash
# full_size.sh - the full-size danube-1.8b shape (synthetic weights, seed 1)
# against the transformers golden (tests/data/golden/danube-1.8b.capital*):
# HF bf16 and GGUF bf16/f16 logits and greedy tokens, then the quantized
# types against the model's own bf16 logits; then the 8-bit KV cache against
# the f16 one. Needs ~12 GB of disk in $DIR (KV_ONLY=1: only the KV part, on
# the GGUF bf16 model, ~4 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
DANU=${DANU:-build/examples/danu/danu}
DIR=${DIR:-/tmp/danu-full}
TYPES=${TYPES:-"q8_0 q6_k q5_k q5_0 q4_k q4_0"}
THREADS=${THREADS:-2}
[ -x "$DANU" ] || { meson setup build >/dev/null && ninja -C build >/dev/null; }
mkdir -p "$DIR"
free_gb=$(df -Pk "$DIR" | awk 'NR==2 {print int($4/1048576)}')
if [ "$free_gb" -lt 12 ]; then
  echo "full_size.sh: only ${free_gb} GB free in $DIR; need about 12 GB (3.7 GB per bf16 model). Set DIR." >&2
  exit 1
fi
G=tests/data/golden/danube-1.8b.capital
prompt=$(grep '^prompt' $G.txt | cut -d' ' -f2-)
greedy=$(grep '^greedy' $G.txt | cut -d' ' -f2-)
n_greedy=$(echo "$greedy" | wc -w)

synth() { # config format type path
  [ -e "$4" ] || "$DANU" synth --config danube-1.8b --seed 1 --format "$2" --type "$3" "$4"
}
synth danube-1.8b gguf bf16 "$DIR/danube-bf16.gguf"

# The 8-bit KV cache (--kv-type q8_0) against the f16 one over the prompt and
# the golden's greedy continuation (KL at every position), and its own
# greedy tokens against the golden's.
kv_part() {
  echo "== KV cache q8_0 vs f16 (GGUF bf16; prompt + golden greedy, every position) =="
  for kv in f16 q8_0; do
    "$DANU" eval -m "$DIR/danube-bf16.gguf" -t "$THREADS" --kv-type "$kv" --tokens "$prompt $greedy" --all \
      -o "$DIR/kv-$kv.all.f32"
  done
  python3 bench/compare_logits.py "$DIR/kv-q8_0.all.f32" "$DIR/kv-f16.all.f32" 32000 --label "kv q8_0 vs f16"
  got=$("$DANU" generate -m "$DIR/danube-bf16.gguf" -t "$THREADS" --kv-type q8_0 --tokens "$prompt" -n "$n_greedy" \
        --greedy --print-ids)
  if [ "$got" = "$greedy" ]; then echo "  greedy with kv q8_0: identical ($n_greedy tokens)"; else echo "  greedy with kv q8_0: DIFFERENT: $got"; fi
}
if [ "${KV_ONLY:-0}" = 1 ]; then kv_part; exit 0; fi
synth danube-1.8b hf bf16 "$DIR/danube-hf"
synth danube-1.8b gguf f16 "$DIR/danube-f16.gguf"

echo "== danu info (HF bf16) =="
"$DANU" info "$DIR/danube-hf"
echo
echo "== against transformers (last position of the capital prompt; tolerance 2e-3) =="
for m in danube-hf danube-bf16.gguf danube-f16.gguf; do
  "$DANU" eval -m "$DIR/$m" -t "$THREADS" --tokens "$prompt" -o "$DIR/$m.last.f32"
  python3 bench/compare_logits.py "$DIR/$m.last.f32" $G.last.f32 32000 --label "$m"
  got=$("$DANU" generate -m "$DIR/$m" -t "$THREADS" --tokens "$prompt" -n "$n_greedy" --greedy --print-ids)
  if [ "$got" = "$greedy" ]; then echo "  greedy: identical ($n_greedy tokens)"; else echo "  greedy: DIFFERENT: $got"; fi
done
echo "-- bf16.gguf with --fast-bf16 (bf16-rounded activations; ~7e-3 expected)"
"$DANU" eval -m "$DIR/danube-bf16.gguf" --fast-bf16 -t "$THREADS" --tokens "$prompt" -o "$DIR/danube-bf16.fast.last.f32"
python3 bench/compare_logits.py "$DIR/danube-bf16.fast.last.f32" $G.last.f32 32000 --label "danube-bf16.gguf --fast-bf16"
echo
echo "== quantized types against the bf16 model (every prompt position) =="
"$DANU" eval -m "$DIR/danube-bf16.gguf" -t "$THREADS" --tokens "$prompt" --all -o "$DIR/bf16.all.f32"
for t in $TYPES; do
  f="$DIR/danube-$t.gguf"
  synth danube-1.8b gguf "$t" "$f"
  "$DANU" eval -m "$f" -t "$THREADS" --tokens "$prompt" --all -o "$DIR/$t.all.f32"
  python3 bench/compare_logits.py "$DIR/$t.all.f32" "$DIR/bf16.all.f32" 32000 --label "$t ($(du -h "$f" | cut -f1))"
done
echo
kv_part
