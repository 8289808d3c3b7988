/* forward.c - the Mistral/Llama decoder, read top to bottom:
 *   x = embed(tokens)
 *   per layer: x += Wo . attn(rope(Wq.rms(x)), rope(Wk.rms(x)), Wv.rms(x))
 *              x += Wdown . (silu(Wgate.rms(x)) * Wup.rms(x))
 *   logits = Wout . rms(x)
 * Shapes: n tokens in the batch, H = hidden, qd = heads * hd, kvd = kv_heads
 * * hd (hd = head_dim), F = ffn; every buffer is row-major, a row per token.
 * Matrix products, norms and SwiGLU go through the kernel table, which
 * splits them over the thread pool (kernels/matmul.c, kernels/rows.c);
 * RoPE, the K/V cache rows and attention live in attention.c. */
#include <math.h>
#include <string.h>
#include "model/forward.h"
#include "model/attention.h"
#include "common/error.h"

/* ---- scratch ---------------------------------------------------------- */

/* The scratch's blocks in one table, for dn_scratch_init and the byte
 * counts: sizes in bytes, each block allocated aligned. */
enum { SB_X, SB_XB, SB_Q, SB_K, SB_V, SB_HB, SB_HB2, SB_SCORES, SB_INV_FREQ, SB_ROPE, SB_ACT0, SB_ACT1, SB_ACT2,
       SB_COUNT };

static void scratch_sizes(const danu_model *m, int32_t n_batch, int32_t n_threads, int32_t cap, size_t sz[SB_COUNT])
{
    const dn_config *c = &m->cfg;
    size_t nb = (size_t)n_batch, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t wide = qd > (size_t)c->hidden ? qd : (size_t)c->hidden;
    /* the widest input of any product: ffn (down), heads*hd (o), hidden */
    size_t widest = (size_t)c->ffn > wide ? (size_t)c->ffn : wide, most = 0;
    for (int32_t t = 0; t < DN_TYPE_COUNT; t++)
        if (dn_type_is_weight(t) || dn_x16_base(t) >= 0) {   /* x16: repacked matrices */
            size_t b = dn_act_row_bytes(m->kern, t, (int64_t)widest);
            if (b > most) most = b;
        }
    sz[SB_X] = nb * c->hidden * sizeof(float);               /* [n][H] residual stream */
    sz[SB_XB] = sz[SB_Q] = nb * wide * sizeof(float);        /* [n][max(qd, H)]; q also holds Wo's output */
    sz[SB_K] = sz[SB_V] = nb * kvd * sizeof(float);          /* [n][kvd] */
    sz[SB_HB] = sz[SB_HB2] = nb * c->ffn * sizeof(float);    /* [n][F] gate, up */
    sz[SB_SCORES] = (size_t)n_threads * dn_attention_floats(c, cap + n_batch) * sizeof(float);
    sz[SB_INV_FREQ] = (size_t)c->head_dim / 2 * sizeof(float);
    sz[SB_ROPE] = nb * c->head_dim * sizeof(float);          /* [n][hd] cos/sin table */
    sz[SB_ACT0] = sz[SB_ACT1] = sz[SB_ACT2] = most * nb;     /* activations in the kernels' formats */
}

size_t dn_scratch_plan_bytes(const danu_model *m, int32_t n_batch, int32_t n_threads, int32_t cap)
{
    size_t sz[SB_COUNT], total = 0;
    scratch_sizes(m, n_batch, n_threads, cap, sz);
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
    s->att_floats = dn_attention_floats(c, s->score_len);
    size_t sz[SB_COUNT];
    scratch_sizes(m, n_batch, n_threads, cap, sz);
    float **f[SB_ACT0] = { &s->x, &s->xb, &s->q, &s->k, &s->v, &s->hb, &s->hb2, &s->scores, &s->inv_freq, &s->rope };
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
    float **f[] = { &s->x, &s->xb, &s->q, &s->k, &s->v, &s->hb, &s->hb2, &s->scores, &s->inv_freq, &s->rope };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) { dn_free_aligned(s->a, *f[i]); *f[i] = NULL; }
    for (int i = 0; i < 3; i++) { dn_free_aligned(s->a, s->act[i]); s->act[i] = NULL; }
}

