/* sampler.c - logits -> token. Pipeline: copy (NaN -> -inf), penalties,
 * bias, then greedy argmax or top-k, softmax at temperature, top-p, min-p and
 * one draw. All scratch comes from init; a call allocates nothing. The RNG is
 * integer-only so a seed gives the same tokens on every platform. */
#include <math.h>
#include <string.h>
#include "gen/sampler.h"
#include "common/error.h"

void dn_sampler_params_default(dn_sampler_params *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->frequency_penalty = 0.0f;
    p->presence_penalty = 0.0f;
}

/* ---- RNG: splitmix64 expands the seed, xoshiro256** draws ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0,1) from the top 53 bits: exact in a double. */
static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * 0x1.0p-53; }

void dn_sampler_seed(dn_sampler *s, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- lifecycle ---- */

size_t dn_sampler_bytes(int32_t n_vocab)
{
    const dn_sampler *s = NULL;
    return (size_t)n_vocab * (sizeof *s->bias + sizeof *s->work + sizeof *s->idx + sizeof *s->counts);
}

danu_status dn_sampler_init(dn_sampler *s, const dn_alloc *a, int32_t n_vocab, uint64_t seed)
{
    DN_CHECK(s && a, DANU_ERR_INVALID_ARG, "sampler: NULL argument");
    memset(s, 0, sizeof *s);
    DN_CHECK(n_vocab > 0, DANU_ERR_INVALID_ARG, "sampler: vocabulary size %d", (int)n_vocab);
    s->a = a;
    s->n_vocab = n_vocab;
    dn_sampler_params_default(&s->params);
    dn_sampler_seed(s, seed);
    size_t n = (size_t)n_vocab;
    s->bias = dn_calloc(a, n, sizeof *s->bias);
    s->work = dn_malloc(a, n * sizeof *s->work);
    s->idx = dn_malloc(a, n * sizeof *s->idx);
    s->counts = dn_calloc(a, n, sizeof *s->counts);
    if (!s->bias || !s->work || !s->idx || !s->counts) {
        dn_sampler_free(s);
        return dn_seterr(DANU_ERR_NOMEM, "sampler: scratch for %d tokens", (int)n_vocab);
    }
    return DANU_OK;
}

void dn_sampler_free(dn_sampler *s)
{
    if (!s || !s->a) return;
    dn_free(s->a, s->bias);
    dn_free(s->a, s->work);
    dn_free(s->a, s->idx);
    dn_free(s->a, s->counts);
    memset(s, 0, sizeof *s);
}

danu_status dn_sampler_set_bias(dn_sampler *s, danu_token id, float bias)
{
    DN_CHECK(s && s->bias, DANU_ERR_INVALID_ARG, "sampler: not initialised");
    DN_CHECK(id >= 0 && id < s->n_vocab, DANU_ERR_BAD_TOKEN,
             "logit bias: token %d outside [0, %d)", (int)id, (int)s->n_vocab);
    DN_CHECK(!isnan(bias), DANU_ERR_INVALID_ARG, "logit bias for token %d is NaN", (int)id);
    s->has_bias += (bias != 0.0f) - (s->bias[id] != 0.0f);
    s->bias[id] = bias;
    return DANU_OK;
}

void dn_sampler_clear_bias(dn_sampler *s)
{
    if (!s || !s->bias) return;
    memset(s->bias, 0, (size_t)s->n_vocab * sizeof *s->bias);
    s->has_bias = 0;
}

/* ---- penalties and bias ---- */

void dn_sampler_apply_penalties(dn_sampler *s, float *logits, const danu_token *history, size_t n_history)
{
    const dn_sampler_params *p = &s->params;
    float rep = p->repeat_penalty;
    float freq = isnan(p->frequency_penalty) ? 0.0f : p->frequency_penalty;
    float pres = isnan(p->presence_penalty) ? 0.0f : p->presence_penalty;
    /* p <= 0 would divide by zero or flip signs: treat as off */
    int use_rep = rep > 0.0f && rep != 1.0f;
    size_t w = p->repeat_last_n < 0 ? n_history : (size_t)p->repeat_last_n;
    if (w > n_history) w = n_history;
    if (history && w > 0 && (use_rep || freq != 0.0f || pres != 0.0f)) {
        const danu_token *h = history + (n_history - w);
        for (size_t i = 0; i < w; i++)
            if (h[i] >= 0 && h[i] < s->n_vocab) s->counts[h[i]]++;
        /* each distinct id once; zeroing its count marks it done and leaves
         * counts all zero for the next call without an O(n_vocab) clear */
        for (size_t i = 0; i < w; i++) {
            danu_token id = h[i];
            if (id < 0 || id >= s->n_vocab || s->counts[id] == 0) continue;
            float l = logits[id];
            if (use_rep) l = l > 0.0f ? l / rep : l * rep;
            l -= (float)s->counts[id] * freq + pres;
            logits[id] = isnan(l) ? -INFINITY : l;
            s->counts[id] = 0;
        }
    }
    if (s->has_bias) {
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float l = logits[i] + s->bias[i];
            logits[i] = isnan(l) ? -INFINITY : l;
        }
    }
}

