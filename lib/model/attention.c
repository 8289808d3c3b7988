/* attention.c - from the projected q, k, v of a batch to the attention
 * output: RoPE through a cos/sin table built once per batch, the batch's
 * K/V staged in the cache, then attention in tiles of query rows that share
 * a KV head, split over the thread pool. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "model/attention.h"

enum { ATT_ROWS = 16 };   /* query rows per attention work item (see att_item) */

/* Bytes from one row's Q8 weight plane to the next: a run's keys, up to 3
 * padding bytes before and after, rounded to 64. */
static size_t plane_bytes(int32_t score_len) { return ((size_t)score_len + 6 + 63) / 64 * 64; }

size_t dn_attention_floats(const dn_config *c, int32_t score_len)
{
    /* ATT_ROWS query rows, their outputs, ATT_ROWS score rows; for Q8
     * values ATT_ROWS x 2 int64 sums of head_dim and 2 weight planes */
    return ((size_t)(2 * ATT_ROWS) * c->head_dim + (size_t)ATT_ROWS * score_len + (size_t)(4 * ATT_ROWS) * c->head_dim +
            (size_t)ATT_ROWS * 2 * plane_bytes(score_len) / 4 + 15) / 16 * 16;
}

/* ---- RoPE ------------------------------------------------------------------ */

typedef struct rope_job {
    const danu_model *m;
    dn_kvcache *kv;
    dn_scratch *s;
    int layer, n;
    int64_t pos0;
} rope_job;

static void table_rows(void *arg, int64_t t0, int64_t t1, int lane)
{
    (void)lane;
    const rope_job *j = arg;
    const int hd = j->m->cfg.head_dim, half = hd / 2;
    for (int64_t t = t0; t < t1; t++) {
        float *cs = j->s->rope + (size_t)t * hd;
        for (int i = 0; i < half; i++) {
            double ang = (double)(j->pos0 + t) * (double)j->s->inv_freq[i];
            cs[i] = (float)cos(ang);
            cs[half + i] = (float)sin(ang);
        }
    }
}

void dn_rope_table(const danu_model *m, dn_scratch *s, const dn_team *team, int n, int64_t pos0)
{
    rope_job j = { .m = m, .s = s, .n = n, .pos0 = pos0 };
    dn_run_rows(team, table_rows, &j, n);
}

/* Rotate n_heads heads of x by one table row. HF layout pairs (j, j + d/2);
 * the llama.cpp GGUF layout pairs (2j, 2j + 1). */
static void rotate(float *x, int n_heads, int hd, const float *cs, int interleaved)
{
    const int half = hd / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        for (int j = 0; j < half; j++) {
            const float c = cs[j], sn = cs[half + j];
            const int i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
            const float a = v[i0], b = v[i1];
            v[i0] = a * c - b * sn;
            v[i1] = a * sn + b * c;
        }
    }
}

/* Work units are (token, KV head) pairs, token-major, in runs of whole
 * tokens: the group's query heads and the key head are rotated, the key
 * and value head stored. A batch is split over the team; a few tokens stay
 * on the caller (one token is ~5 us of work for Danube, and a hand-off to a
 * worker on a loaded machine cost more than it saved, 2026-12-05). */
static void stage_rows(void *arg, int64_t t0, int64_t t1, int lane)
{
    (void)lane;
    const rope_job *j = arg;
    const dn_config *c = &j->m->cfg;
    const int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    for (int u = (int)t0 * c->n_kv_heads; u < (int)t1 * c->n_kv_heads; u++) {
        const int t = u / c->n_kv_heads, g = u % c->n_kv_heads;
        const float *cs = j->s->rope + (size_t)t * hd;
        const size_t ko = (size_t)t * kvd + (size_t)g * hd;
        rotate(j->s->q + (size_t)t * qd + (size_t)g * group * hd, group, hd, cs, c->rope_interleaved);
        rotate(j->s->k + ko, 1, hd, cs, c->rope_interleaved);
        dn_kv_stage(j->kv, j->m->kern, j->layer, t, g, j->s->k + ko, j->s->v + ko);
    }
}

