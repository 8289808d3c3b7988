/* forward.c - the Mistral/Llama decoder, read top to bottom:
 *   x = embed(tokens)
 *   per layer: x += Wo . attn(rope(Wq.rms(x)), rope(Wk.rms(x)), Wv.rms(x))
 *              x += Wdown . (silu(Wgate.rms(x)) * Wup.rms(x))
 *   logits = Wout . rms(x)
 * Matrix products go through the kernel table, split over the thread pool by
 * rows; attention is split over (token, head) pairs. */
#include <math.h>
#include <string.h>
#include "model/forward.h"
#include "common/error.h"
#include "common/bytes.h"
#include "quant/quant.h"

/* ---- scratch ---------------------------------------------------------- */

enum { ATT_ROWS = 16 };   /* query rows per attention work item (see att_item) */

/* The scratch's blocks, in one place for dn_scratch_init and the byte
 * counts: sizes in bytes, each allocated aligned. */
enum { SB_X, SB_XB, SB_Q, SB_K, SB_V, SB_HB, SB_HB2, SB_SCORES, SB_INV_FREQ, SB_ACT0, SB_ACT1, SB_ACT2, SB_COUNT };

static void scratch_sizes(const danu_model *m, int32_t n_batch, int32_t n_threads, int32_t cap, size_t sz[SB_COUNT],
                          size_t *att_floats)
{
    const dn_config *c = &m->cfg;
    size_t nb = (size_t)n_batch, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->hidden ? qd : (size_t)c->hidden;
    /* per thread: ATT_ROWS query rows, their outputs, 16 transposed keys, ATT_ROWS score rows */
    *att_floats = ((size_t)(2 * ATT_ROWS + 16) * c->head_dim + (size_t)ATT_ROWS * (size_t)(cap + n_batch) + 15) / 16 * 16;
    /* the widest input of any product: ffn (down), heads*hd (o), hidden */
    size_t widest = (size_t)c->ffn > wide ? (size_t)c->ffn : wide, most = 0;
    for (int32_t t = 0; t < DN_TYPE_COUNT; t++)
        if (dn_type_is_weight(t) || dn_x16_base(t) >= 0) {   /* x16: repacked matrices */
            size_t b = dn_act_row_bytes(m->kern, t, (int64_t)widest);
            if (b > most) most = b;
        }
    sz[SB_X] = nb * c->hidden * sizeof(float);
    sz[SB_XB] = sz[SB_Q] = nb * wide * sizeof(float);   /* q also holds Wo's [n][hidden] output */
    sz[SB_K] = sz[SB_V] = nb * kvd * sizeof(float);
    sz[SB_HB] = sz[SB_HB2] = nb * c->ffn * sizeof(float);
    sz[SB_SCORES] = (size_t)n_threads * *att_floats * sizeof(float);
    sz[SB_INV_FREQ] = (size_t)c->head_dim / 2 * sizeof(float);
    sz[SB_ACT0] = sz[SB_ACT1] = sz[SB_ACT2] = most * nb;
}

size_t dn_scratch_plan_bytes(const danu_model *m, int32_t n_batch, int32_t n_threads, int32_t cap)
{
    size_t sz[SB_COUNT], att, total = 0;
    scratch_sizes(m, n_batch, n_threads, cap, sz, &att);
    for (int i = 0; i < SB_COUNT; i++) total += dn_aligned_bytes(sz[i]);
    return total;
}

danu_status dn_scratch_init(dn_scratch *s, const dn_alloc *a, const danu_model *m, int32_t n_batch,
                            int32_t n_threads, int32_t cap)
{
    memset(s, 0, sizeof *s);
    const dn_config *c = &m->cfg;
    s->a = a;
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    s->score_len = cap + n_batch;
    size_t sz[SB_COUNT];
    scratch_sizes(m, n_batch, n_threads, cap, sz, &s->att_floats);
    float **f[SB_ACT0] = { &s->x, &s->xb, &s->q, &s->k, &s->v, &s->hb, &s->hb2, &s->scores, &s->inv_freq };
    int ok = 1;
    for (int i = 0; i < SB_ACT0; i++) ok &= (*f[i] = dn_malloc_aligned(a, sz[i])) != NULL;
    for (int i = 0; i < 3; i++) ok &= (s->act[i] = dn_malloc_aligned(a, sz[SB_ACT0 + i])) != NULL;
    s->act_bytes = sz[SB_ACT0];
    if (!ok) {
        dn_scratch_free(s);
        return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the evaluation scratch for %d tokens", n_batch);
    }
    /* theta^(-2j/d) in double: the reference computes RoPE in float64 */
    for (int j = 0; j < c->head_dim / 2; j++)
        s->inv_freq[j] = (float)pow((double)c->rope_theta, -2.0 * j / c->head_dim);
    return DANU_OK;
}