/* ---- ordering: logit descending, then id ascending (a strict total order,
 * so top-k ties and the draw order are the same everywhere) ---- */

static inline int before(const float *v, int32_t a, int32_t b)
{
    return v[a] > v[b] || (v[a] == v[b] && a < b);
}

static inline void swap_i(int32_t *x, size_t i, size_t j) { int32_t t = x[i]; x[i] = x[j]; x[j] = t; }

static void insertion_sort(const float *v, int32_t *x, size_t lo, size_t hi)
{
    for (size_t i = lo + 1; i < hi; i++) {
        int32_t t = x[i];
        size_t j = i;
        while (j > lo && before(v, t, x[j - 1])) { x[j] = x[j - 1]; j--; }
        x[j] = t;
    }
}

static void sift_down(const float *v, int32_t *x, size_t root, size_t n)
{
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && before(v, x[c], x[c + 1])) c++;
        if (!before(v, x[root], x[c])) return;
        swap_i(x, root, c);
        root = c;
    }
}

/* Worst-case guard for the quick paths: O(m log m) whatever the input. */
static void heap_sort(const float *v, int32_t *x, size_t m)
{
    for (size_t i = m / 2; i-- > 0;) sift_down(v, x, i, m);
    for (size_t e = m; e-- > 1;) {
        swap_i(x, 0, e);
        sift_down(v, x, 0, e);
    }
}

/* Lomuto partition of x[lo, hi) around a median-of-three; keys are distinct. */
static size_t partition(const float *v, int32_t *x, size_t lo, size_t hi)
{
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    if (before(v, x[mid], x[lo])) swap_i(x, mid, lo);
    if (before(v, x[last], x[lo])) swap_i(x, last, lo);
    if (before(v, x[last], x[mid])) swap_i(x, last, mid);
    swap_i(x, mid, last);
    int32_t piv = x[last];
    size_t st = lo;
    for (size_t i = lo; i < last; i++)
        if (before(v, x[i], piv)) swap_i(x, i, st++);
    swap_i(x, st, last);
    return st;
}

static int depth_budget(size_t m)
{
    int d = 0;
    while (m > 1) { m >>= 1; d++; }
    return 2 * d + 4;
}

static void sort_range(const float *v, int32_t *x, size_t lo, size_t hi, int depth)
{
    while (hi - lo > 16) {
        if (depth-- <= 0) { heap_sort(v, x + lo, hi - lo); return; }
        size_t p = partition(v, x, lo, hi);
        /* recurse into the smaller side to bound the stack */
        if (p - lo < hi - p - 1) { sort_range(v, x, lo, p, depth); lo = p + 1; }
        else { sort_range(v, x, p + 1, hi, depth); hi = p; }
    }
    insertion_sort(v, x, lo, hi);
}

/* Reorder x[0, m) so x[0, k) holds the k first in order (any order among
 * them): quickselect, O(m) on average. */
static void select_top(const float *v, int32_t *x, size_t m, size_t k)
{
    size_t lo = 0, hi = m;
    int depth = depth_budget(m);
    while (hi - lo > 16) {
        if (depth-- <= 0) { heap_sort(v, x + lo, hi - lo); return; }
        size_t p = partition(v, x, lo, hi);
        if (p < k) lo = p + 1;
        else if (p > k) hi = p;
        else return;
    }
    insertion_sort(v, x, lo, hi);
}

/* Top-k for small k in one pass over the ids: a heap of the k best, rooted
 * at the weakest. Most ids lose a single well-predicted compare to the root;
 * ties never displace it, as later ids sort after equal earlier ones. Returns
 * the candidate count: k, or fewer (all finite ids, ascending) when fewer
 * exist. O(n log k) worst case, about O(n) on average. */
#define HEAP_SELECT_MAX 256
static size_t heap_select(const float *v, int32_t n, int32_t *x, size_t k)
{
    size_t m = 0;
    int32_t i = 0;
    for (; i < n && m < k; i++)
        if (v[i] > -INFINITY) x[m++] = i;
    if (m < k) return m;
    for (size_t j = k / 2; j-- > 0;) sift_down(v, x, j, k);
    float thr = v[x[0]];
    for (; i < n; i++) {
        if (v[i] > thr) {
            x[0] = i;
            sift_down(v, x, 0, k);
            thr = v[x[0]];
        }
    }
    return k;
}

/* ---- sampling ---- */

/* The sampling pipeline, stage by stage. The candidates are x[0..m) (ids
 * into v); sorted: highest first; v holds logits, then weights. */
typedef struct cands { size_t m; int sorted; double sum; float pmax; } cands;

/* Greedy: strict > keeps the lowest id on ties and 0 when all are -inf. */
static int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Candidates in ascending id order, or the top k sorted; -inf has
 * probability zero and is left out. */
