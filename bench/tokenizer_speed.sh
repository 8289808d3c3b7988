#!/bin/sh
# tokenizer_speed.sh - encode throughput of libdanu's tokenizer vs SentencePiece's
# C++ encoder (python3-sentencepiece), on ~1 MB of generated English text
# (fixed word list, seeded xorshift; see bench/tokenize_bench.c). Both encode
# the whole text in one call; only the encode is timed (best of 5), and the
# two id sequences must be identical. A second line times the same text split
# at newlines (~1000-byte paragraphs), one encode per line (SentencePiece gets
# the list in one call, so its loop runs in C++).
# Usage: bench/tokenizer_speed.sh [BYTES]   (run from anywhere; needs cc and,
# for the SentencePiece number, a python3 with the sentencepiece module)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BYTES=${1:-1048576}
PY=${PYTHON:-/usr/bin/python3}
CC=${CC:-cc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/danu-tokbench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MODEL="$ROOT/tests/data/llama2-tokenizer/tokenizer.model"

$CC -O2 -std=gnu11 -D_GNU_SOURCE -I"$ROOT/include" -I"$ROOT/lib" -o "$WORK/tokenize_bench" \
    "$ROOT/bench/tokenize_bench.c" "$ROOT/lib/text/vocab.c" "$ROOT/lib/text/bpe.c" "$ROOT/lib/text/decode.c" \
    "$ROOT/lib/format/spm.c" "$ROOT/lib/common/alloc.c" "$ROOT/lib/common/error.c" -lm
"$WORK/tokenize_bench" gen "$WORK/text.txt" "$BYTES" 42
"$WORK/tokenize_bench" run "$MODEL" "$WORK/text.txt" "$WORK/ids.danu"

if ! "$PY" -c "import sentencepiece" 2>/dev/null; then
    echo "sentencepiece: python module not found ($PY), skipped"
    exit 0
fi
"$PY" - "$MODEL" "$WORK/text.txt" "$WORK/ids.danu" <<'PYEOF'
import sys, time
import sentencepiece as spm
model, text_path, ids_path = sys.argv[1:4]
sp = spm.SentencePieceProcessor(model_file=model)
text = open(text_path, encoding="utf-8").read()
nbytes = len(text.encode("utf-8"))
best = 1e30
for _ in range(5):
    t0 = time.perf_counter()
    ids = sp.encode(text)
    best = min(best, time.perf_counter() - t0)
print("sentencepiece %s: %d bytes -> %d ids, best of 5: %.4f s, %.2f MB/s"
      % (spm.__version__, nbytes, len(ids), best, nbytes / best / 1e6))
lines = text.split("\n")
best_lines = 1e30
for _ in range(5):
    t0 = time.perf_counter()
    line_ids = sp.encode(lines)
    best_lines = min(best_lines, time.perf_counter() - t0)
print("sentencepiece per line: %d ids, best of 5: %.4f s, %.2f MB/s"
      % (sum(len(x) for x in line_ids), best_lines, nbytes / best_lines / 1e6))
ours = [int(x) for x in open(ids_path).read().split()]
if ours != ids:
    print("MISMATCH: libdanu and sentencepiece ids differ")
    sys.exit(1)
print("ids identical")
PYEOF