void dn_scratch_free(dn_scratch *s)
{
    if (!s->a) return;
    float **f[] = { &s->x, &s->xb, &s->q, &s->k, &s->v, &s->hb, &s->hb2, &s->scores, &s->inv_freq };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) { dn_free_aligned(s->a, *f[i]); *f[i] = NULL; }
    for (int i = 0; i < 3; i++) { dn_free_aligned(s->a, s->act[i]); s->act[i] = NULL; }
}

size_t dn_scratch_bytes(const dn_scratch *s, const danu_model *m)
{
    return dn_scratch_plan_bytes(m, s->n_batch, s->n_threads, s->score_len - s->n_batch);
}

/* ---- threaded matrix products ----------------------------------------- */

typedef struct mm_job {
    const dn_kernels *k;
    int n;                       /* matrices in this job (1..3) */
    const dn_matrix *W[3];
    const void *Xq[3];
    float *Y[3];
    int64_t n_tok;
} mm_job;

/* The matrices' rows, cut into chunks of 16 counted from the start of each
 * matrix (a matrix's last chunk may be short), form one range of chunks
 * split evenly over threads: tiles stay whole and every split point is a
 * multiple of 16 within its matrix, as the repacked x16 row groups need. */
static void mm_task(void *arg, int ith, int nth)
{
    const mm_job *j = arg;
    int64_t chunks = 0;
    for (int i = 0; i < j->n; i++) chunks += (j->W[i]->rows + 15) / 16;
    const int64_t c0 = chunks * ith / nth, c1 = chunks * (ith + 1) / nth;
    int64_t base = 0;   /* first chunk of matrix i */
    for (int i = 0; i < j->n && base < c1; i++) {
        const int64_t rows = j->W[i]->rows, n = (rows + 15) / 16;
        const int64_t a = c0 > base ? c0 - base : 0, b = c1 - base < n ? c1 - base : n;
        if (a < b)
            dn_matmul_rows(j->k, j->W[i], j->Xq[i], j->n_tok, j->Y[i], rows, 16 * a, 16 * b < rows ? 16 * b : rows);
        base += n;
    }
}

/* Activation rows converted for each distinct activation type in flight;
 * split by token rows when the batch is large enough to be worth it. */
typedef struct prep_job {
    const dn_kernels *k;
    int n;
    int32_t wtype[3];
    int64_t cols;
    const float *X;
    void *dst[3];
    int64_t n_tok;
} prep_job;

static void prep_task(void *arg, int ith, int nth)
{
    const prep_job *j = arg;
    int64_t t0 = j->n_tok * ith / nth, t1 = j->n_tok * (ith + 1) / nth;
    for (int i = 0; i < j->n && t0 < t1; i++) {
        size_t rb = dn_act_row_bytes(j->k, j->wtype[i], j->cols);
        dn_prepare_acts(j->k, j->wtype[i], j->X + t0 * j->cols, t1 - t0, j->cols, (uint8_t *)j->dst[i] + (size_t)t0 * rb);
    }
}

/* Y_i[t][r] = W_i[r] . X[t] for up to three matrices sharing the input X. */
static void matmul(const danu_model *m, dn_scratch *s, dn_pool *pool, int n_mats, const dn_matrix *const *W,
                   const float *X, int64_t n_tok, float *const *Y)
{
    mm_job j = { .k = m->kern, .n = n_mats, .n_tok = n_tok };
    prep_job p = { .k = m->kern, .cols = W[0]->cols, .X = X, .n_tok = n_tok };
    int32_t prepared[3] = { -1, -1, -1 };
    for (int i = 0; i < n_mats; i++) {
        j.W[i] = W[i];
        j.Y[i] = Y[i];
        int32_t at = m->kern->act_type[W[i]->type];
        int slot = 0;
        while (prepared[slot] != -1 && prepared[slot] != at) slot++;
        if (prepared[slot] == -1) {
            prepared[slot] = at;
            p.wtype[p.n] = W[i]->type;
            p.dst[p.n++] = s->act[slot];
        }
        j.Xq[i] = s->act[slot];
    }
    if (n_tok >= 8) dn_pool_run(pool, prep_task, &p);
    else prep_task(&p, 0, 1);
    dn_pool_run(pool, mm_task, &j);
}

