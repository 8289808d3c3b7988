/* forward.c - the Mistral/Llama decoder, read top to bottom:
 *   x = embed(tokens)
 *   per layer: x += Wo . attn(rope(Wq.rms(x)), rope(Wk.rms(x)), Wv.rms(x))
 *              x += Wdown . (silu(Wgate.rms(x)) * Wup.rms(x))
 *   logits = Wout . rms(x)
 * Shapes: n tokens in the batch, H = hidden, qd = heads * hd, kvd = kv_heads
 * * hd (hd = head_dim), F = ffn; every buffer is row-major, a row per token.
 * Matrix products, norms and SwiGLU go through the kernel table, which
 * splits them over the team's pool (kernels/matmul.c, kernels/rows.c);
 * RoPE, the K/V cache rows and attention live in attention.c. A pass runs
 * as units (the layers, then the output layer in parts) so that sliced
 * work can stop between any two of them, and may carry several sequences
 * (contexts) at once: their rows share every matrix product, and each
 * attends to its own cache. */
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

/* Sequence i's rows start at row off (the pass's rows are its sequences'
 * tokens one after another): the scratch as attention, RoPE and staging
 * see it for that sequence alone. */
static dn_scratch seq_view(const dn_scratch *s, const dn_config *c, int off)
{
    dn_scratch v = *s;
    const size_t qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    v.q += off * qd;
    v.xb += off * qd;
    v.k += off * kvd;
    v.v += off * kvd;
    v.rope += (size_t)off * c->head_dim;
    return v;
}

static void embed(const danu_model *m, dn_scratch *s, const dn_team *team, const dn_pass *p)
{
    const int H = m->cfg.hidden;
    for (int i = 0, off = 0; i < p->n_seq; off += p->seq[i++].n) {
        const dn_seq *q = &p->seq[i];
        for (int t = 0; t < q->n; t++)   /* x [n][H] = embedding rows (any storage type) */
            dn_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data +
                              (uint64_t)q->tokens[t] * m->tok_embd.row_bytes, s->x + (size_t)(off + t) * H, H);
        dn_scratch v = seq_view(s, &m->cfg, off);
        dn_rope_table(m, &v, team, q->n, q->pos0);   /* rope [n][hd]: cos | sin of each position's angles */
    }
}

static danu_status layer(const danu_model *m, dn_scratch *s, const dn_team *team, int l, const dn_pass *p)
{
    const dn_config *c = &m->cfg;
    const dn_kernels *k = m->kern;
    const dn_layer *L = &m->layers[l];
    const int H = c->hidden, F = c->ffn, n = p->n;
    const float eps = c->rms_eps;
    /* attention block */
    dn_rmsnorm_rows(k, team, s->xb, s->x, L->attn_norm, n, H, eps);              /* xb [n][H] */
    DN_TRY(dn_matmul(k, team, 3, (const dn_matrix *[]){ &L->wq, &L->wk, &L->wv }, s->xb, n,
                     (float *[]){ s->q, s->k, s->v }, s->act));                   /* q [n][qd], k, v [n][kvd] */
    for (int i = 0, off = 0; i < p->n_seq; off += p->seq[i++].n) {   /* each sequence on its own cache */
        const dn_seq *q = &p->seq[i];
        dn_scratch v = seq_view(s, c, off);
        dn_rope_stage(m, q->kv, &v, team, l, q->n);          /* q, k rotated; k, v -> the cache's staging rows */
        dn_attention(m, q->kv, &v, team, l, q->n, q->pos0);  /* xb [n][qd] = softmax(q.K / sqrt(hd)) . V */
    }
    DN_TRY(dn_matmul(k, team, 1, &(const dn_matrix *){ &L->wo }, s->xb, n, &s->q, s->act));   /* q [n][H] */
    k->add(s->x, s->q, (int64_t)n * H);                                           /* x += Wo . attn */

    /* feed-forward block */
    dn_rmsnorm_rows(k, team, s->xb, s->x, L->ffn_norm, n, H, eps);               /* xb [n][H] */
    DN_TRY(dn_matmul(k, team, 2, (const dn_matrix *[]){ &L->w_gate, &L->w_up }, s->xb, n,
                     (float *[]){ s->hb, s->hb2 }, s->act));                      /* hb, hb2 [n][F] */
    dn_swiglu_rows(k, team, s->hb, s->hb2, n, F);                                 /* hb = silu(hb) * hb2 */
    DN_TRY(dn_matmul(k, team, 1, &(const dn_matrix *){ &L->w_down }, s->hb, n, &s->xb, s->act)); /* xb [n][H] */
    k->add(s->x, s->xb, (int64_t)n * H);                                          /* x += Wdown . hb */
    return DANU_OK;
}

/* Output rows [r0, r1) of the logits: one sequence's last row (or every
 * row) straight into its buffer, normed with the first part and kept in
 * xb; several sequences' last rows gathered into p->out, then copied out. */