static cands top_k(const float *v, int32_t n, int32_t *x, int32_t top)
{
    cands c = { 0, 0, 0.0, 0.0f };
    size_t k = top > 0 ? (size_t)top : 0;
    if (k > 0 && k <= HEAP_SELECT_MAX) {
        c.m = heap_select(v, n, x, k);
        if (c.m == k) { sort_range(v, x, 0, c.m, depth_budget(c.m)); c.sorted = 1; }
    } else {
        for (int32_t i = 0; i < n; i++)
            if (v[i] > -INFINITY) x[c.m++] = i;
        if (k > 0 && k < c.m) {
            select_top(v, x, c.m, k);
            c.m = k;
            sort_range(v, x, 0, c.m, depth_budget(c.m));
            c.sorted = 1;
        }
    }
    return c;
}

/* Softmax at temperature into v as unnormalised weights; sum and largest. */
static void weights(float *v, const int32_t *x, cands *c, float temperature)
{
    float vmax = v[x[0]];
    for (size_t i = 1; i < c->m; i++) if (v[x[i]] > vmax) vmax = v[x[i]];
    c->pmax = 0.0f;
    c->sum = 0.0;
    for (size_t i = 0; i < c->m; i++) {
        float l = v[x[i]], e;
        if (vmax == INFINITY) e = l == INFINITY ? 1.0f : 0.0f;  /* inf - inf would be NaN */
        else {
            /* below -104 expf is 0 anyway; skipping it avoids libm's slow
             * underflow path */
            float d = (l - vmax) / temperature;
            e = d < -104.0f ? 0.0f : expf(d);
        }
        v[x[i]] = e;
        c->sum += e;
        if (e > c->pmax) c->pmax = e;
    }
}

/* Nucleus: the smallest prefix (highest first) whose mass reaches top_p. */
static void top_p_cut(float *v, int32_t *x, cands *c, float top_p)
{
    double target = (double)top_p * c->sum;
    if (!c->sorted) {
        /* Tokens below (1 - top_p) * sum / m hold less than 1 - top_p of
         * the mass together, so the kept prefix never reaches them: drop
         * them before sorting (half the bound absorbs rounding). The
         * prefix sums below are unchanged, as they all sort after. */
        double tp = top_p > 0.0f ? (double)top_p : 0.0;
        double eps = 0.5 * (1.0 - tp) * c->sum / (double)c->m;  /* < mean <= max */
        size_t j = 0;
        for (size_t i = 0; i < c->m; i++)
            if (v[x[i]] >= eps) x[j++] = x[i];
        c->m = j;
        sort_range(v, x, 0, c->m, depth_budget(c->m));
    }
    double cum = 0.0;   /* at least one token stays */
    for (size_t i = 0; i < c->m; i++) {
        cum += v[x[i]];
        if (cum >= target) { c->m = i + 1; break; }
    }
    c->sum = 0.0;
    for (size_t i = 0; i < c->m; i++) c->sum += v[x[i]];
}

/* Min-p: drop weights below min_p of the largest; compacting keeps the
 * current order and the largest always survives. */
static void min_p_cut(const float *v, int32_t *x, cands *c, float min_p)
{
    float thr = min_p * c->pmax;
    if (thr > c->pmax) thr = c->pmax;
    size_t j = 0;
    c->sum = 0.0;
    for (size_t i = 0; i < c->m; i++)
        if (v[x[i]] >= thr) { x[j++] = x[i]; c->sum += v[x[i]]; }
    c->m = j;
}

/* One draw in proportion to the weights. */
static int32_t draw(const float *v, const int32_t *x, const cands *c, uint64_t rng[4])
{
    double r = next_unit(rng) * c->sum, cum = 0.0;
    int32_t last = x[0];
    for (size_t i = 0; i < c->m; i++) {
        float e = v[x[i]];
        if (e <= 0.0f) continue;
        cum += e;
        last = x[i];
        if (cum > r) return x[i];
    }
    /* rounding left r at or past the total: the last token with weight */
    return last;
}

danu_token dn_sampler_sample(dn_sampler *s, const float *logits, const uint32_t *mask, const danu_token *history,
                             size_t n_history)
{
    if (!s || !s->work || !logits) return 0;
    const dn_sampler_params *p = &s->params;
    float *v = s->work;
    int32_t *x = s->idx;
    /* masking first is the same as masking after penalties and bias: both
     * leave -inf at -inf (a +inf bias on it gives NaN, which becomes -inf) */
    if (mask)
        for (int32_t i = 0; i < s->n_vocab; i++)
            v[i] = !((mask[i >> 5] >> (i & 31)) & 1) || isnan(logits[i]) ? -INFINITY : logits[i];
    else
        for (int32_t i = 0; i < s->n_vocab; i++) v[i] = isnan(logits[i]) ? -INFINITY : logits[i];
    dn_sampler_apply_penalties(s, v, history, n_history);
    if (!(p->temperature > 0.0f)) return argmax(v, s->n_vocab);
    cands c = top_k(v, s->n_vocab, x, p->top_k);
    if (c.m == 0) return 0;
    weights(v, x, &c, p->temperature);
    if (p->top_p < 1.0f) top_p_cut(v, x, &c, p->top_p);
    if (p->min_p > 0.0f) min_p_cut(v, x, &c, p->min_p);
    return draw(v, x, &c, s->rng);
}