/* Row-wise elementwise work of a batch (norms, SwiGLU), split over threads
 * for prompts; a single token stays on the calling thread. */
typedef struct ew_job {
    const danu_model *m;
    int op;                      /* 0: rmsnorm rows, 1: silu_mul rows */
    float *out;
    const float *in, *w;
    int64_t n, width;
} ew_job;

static void ew_task(void *arg, int ith, int nth)
{
    const ew_job *j = arg;
    const dn_kernels *k = j->m->kern;
    int64_t t0 = j->n * ith / nth, t1 = j->n * (ith + 1) / nth;
    for (int64_t t = t0; t < t1; t++) {
        if (j->op == 0) k->rmsnorm(j->out + t * j->width, j->in + t * j->width, j->w, j->width, j->m->cfg.rms_eps);
        else k->silu_mul(j->out + t * j->width, j->in + t * j->width, j->width);
    }
}

static void rows_op(const danu_model *m, dn_pool *pool, int op, float *out, const float *in, const float *w, int64_t n,
                    int64_t width)
{
    ew_job j = { m, op, out, in, w, n, width };
    if (n >= 8) dn_pool_run(pool, ew_task, &j);
    else ew_task(&j, 0, 1);
}

/* ---- RoPE --------------------------------------------------------------- */

/* Rotate each head of x (n_heads x head_dim) for position pos. HF layout
 * pairs (j, j + d/2); the llama.cpp GGUF layout pairs (2j, 2j + 1). The
 * angle is formed in double, as the float64 reference does. */
static void rope(float *x, int n_heads, int hd, int64_t pos, const float *inv_freq, int interleaved)
{
    int half = hd / 2;
    for (int j = 0; j < half; j++) {
        double ang = (double)pos * (double)inv_freq[j];
        float c = (float)cos(ang), sn = (float)sin(ang);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * hd;
            int i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
            float a = v[i0], b = v[i1];
            v[i0] = a * c - b * sn;
            v[i1] = a * sn + b * c;
        }
    }
}

/* ---- attention ------------------------------------------------------------ */

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

/* A run of positions whose K/V rows are consecutive in memory. */
typedef struct kv_run { int64_t p; int n; const uint8_t *k, *v; } kv_run;

/* Positions lo..hi as at most 3 runs: the ring (split where it wraps),
 * then this batch's staging rows (positions >= pos0). off: the KV head. */
static int kv_runs(const dn_kvcache *kv, int layer, int64_t lo, int64_t hi, int64_t pos0, size_t off, kv_run r[3])
{
    int nr = 0;
    int64_t p = lo;
    while (p <= hi && p < pos0) {
        const int64_t end = hi < pos0 - 1 ? hi : pos0 - 1, to_wrap = kv->cap - p % kv->cap;
        const int64_t len = end - p + 1 < to_wrap ? end - p + 1 : to_wrap;
        r[nr++] = (kv_run){ p, (int)len, dn_kv_k(kv, layer, p) + off, dn_kv_v(kv, layer, p) + off };
        p += len;
    }
    if (p <= hi)
        r[nr++] = (kv_run){ p, (int)(hi - p + 1), dn_kv_sk(kv, layer, (int)(p - pos0)) + off,
                            dn_kv_sv(kv, layer, (int)(p - pos0)) + off };
    return nr;
}

/* Fallbacks for tables without attention slots: a dot / axpy per pair. */
static void scores_pairs(const dn_kernels *k, int hd, int nq, const float *q, const uint8_t *kr, size_t ks, int nk,
                         int f16, float *s, size_t ss)
{
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nk; j++) {
            const void *row = kr + (size_t)j * ks;
            s[(size_t)i * ss + j] = f16 ? k->dot_f16(hd, row, q + (size_t)i * hd) : k->dot_f32(hd, row, q + (size_t)i * hd);
        }
}

static void values_pairs(const dn_kernels *k, int hd, int nq, const float *p, size_t ps, const uint8_t *vr, size_t vs,
                         int nk, int f16, float *out)
{
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nk; j++) {
            const void *row = vr + (size_t)j * vs;
            if (f16) k->axpy_f16(hd, p[(size_t)i * ps + j], row, out + (size_t)i * hd);
            else k->axpy_f32(hd, p[(size_t)i * ps + j], row, out + (size_t)i * hd);
        }
}