size_t dn_scratch_bytes(const dn_scratch *s, const danu_model *m)
{
    return dn_scratch_plan_bytes(m, s->n_batch, s->n_threads, s->score_len - s->n_batch);
}

/* ---- the forward pass -------------------------------------------------------- */

static int aborted(atomic_int *abort)
{
    return abort && atomic_load_explicit(abort, memory_order_relaxed);
}

static danu_status forward(const danu_model *m, dn_kvcache *kv, dn_scratch *s, dn_pool *pool, const danu_token *tokens,
                           int n, int64_t pos0, float *logits, int all_rows, atomic_int *abort)
{
    const dn_config *c = &m->cfg;
    const dn_kernels *k = m->kern;
    const int H = c->hidden, F = c->ffn;
    const float eps = c->rms_eps;

    for (int t = 0; t < n; t++)   /* x [n][H] = embedding rows (any storage type) */
        dn_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (uint64_t)tokens[t] * m->tok_embd.row_bytes,
                          s->x + (size_t)t * H, H);
    dn_rope_table(m, s, pool, n, pos0);   /* rope [n][hd]: cos | sin of each position's angles */

    for (int l = 0; l < c->n_layers; l++) {
        if (aborted(abort)) return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted at layer %d", l);
        const dn_layer *L = &m->layers[l];
        /* attention block */
        dn_rmsnorm_rows(k, pool, s->xb, s->x, L->attn_norm, n, H, eps);              /* xb [n][H] */
        DN_TRY(dn_matmul(k, pool, 3, (const dn_matrix *[]){ &L->wq, &L->wk, &L->wv }, s->xb, n,
                         (float *[]){ s->q, s->k, s->v }, s->act));                   /* q [n][qd], k, v [n][kvd] */
        dn_rope_stage(m, kv, s, pool, l, n);          /* q, k rotated; k, v -> the cache's staging rows */
        dn_attention(m, kv, s, pool, l, n, pos0);     /* xb [n][qd] = softmax(q.K / sqrt(hd)) . V */
        DN_TRY(dn_matmul(k, pool, 1, &(const dn_matrix *){ &L->wo }, s->xb, n, &s->q, s->act));   /* q [n][H] */
        k->add(s->x, s->q, (int64_t)n * H);                                           /* x += Wo . attn */

        /* feed-forward block */
        dn_rmsnorm_rows(k, pool, s->xb, s->x, L->ffn_norm, n, H, eps);               /* xb [n][H] */
        DN_TRY(dn_matmul(k, pool, 2, (const dn_matrix *[]){ &L->w_gate, &L->w_up }, s->xb, n,
                         (float *[]){ s->hb, s->hb2 }, s->act));                      /* hb, hb2 [n][F] */
        dn_swiglu_rows(k, pool, s->hb, s->hb2, n, F);                                 /* hb = silu(hb) * hb2 */
        DN_TRY(dn_matmul(k, pool, 1, &(const dn_matrix *){ &L->w_down }, s->hb, n, &s->xb, s->act)); /* xb [n][H] */
        k->add(s->x, s->xb, (int64_t)n * H);                                          /* x += Wdown . hb */
    }
    if (aborted(abort)) return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted before the output layer");

    if (logits) {   /* the last row, or every row */
        const int first = all_rows ? 0 : n - 1, rows = n - first;
        dn_rmsnorm_rows(k, pool, s->xb, s->x + (size_t)first * H, m->out_norm, rows, H, eps);  /* xb [rows][H] */
        DN_TRY(dn_matmul(k, pool, 1, &(const dn_matrix *){ &m->output }, s->xb, rows, &logits,
                         s->act));                                                    /* logits [rows][vocab] */
    }
    dn_kv_commit(kv, pos0, n);
    return DANU_OK;
}

/* The workers stay awake for the whole pass: it is ~120 jobs per token with
 * short serial gaps that a sleeping worker would miss. */
danu_status dn_forward(const danu_model *m, dn_kvcache *kv, dn_scratch *s, dn_pool *pool, const danu_token *tokens,
                       int n, int64_t pos0, float *logits, int all_rows, atomic_int *abort)
{
    dn_pool_hold(pool, 1);
    danu_status st = forward(m, kv, s, pool, tokens, n, pos0, logits, all_rows, abort);
    dn_pool_hold(pool, 0);
    return st;
}
