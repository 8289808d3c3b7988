#!/usr/bin/env bash
# grammar.sh [MODEL] - issue 18: what a constraint costs, for three inputs
# in bench/grammar/: a JSON Schema of a game character
# (character.schema.json), a generic JSON grammar (json.gbnf) and a list of
# 20 actions (actions20.txt, --choice-file). For each, `danu bench` prints
#   compile: the median of 7 compiles for the model's vocabulary, in ms
#   mask:    each token's mask, mean / p50 / p99 / max in us: REPS
#            generations of up to TG tokens made with the constraint,
#            replayed through one matcher on one thread
#   rows:    tokens/s of the same generations with and without the
#            constraint (default sampler, the same seeds, as many tokens)
#            and their ratio, at -t 1 and -t 2
# then a summary: the mask times (one thread) and the ratio at 2 threads.
#   MODEL: a .gguf or HF directory; default the full-size danube-1.8b shape
#   with synthetic weights in Q4_0 ($DIR/danube-q4_0.gguf, ~1.2 GB, made
#   with `danu synth` when missing, after checking the free space).
# Random weights make the strings gibberish but not the grammar's work: the
# text still walks the whole schema. Not part of CI.
#   TG, REPS, THREADS, DIR, DANU: override the defaults below.
set -euo pipefail
cd "$(dirname "$0")/.."
DANU=${DANU:-build/examples/danu/danu}
DIR=${DIR:-/tmp/danu-full}
TG=${TG:-96}
REPS=${REPS:-3}
THREADS=${THREADS:-1,2}
[ -x "$DANU" ] || { meson setup build --buildtype=release >/dev/null && ninja -C build >/dev/null; }
mkdir -p "$DIR"

MODEL=${1:-$DIR/danube-q4_0.gguf}
if [ ! -e "$MODEL" ]; then
  if [ -n "${1:-}" ]; then echo "grammar.sh: $MODEL does not exist" >&2; exit 1; fi
  free_mb=$(df -Pk "$DIR" | awk 'NR==2 {print int($4/1024)}')
  if [ "$free_mb" -lt 1300 ]; then
    echo "grammar.sh: only ${free_mb} MB free in $DIR; the synthetic Q4_0 model needs about 1.2 GB." \
         "Set DIR or give a model path." >&2
    exit 1
  fi
  echo "grammar.sh: writing the full-size synthetic Q4_0 model to $MODEL (${free_mb} MB free)"
  "$DANU" synth --config danube-1.8b --seed 1 --format gguf --type q4_0 "$MODEL"
fi

G=bench/grammar
CASES=("schema:--json-schema $G/character.schema.json"
       "json.gbnf:--grammar $G/json.gbnf"
       "actions20:--choice-file $G/actions20.txt")
SUMMARY=()
for c in "${CASES[@]}"; do
  label=${c%%:*}
  flags=${c#*:}
  echo "== $label: danu bench -m $MODEL $flags -n $TG -r $REPS -t $THREADS =="
  # shellcheck disable=SC2086
  if ! out=$("$DANU" bench -m "$MODEL" $flags -n "$TG" -r "$REPS" -t "$THREADS"); then
    echo "$out"
    echo "grammar.sh: the $label case failed (see above)" >&2
    SUMMARY+=("$(printf '| %-10s | %10s |' "$label" failed)")
    echo
    continue
  fi
  echo "$out"
  echo
  compile=$(echo "$out" | sed -n 's/^compile: median \([0-9.]*\) ms.*/\1/p')
  mask=$(echo "$out" | sed -n 's/^mask: .*: mean \([0-9.]*\) us, p50 \([0-9.]*\) us, p99 \([0-9.]*\) us, max \([0-9.]*\) us$/\1 \2 \3 \4/p')
  row=$(echo "$out" | awk -F'|' '{t = $2; gsub(/ /, "", t); if (t == "2") print $3 "|" $5 "|" $6 "|" $7}')
  read -r m_mean m_p50 m_p99 m_max <<<"${mask:-? ? ? ?}"
  IFS='|' read -r tokens t_con t_free ratio <<<"${row:-?|?|?|?}"
  SUMMARY+=("$(printf '| %-10s | %10s | %8s | %8s | %8s | %8s | %7s | %9s | %9s | %6s |' "$label" "$compile" \
    "$m_mean" "$m_p50" "$m_p99" "$m_max" "$(echo $tokens)" "$(echo $t_con)" "$(echo $t_free)" "$(echo $ratio)")")
done

echo "== summary (mask: one thread; t/s: -t 2) =="
printf '| %-10s | %10s | %8s | %8s | %8s | %8s | %7s | %9s | %9s | %6s |\n' case "compile ms" "mask us" p50 p99 max \
  tokens "t/s cons" "t/s free" ratio
echo "|------------|------------|----------|----------|----------|----------|---------|-----------|-----------|--------|"
printf '%s\n' "${SUMMARY[@]}"