/* First position a query at pos attends to (sliding window, if any). */
static int64_t window_start(const dn_config *c, int64_t pos)
{
    return c->window > 0 && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0;
}

/* Heads h0..h0+nh-1 of KV head g for tokens t0..t0+tn-1 (nh * tn <= ATT_ROWS). */
static void att_item(const att_job *j, float *buf, int g, int h0, int nh, int t0, int tn)
{
    const dn_config *c = &j->m->cfg;
    const dn_kernels *k = j->m->kern;
    const dn_kvcache *kv = j->kv;
    const int hd = c->head_dim, qd = c->n_heads * hd, f16 = kv->type == DANU_KV_F16, nq = nh * tn;
    const size_t ss = (size_t)j->s->score_len, stride = (size_t)c->n_kv_heads * hd * kv->elem;
    const float scale = 1.0f / sqrtf((float)hd);
    float *qb = buf, *ob = qb + ATT_ROWS * hd, *tmp = ob + ATT_ROWS * hd, *sc = tmp + 16 * hd;
    for (int r = 0; r < nq; r++)   /* row r: token t0 + r / nh, head h0 + r % nh */
        memcpy(qb + (size_t)r * hd, j->s->q + (size_t)(t0 + r / nh) * qd + (size_t)(h0 + r % nh) * hd, sizeof(float) * hd);
    const int64_t first = j->pos0 + t0, last = first + tn - 1;
    const int64_t lo = window_start(c, first);
    const int nk = (int)(last - lo + 1);
    kv_run runs[3];
    const int nr = kv_runs(kv, j->layer, lo, last, j->pos0, (size_t)g * hd * kv->elem, runs);
    for (int i = 0; i < nr; i++) {
        float *s = sc + (runs[i].p - lo);
        if (k->att_scores) k->att_scores(hd, nq, qb, hd, runs[i].k, stride, runs[i].n, f16, s, ss, tmp);
        else scores_pairs(k, hd, nq, qb, runs[i].k, stride, runs[i].n, f16, s, ss);
    }
    for (int r = 0; r < nq; r++) {   /* this row's own keys: causal, inside its window */
        const int64_t pos = first + r / nh;
        const int64_t own = window_start(c, pos);
        float *row = sc + (size_t)r * ss;
        const int a = (int)(own - lo), b = (int)(pos - lo + 1);
        for (int x = a; x < b; x++) row[x] *= scale;
        k->softmax(row + a, b - a);
        memset(row, 0, sizeof(float) * (size_t)a);
        memset(row + b, 0, sizeof(float) * (size_t)(nk - b));
    }
    memset(ob, 0, sizeof(float) * (size_t)nq * hd);
    for (int i = 0; i < nr; i++) {
        const float *p = sc + (runs[i].p - lo);
        if (k->att_values) k->att_values(hd, nq, p, ss, runs[i].v, stride, runs[i].n, f16, ob, hd);
        else values_pairs(k, hd, nq, p, ss, runs[i].v, stride, runs[i].n, f16, ob);
    }
    for (int r = 0; r < nq; r++)
        memcpy(j->s->xb + (size_t)(t0 + r / nh) * qd + (size_t)(h0 + r % nh) * hd, ob + (size_t)r * hd, sizeof(float) * hd);
}

/* Items in token-tile-major order, dealt round-robin: later tiles attend to
 * more keys, so neighbours cost about the same. */
static void att_task(void *arg, int ith, int nth)
{
    const att_job *j = arg;
    const dn_config *c = &j->m->cfg;
    const int group = c->n_heads / c->n_kv_heads, nh = group < ATT_ROWS ? group : ATT_ROWS;
    const int subs = (group + nh - 1) / nh, tn = ATT_ROWS / nh, tiles = (j->n + tn - 1) / tn;
    const int per_tile = c->n_kv_heads * subs;
    float *buf = j->s->scores + (size_t)ith * j->s->att_floats;
    for (int w = ith; w < tiles * per_tile; w += nth) {
        const int tile = w / per_tile, g = w % per_tile / subs, sub = w % subs;
        const int h0 = g * group + sub * nh, heads = group - sub * nh < nh ? group - sub * nh : nh;
        const int t0 = tile * tn, tokens = j->n - t0 < tn ? j->n - t0 : tn;
        att_item(j, buf, g, h0, heads, t0, tokens);
    }
}