void dn_rope_stage(const danu_model *m, dn_kvcache *kv, dn_scratch *s, const dn_team *team, int layer, int n)
{
    rope_job j = { .m = m, .kv = kv, .s = s, .layer = layer, .n = n };
    dn_run_rows(team, stage_rows, &j, n);
}

/* ---- attention tiles ---------------------------------------------------------- */

/* A work item is up to ATT_ROWS query rows sharing one KV head: the heads
 * of a group (all of them up to 16) for a tile of consecutive tokens, so
 * each cached K/V row is read once for all of them. Scores cover the union
 * of the tile's key ranges; keys outside a row's own causal/window range
 * get probability 0, which adds exactly nothing to its output. */
typedef struct att_job {
    const danu_model *m;
    const dn_kvcache *kv;
    dn_scratch *s;
    int layer, n;
    int64_t pos0;
} att_job;

/* A run of positions whose K/V are consecutive in one area. */
typedef struct kv_run { int64_t p; int n; dn_kv_span at; } kv_run;

/* Positions lo..hi of KV head g as at most 3 runs: the ring (split where
 * it wraps), then this batch's staging rows (positions >= pos0). */
static int kv_runs(const dn_kvcache *kv, int layer, int g, int64_t lo, int64_t hi, int64_t pos0, kv_run r[3])
{
    int nr = 0;
    int64_t p = lo;
    while (p <= hi && p < pos0) {
        const int64_t end = hi < pos0 - 1 ? hi : pos0 - 1, to_wrap = kv->cap - p % kv->cap;
        const int64_t len = end - p + 1 < to_wrap ? end - p + 1 : to_wrap;
        r[nr++] = (kv_run){ p, (int)len, dn_kv_span_at(kv, &kv->ring, layer, g, (int32_t)(p % kv->cap)) };
        p += len;
    }
    if (p <= hi) r[nr++] = (kv_run){ p, (int)(hi - p + 1), dn_kv_span_at(kv, &kv->stage, layer, g, (int32_t)(p - pos0)) };
    return nr;
}

/* First position a query at pos attends to (sliding window, if any). */
static int64_t window_start(const dn_config *c, int64_t pos)
{
    return c->window > 0 && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0;
}

/* Q8 values (kernels.h att_q8_*), the softmax fused into the weights.
 * Row r (token t0 + r / nh) attends to its own keys a..b-1 (score
 * indices from lo). c = DN_ATT_W_MAX / (the largest V scale among them),
 * so no weight e * scale * c (e = exp(s - max) <= 1) passes it; the sums
 * of weights times codes and the denominator are exact integers, and each
 * output is scaled once: (128 hi + lo) / (c * denominator). Every quantity
 * depends only on the row's own keys, so a token alone and in a batch get
 * the same bits. A NaN or infinite score maximum or V scale gives NaN;
 * V scales all below 1e-30 (c would overflow) give zeros. */