static danu_status classify(const danu_model *m, dn_scratch *s, const dn_team *team, const dn_pass *p, int64_t r0,
                            int64_t r1)
{
    const int H = m->cfg.hidden;
    const float eps = m->cfg.rms_eps;
    if (p->n_seq == 1) {
        const int first = p->all_rows ? 0 : p->n - 1, rows = p->n - first;
        if (r0 == 0) dn_rmsnorm_rows(m->kern, team, s->xb, s->x + (size_t)first * H, m->out_norm, rows, H, eps);
        dn_matrix part = m->output;   /* rows r0.. (a multiple of 16: x16 groups stay whole) */
        part.data = (const uint8_t *)m->output.data + (size_t)r0 * m->output.row_bytes;
        part.rows = r1 - r0;
        float *y = p->seq[0].logits + r0;
        return dn_matmul(m->kern, team, 1, &(const dn_matrix *){ &part }, s->xb, rows, &y, s->act);
    }
    int rows = 0;
    for (int i = 0, off = 0; i < p->n_seq; off += p->seq[i++].n)
        if (p->seq[i].logits)
            dn_rmsnorm_rows(m->kern, team, s->xb + (size_t)rows++ * H, s->x + (size_t)(off + p->seq[i].n - 1) * H,
                            m->out_norm, 1, H, eps);
    float *y = p->out;
    DN_TRY(dn_matmul(m->kern, team, 1, &(const dn_matrix *){ &m->output }, s->xb, rows, &y, s->act));
    rows = 0;
    for (int i = 0; i < p->n_seq; i++)
        if (p->seq[i].logits) {
            if (!p->seq[i].aborted)
                memcpy(p->seq[i].logits, p->out + (size_t)rows * m->cfg.vocab, sizeof(float) * m->cfg.vocab);
            rows++;
        }
    return DANU_OK;
}

/* The output layer in parts of about one layer's weight bytes, so that a
 * slice of work overruns its budget by at most about one layer. Every row's
 * logits at once (one product: rows are vocab apart) or several sequences'
 * stay one part. */
static int out_parts(const danu_model *m, const dn_pass *p)
{
    int wanted = 0;
    for (int i = 0; i < p->n_seq; i++) wanted += p->seq[i].logits != NULL;
    if (!wanted) return 0;
    if (p->n_seq > 1 || (p->all_rows && p->n > 1)) return 1;
    const dn_layer *L = &m->layers[0];
    const dn_matrix *w[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
    uint64_t layer_bytes = 0;
    for (int i = 0; i < 7; i++) layer_bytes += (uint64_t)w[i]->rows * w[i]->row_bytes;
    const uint64_t out = (uint64_t)m->output.rows * m->output.row_bytes, groups = (uint64_t)(m->output.rows + 15) / 16;
    uint64_t parts = layer_bytes ? (out + layer_bytes - 1) / layer_bytes : 1;
    return (int)(parts < 1 ? 1 : parts > groups ? groups : parts);
}

void dn_pass_begin(dn_pass *p, const danu_model *m, dn_seq *seq, int n_seq, int all_rows, float *out)
{
    *p = (dn_pass){ .seq = seq, .n_seq = n_seq, .all_rows = all_rows, .out = out };
    for (int i = 0; i < n_seq; i++) {
        seq[i].aborted = 0;
        p->n += seq[i].n;
    }
    p->n_units = m->cfg.n_layers + out_parts(m, p);
}

/* Mark the sequences whose abort flag is up; ABORTED once none is left. */
static danu_status check_aborts(dn_pass *p, int unit, int n_layers)
{
    int left = 0;
    for (int i = 0; i < p->n_seq; i++) {
        dn_seq *q = &p->seq[i];
        if (!q->aborted && q->abort && atomic_load_explicit(q->abort, memory_order_relaxed)) q->aborted = 1;
        left += !q->aborted;
    }
    if (left) return DANU_OK;
    if (unit < n_layers) return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted at layer %d", unit);
    return dn_seterr(DANU_ERR_ABORTED, "evaluation aborted before the output layer");
}

/* Unit u < n_layers is decoder layer u (layer 0 embeds first); the rest
 * are parts of the output layer. The last unit commits each sequence's K/V
 * (an aborted sequence's are dropped, its logits buffer is then partly
 * written: callers give the pass a spare one). */
danu_status dn_pass_step(const danu_model *m, dn_scratch *s, const dn_team *team, dn_pass *p)
{
    const int L = m->cfg.n_layers, u = p->unit;
    if (u >= p->n_units) return DANU_OK;
    DN_TRY(check_aborts(p, u, L));
    if (u == 0) embed(m, s, team, p);
    if (u < L) {
        DN_TRY(layer(m, s, team, u, p));
    } else {
        const int parts = p->n_units - L, i = u - L;
        const int64_t groups = (m->output.rows + 15) / 16;
        const int64_t r0 = groups * i / parts * 16, r1 = i + 1 == parts ? m->output.rows : groups * (i + 1) / parts * 16;
        DN_TRY(classify(m, s, team, p, r0, r1));
    }
    if (++p->unit == p->n_units)
        for (int i = 0; i < p->n_seq; i++)
            if (!p->seq[i].aborted) dn_kv_commit(p->seq[i].kv, p->seq[i].pos0, p->seq[i].n);
    return DANU_OK;
}