/* ---- the forward pass -------------------------------------------------------- */

static danu_status forward(const danu_model *m, dn_kvcache *kv, dn_scratch *s, dn_pool *pool, const danu_token *tokens,
                           int n, int64_t pos0, float *logits, int all_rows, atomic_int *abort)
{
    const dn_config *c = &m->cfg;
    const dn_kernels *k = m->kern;
    int H = c->hidden, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;

    for (int t = 0; t < n; t++) /* x[t] = embedding row (any storage type) */
        dn_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (uint64_t)tokens[t] * m->tok_embd.row_bytes,
                          s->x + (size_t)t * H, H);

    for (int l = 0; l < c->n_layers; l++) {
        if (abort && atomic_load_explicit(abort, memory_order_relaxed))
            return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted at layer %d", l);
        const dn_layer *L = &m->layers[l];
        /* attention block */
        rows_op(m, pool, 0, s->xb, s->x, L->attn_norm, n, H);
        const dn_matrix *qkv[3] = { &L->wq, &L->wk, &L->wv };
        float *qkv_out[3] = { s->q, s->k, s->v };
        matmul(m, s, pool, 3, qkv, s->xb, n, qkv_out);
        for (int t = 0; t < n; t++) {
            rope(s->q + (size_t)t * qd, c->n_heads, hd, pos0 + t, s->inv_freq, c->rope_interleaved);
            rope(s->k + (size_t)t * kvd, c->n_kv_heads, hd, pos0 + t, s->inv_freq, c->rope_interleaved);
            dn_kv_store(kv, dn_kv_sk(kv, l, t), s->k + (size_t)t * kvd);
            dn_kv_store(kv, dn_kv_sv(kv, l, t), s->v + (size_t)t * kvd);
        }
        att_job aj = { m, kv, s, l, n, pos0 };
        dn_pool_run(pool, att_task, &aj);          /* writes s->xb [n][qd] */
        const dn_matrix *wo[1] = { &L->wo };
        float *o_out[1] = { s->q };               /* q is free again: reuse it for Wo's output */
        matmul(m, s, pool, 1, wo, s->xb, n, o_out);
        for (int t = 0; t < n; t++) k->add(s->x + (size_t)t * H, s->q + (size_t)t * H, H);

        /* feed-forward block */
        rows_op(m, pool, 0, s->xb, s->x, L->ffn_norm, n, H);
        const dn_matrix *gu[2] = { &L->w_gate, &L->w_up };
        float *gu_out[2] = { s->hb, s->hb2 };
        matmul(m, s, pool, 2, gu, s->xb, n, gu_out);
        rows_op(m, pool, 1, s->hb, s->hb2, NULL, n, c->ffn);
        const dn_matrix *dn[1] = { &L->w_down };
        float *d_out[1] = { s->xb };
        matmul(m, s, pool, 1, dn, s->hb, n, d_out);
        for (int t = 0; t < n; t++) k->add(s->x + (size_t)t * H, s->xb + (size_t)t * H, H);
    }
    if (abort && atomic_load_explicit(abort, memory_order_relaxed))
        return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted before the output layer");
    dn_kv_commit(kv, pos0, n);

    if (logits) {
        int first = all_rows ? 0 : n - 1, rows = n - first;
        for (int t = first; t < n; t++)
            k->rmsnorm(s->xb + (size_t)(t - first) * H, s->x + (size_t)t * H, m->out_norm, H, c->rms_eps);
        const dn_matrix *out[1] = { &m->output };
        float *lo[1] = { logits };
        matmul(m, s, pool, 1, out, s->xb, rows, lo);
    }
    return DANU_OK;
}

/* The workers stay awake for the whole pass: it is ~120 jobs per token with
 * short serial gaps (norms, RoPE) that a sleeping worker would miss. */
danu_status dn_forward(const danu_model *m, dn_kvcache *kv, dn_scratch *s, dn_pool *pool, const danu_token *tokens,
                       int n, int64_t pos0, float *logits, int all_rows, atomic_int *abort)
{
    dn_pool_hold(pool, 1);
    danu_status st = forward(m, kv, s, pool, tokens, n, pos0, logits, all_rows, abort);
    dn_pool_hold(pool, 0);
    return st;
}