static void values_q8(const dn_kernels *k, int hd, int nq, int nh, const float *sc, size_t ss, const kv_run *runs, int nr,
                      int64_t lo, int (*own)[2], int64_t *acc, uint8_t *w, size_t ws, float *ob)
{
    float c[ATT_ROWS], m[ATT_ROWS];
    int64_t den[ATT_ROWS] = { 0 };
    int bad[ATT_ROWS];
    for (int r = 0; r < nq; r++) {
        if (r % nh == 0) {   /* the V scales' maximum, once per token */
            float vmax = 0.0f;
            for (int i = 0; i < nr; i++) {
                const int s0 = (int)(runs[i].p - lo);
                const int x0 = own[r][0] > s0 ? own[r][0] : s0, x1 = own[r][1] < s0 + runs[i].n ? own[r][1] : s0 + runs[i].n;
                if (x0 >= x1) continue;
                const float x = k->max(runs[i].at.vs + (x0 - s0), x1 - x0);
                vmax = x != x || vmax != vmax ? NAN : x > vmax ? x : vmax;
            }
            bad[r] = !(vmax <= FLT_MAX);
            c[r] = !bad[r] && vmax >= 1e-30f ? (float)DN_ATT_W_MAX / vmax : 0.0f;
        } else {
            c[r] = c[r - 1];
            bad[r] = bad[r - 1];
        }
        m[r] = k->max(sc + (size_t)r * ss + own[r][0], own[r][1] - own[r][0]);
        bad[r] |= !(m[r] >= -FLT_MAX && m[r] <= FLT_MAX);
    }
    memset(acc, 0, sizeof(int64_t) * 2 * (size_t)nq * hd);
    for (int i = 0; i < nr; i++) {
        const int s0 = (int)(runs[i].p - lo), pad = runs[i].at.lane % 4, end = (pad + runs[i].n + 3) & ~3;
        for (int r = 0; r < nq; r++) {   /* the run's planes: the row's own keys' weights, zeros around them */
            uint8_t *hi = w + (size_t)(2 * r) * ws, *lw = hi + ws;
            const int x0 = own[r][0] > s0 ? own[r][0] : s0, x1 = own[r][1] < s0 + runs[i].n ? own[r][1] : s0 + runs[i].n;
            if (bad[r] || x0 >= x1) {
                memset(hi, 0, (size_t)end);
                memset(lw, 0, (size_t)end);
                continue;
            }
            const int b0 = pad + x0 - s0, b1 = pad + x1 - s0;
            memset(hi, 0, (size_t)b0);
            memset(lw, 0, (size_t)b0);
            den[r] += k->att_q8_weights(sc + (size_t)r * ss + x0, m[r], runs[i].at.vs + (x0 - s0), x1 - x0, c[r], hi + b0,
                                        lw + b0);
            memset(hi + b1, 0, (size_t)(end - b1));
            memset(lw + b1, 0, (size_t)(end - b1));
        }
        k->att_q8_values(hd, nq, w, ws, runs[i].at.v, runs[i].at.lane, runs[i].n, acc);
    }
    for (int r = 0; r < nq; r++) {
        const double scale = (double)c[r] * ((double)den[r] / (double)(1 << DN_ATT_E_SHIFT));
        for (int d = 0; d < hd; d++) {
            const int64_t sum = acc[(size_t)(2 * r) * hd + d] * (1 << DN_ATT_W_SHIFT) + acc[(size_t)(2 * r + 1) * hd + d];
            ob[(size_t)r * hd + d] = bad[r] ? NAN : c[r] > 0.0f ? (float)((double)sum / scale) : 0.0f;
        }
    }
}

