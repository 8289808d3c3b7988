#!/usr/bin/env python3
"""compare_logits.py OURS.f32 REF.f32 VOCAB [--label L]

Compares float32 logit rows (little-endian, row after row): per row the max
|ours - ref| / max |ref|, the KL divergence KL(ref || ours) of the softmaxes,
RMSE and top-1 agreement; prints one summary line. Pure Python (no numpy)."""
import math
import sys
from array import array


def rows(path, vocab):
    a = array('f')
    with open(path, 'rb') as f:
        a.frombytes(f.read())
    if sys.byteorder != 'little':
        a.byteswap()
    return [a[i:i + vocab] for i in range(0, len(a), vocab)]


def log_softmax(r):
    m = max(r)
    z = math.log(sum(math.exp(x - m) for x in r))
    return [x - m - z for x in r]


def main():
    ours_p, ref_p, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
    label = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == '--label' else ours_p
    ours, ref = rows(ours_p, vocab), rows(ref_p, vocab)
    if len(ours) != len(ref):
        ours = ours[-len(ref):]          # ref holds the last rows only
    worst = kl_sum = se = 0.0
    top1 = 0
    for o, r in zip(ours, ref):
        worst = max(worst, max(abs(a - b) for a, b in zip(o, r)) / max(abs(b) for b in r))
        lr, lo = log_softmax(r), log_softmax(o)
        kl_sum += sum(math.exp(a) * (a - b) for a, b in zip(lr, lo))
        se += sum((a - b) ** 2 for a, b in zip(o, r))
        top1 += max(range(vocab), key=o.__getitem__) == max(range(vocab), key=r.__getitem__)
    n = len(ref)
    print('%-28s rows %3d  max|err|/max|ref| %.2e  mean KL %.6f  RMSE %.5f  top-1 %d/%d'
          % (label, n, worst, kl_sum / n, math.sqrt(se / (n * vocab)), top1, n))
    return worst


if __name__ == '__main__':
    main()
