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

danu_status dn_scratch_init(dn_scratch *s, const dn_alloc *a, const danu_model *m, int32_t n_batch,
                            int32_t n_threads, int32_t cap)
{
    memset(s, 0, sizeof *s);
    const dn_config *c = &m->cfg;
    s->a = a;
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    size_t nb = (size_t)n_batch, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->hidden ? qd : (size_t)c->hidden;
    s->score_len = cap + n_batch;
    s->x = dn_malloc_aligned(a, nb * c->hidden * sizeof(float));
    s->xb = dn_malloc_aligned(a, nb * wide * sizeof(float));
    s->q = dn_malloc_aligned(a, nb * wide * sizeof(float));   /* also holds Wo's [n][hidden] output */
    s->k = dn_malloc_aligned(a, nb * kvd * sizeof(float));
    s->v = dn_malloc_aligned(a, nb * kvd * sizeof(float));
    s->hb = dn_malloc_aligned(a, nb * c->ffn * sizeof(float));
    s->hb2 = dn_malloc_aligned(a, nb * c->ffn * sizeof(float));
    s->scores = dn_malloc_aligned(a, (size_t)n_threads * (size_t)s->score_len * sizeof(float));
    s->inv_freq = dn_malloc_aligned(a, (size_t)c->head_dim / 2 * sizeof(float));
    /* the widest input of any product: ffn (down), heads*hd (o), hidden */
    size_t widest = (size_t)c->ffn > wide ? (size_t)c->ffn : wide, most = 0;
    for (int32_t t = 0; t < DN_TYPE_COUNT; t++)
        if (dn_type_is_weight(t) || dn_x16_base(t) >= 0) {   /* x16: repacked matrices */
            size_t b = dn_act_row_bytes(m->kern, t, (int64_t)widest);
            if (b > most) most = b;
        }
    s->act_bytes = most * nb;
    for (int i = 0; i < 3; i++) s->act[i] = dn_malloc_aligned(a, s->act_bytes);
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->hb || !s->hb2 || !s->scores || !s->inv_freq || !s->act[0] ||
        !s->act[1] || !s->act[2]) {
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
    const dn_config *c = &m->cfg;
    size_t nb = (size_t)s->n_batch, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->hidden ? qd : (size_t)c->hidden;
    return sizeof(float) * (nb * (c->hidden + 2 * wide + 2 * kvd + 2 * (size_t)c->ffn) +
                            (size_t)s->n_threads * s->score_len + c->head_dim / 2) + 3 * s->act_bytes;
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

typedef struct att_job {
    const danu_model *m;
    const dn_kvcache *kv;
    dn_scratch *s;
    int layer, n;
    int64_t pos0;
} att_job;

static void att_task(void *arg, int ith, int nth)
{
    const att_job *j = arg;
    const dn_config *c = &j->m->cfg;
    const dn_kernels *k = j->m->kern;
    const dn_kvcache *kv = j->kv;
    int hd = c->head_dim, group = c->n_heads / c->n_kv_heads, kvd = c->n_kv_heads * hd;
    int qd = c->n_heads * hd, f16 = kv->type == DANU_KV_F16;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = j->s->scores + (size_t)ith * j->s->score_len;
    int total = j->n * c->n_heads;
    for (int w = ith * total / nth; w < (ith + 1) * total / nth; w++) {
        int t = w / c->n_heads, h = w % c->n_heads, g = h / group;
        int64_t pos = j->pos0 + t;
        int64_t lo = c->window > 0 && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0;
        const float *q = j->s->q + (size_t)t * qd + (size_t)h * hd;
        float *out = j->s->xb + (size_t)t * qd + (size_t)h * hd;
        int len = (int)(pos - lo + 1);
        /* keys before the batch come from the ring, the batch's own from staging */
        for (int64_t p = lo; p <= pos; p++) {
            const uint8_t *kr = p < j->pos0 ? dn_kv_k(kv, j->layer, p) : dn_kv_sk(kv, j->layer, (int)(p - j->pos0));
            kr += (size_t)g * hd * kv->elem;
            float d = f16 ? k->dot_f16(hd, (const uint16_t *)(const void *)kr, q) : k->dot_f32(hd, (const float *)(const void *)kr, q);
            sc[p - lo] = d * scale;
        }
        k->softmax(sc, len);
        memset(out, 0, (size_t)hd * sizeof(float));
        for (int64_t p = lo; p <= pos; p++) {
            const uint8_t *vr = p < j->pos0 ? dn_kv_v(kv, j->layer, p) : dn_kv_sv(kv, j->layer, (int)(p - j->pos0));
            vr += (size_t)g * hd * kv->elem;
            if (f16) k->axpy_f16(hd, sc[p - lo], (const uint16_t *)(const void *)vr, out);
            else k->axpy_f32(hd, sc[p - lo], (const float *)(const void *)vr, out);
        }
    }
    (void)kvd;
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