/* Heads h0..h0+nh-1 of KV head g for tokens t0..t0+tn-1 (nh * tn <= ATT_ROWS). */
static void att_item(const att_job *j, float *buf, int g, int h0, int nh, int t0, int tn)
{
    const dn_config *c = &j->m->cfg;
    const dn_kernels *k = j->m->kern;
    const dn_kvcache *kv = j->kv;
    const int hd = c->head_dim, qd = c->n_heads * hd, nq = nh * tn;
    const size_t ss = (size_t)j->s->score_len;
    const float scale = 1.0f / sqrtf((float)hd);
    float *qb = buf, *ob = qb + ATT_ROWS * hd, *sc = ob + ATT_ROWS * hd;
    for (int r = 0; r < nq; r++) {   /* row r: token t0 + r / nh, head h0 + r % nh, times 1/sqrt(hd) */
        const float *src = j->s->q + (size_t)(t0 + r / nh) * qd + (size_t)(h0 + r % nh) * hd;
        for (int d = 0; d < hd; d++) qb[(size_t)r * hd + d] = src[d] * scale;
    }
    const int64_t first = j->pos0 + t0, last = first + tn - 1;
    const int64_t lo = window_start(c, first);
    const int nk = (int)(last - lo + 1);
    kv_run runs[3];
    const int nr = kv_runs(kv, j->layer, g, lo, last, j->pos0, runs);
    for (int i = 0; i < nr; i++)
        k->att_scores(hd, nq, qb, hd, runs[i].at.k, runs[i].at.lane, runs[i].n, kv->type, runs[i].at.ks,
                      sc + (runs[i].p - lo), ss);
    int own[ATT_ROWS][2];   /* each row's own keys: causal, inside its window */
    for (int r = 0; r < nq; r++) {
        const int64_t pos = first + r / nh;
        own[r][0] = (int)(window_start(c, pos) - lo);
        own[r][1] = (int)(pos - lo + 1);
    }
    if (kv->type == DN_KV_Q8) {
        int64_t *acc = (int64_t *)(sc + (size_t)ATT_ROWS * ss);
        values_q8(k, hd, nq, nh, sc, ss, runs, nr, lo, own, acc, (uint8_t *)(acc + (size_t)2 * ATT_ROWS * hd),
                  plane_bytes((int32_t)ss), ob);
    } else {
        for (int r = 0; r < nq; r++) {   /* probabilities, 0 outside the row's own keys */
            float *row = sc + (size_t)r * ss;
            k->softmax(row + own[r][0], own[r][1] - own[r][0]);
            memset(row, 0, sizeof(float) * (size_t)own[r][0]);
            memset(row + own[r][1], 0, sizeof(float) * (size_t)(nk - own[r][1]));
        }
        memset(ob, 0, sizeof(float) * (size_t)nq * hd);
        for (int i = 0; i < nr; i++)
            k->att_values(hd, nq, sc + (runs[i].p - lo), ss, runs[i].at.v, runs[i].n, kv->type, ob, hd);
    }
    for (int r = 0; r < nq; r++)
        memcpy(j->s->xb + (size_t)(t0 + r / nh) * qd + (size_t)(h0 + r % nh) * hd, ob + (size_t)r * hd, sizeof(float) * hd);
}

/* Items in token-tile-major order (later tiles attend to more keys);
 * a chunk is one item, its buffer the lane's. */
typedef struct att_split { const att_job *j; int nh, subs, tn, per_tile; } att_split;

static void att_chunk(void *arg, int64_t w, int lane)
{
    const att_split *a = arg;
    const att_job *j = a->j;
    const int group = j->m->cfg.n_heads / j->m->cfg.n_kv_heads;
    const int tile = (int)(w / a->per_tile), g = (int)(w % a->per_tile) / a->subs, sub = (int)(w % a->subs);
    const int h0 = g * group + sub * a->nh, heads = group - sub * a->nh < a->nh ? group - sub * a->nh : a->nh;
    const int t0 = tile * a->tn, tokens = j->n - t0 < a->tn ? j->n - t0 : a->tn;
    att_item(j, j->s->scores + (size_t)lane * j->s->att_floats, g, h0, heads, t0, tokens);
}

/* Below this many multiply-adds (queries x keys x head_dim) attention
 * stays on the caller. */
enum { ATT_SPLIT_MIN_MACS = 1 << 18 };

void dn_attention(const danu_model *m, const dn_kvcache *kv, dn_scratch *s, const dn_team *team, int layer, int n,
                  int64_t pos0)
{
    const dn_config *c = &m->cfg;
    att_job j = { m, kv, s, layer, n, pos0 };
    const int group = c->n_heads / c->n_kv_heads, nh = group < ATT_ROWS ? group : ATT_ROWS;
    att_split a = { &j, nh, (group + nh - 1) / nh, ATT_ROWS / nh, 0 };
    a.per_tile = c->n_kv_heads * a.subs;
    const int64_t items = (int64_t)((n + a.tn - 1) / a.tn) * a.per_tile;
    const int64_t keys = pos0 + n - window_start(c, pos0);
    if (team && !team->split_small && (int64_t)n * c->n_heads * keys * c->head_dim < ATT_SPLIT_MIN_MACS) team = NULL;
    dn_team_for(team, items, att_chunk, &a);
}
