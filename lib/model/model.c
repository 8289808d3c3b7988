/* model.c - load a model from an HF directory or a GGUF file: open the
 * source, read the hyperparameters, bind every weight by name with its
 * shape checked, copy the small norm vectors to f32, load the tokenizer. */
#include <string.h>
#include <math.h>
#include <stdio.h>
#include "model/model.h"
#include "options.h"
#include "common/error.h"
#include "common/bytes.h"
#include "quant/quant.h"
#include "model/gguf_model.h"
#include "format/spm.h"
#include "format/gguf_vocab.h"

static const dn_tensor_desc *find(const danu_model *m, const char *name)
{
    return m->format == DANU_FORMAT_HF ? dn_hfdir_find(&m->hf, name) : dn_gguf_find_tensor(m->gguf, name);
}

static danu_status bind_matrix(danu_model *m, const char *name, int64_t rows, int64_t cols, dn_matrix *out)
{
    const dn_tensor_desc *t = find(m, name);
    DN_CHECK(t, DANU_ERR_FORMAT, "missing tensor %s", name);
    DN_CHECK(t->n_dims == 2 && t->dims[0] == rows && t->dims[1] == cols, DANU_ERR_FORMAT,
             "tensor %s has shape [%lld, %lld] (%d dims), expected [%lld, %lld]", name,
             (long long)(t->n_dims > 0 ? t->dims[0] : 0), (long long)(t->n_dims > 1 ? t->dims[1] : 0), t->n_dims,
             (long long)rows, (long long)cols);
    DN_CHECK(dn_type_is_weight(t->type), DANU_ERR_UNSUPPORTED, "tensor %s: type %d is not a supported weight type",
             name, t->type);
    uint64_t rb = dn_type_row_bytes(t->type, (uint64_t)cols);
    DN_CHECK(rb && rb * (uint64_t)rows == t->nbytes, DANU_ERR_FORMAT, "tensor %s: %llu bytes do not match its shape",
             name, (unsigned long long)t->nbytes);
    out->data = t->data;
    out->type = t->type;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = rb;
    m->weight_bytes += t->nbytes;
    return DANU_OK;
}

static danu_status bind_norm(danu_model *m, const char *name, int64_t n, float *dst)
{
    const dn_tensor_desc *t = find(m, name);
    DN_CHECK(t, DANU_ERR_FORMAT, "missing tensor %s", name);
    DN_CHECK(t->n_dims == 1 && t->dims[0] == n, DANU_ERR_FORMAT, "tensor %s: expected a vector of %lld", name, (long long)n);
    DN_CHECK(t->type == DANU_TYPE_F32 || t->type == DANU_TYPE_F16 || t->type == DANU_TYPE_BF16, DANU_ERR_UNSUPPORTED,
             "tensor %s: norm weights must be f32, f16 or bf16", name);
    DN_CHECK(dn_dequantize_row(t->type, t->data, dst, n) == 0, DANU_ERR_FORMAT, "tensor %s: cannot convert", name);
    for (int64_t i = 0; i < n; i++)
        DN_CHECK(isfinite(dst[i]), DANU_ERR_FORMAT, "tensor %s: element %lld is not finite", name, (long long)i);
    m->weight_bytes += t->nbytes;
    return DANU_OK;
}

/* Full-matrix NaN/Inf scan (optional: it reads every weight once). */
static danu_status scan_matrix(const dn_matrix *w, const char *name, float *row)
{
    for (int64_t r = 0; r < w->rows; r++) {
        dn_dequantize_row(w->type, (const uint8_t *)w->data + (uint64_t)r * w->row_bytes, row, w->cols);
        for (int64_t i = 0; i < w->cols; i++)
            DN_CHECK(isfinite(row[i]), DANU_ERR_FORMAT, "tensor %s: row %lld column %lld is not finite", name,
                     (long long)r, (long long)i);
    }
    return DANU_OK;
}

/* Full name of tensor `which` (DN_LLAMA_*) of layer l in the model's naming. */
static const char *tname(const danu_model *m, int which, int l, char *buf, size_t cap)
{
    return dn_llama_tensor_name(m->format, which, l, buf, cap) ? buf : "(name too long)";
}

static danu_status bind_all(danu_model *m, int validate)
{
    const dn_config *c = &m->cfg;
    int64_t H = c->hidden, Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    size_t n_norms = ((size_t)c->n_layers * 2 + 1) * (size_t)H;
    m->norms = dn_calloc(&m->alloc, n_norms, sizeof(float));
    m->layers = dn_calloc(&m->alloc, (size_t)c->n_layers, sizeof(dn_layer));
    DN_CHECK(m->norms && m->layers, DANU_ERR_NOMEM, "cannot allocate %zu norm floats", n_norms);
    char name[128];
    DN_TRY(bind_matrix(m, tname(m, DN_LLAMA_TOKEN_EMBD, 0, name, sizeof name), c->vocab, H, &m->tok_embd));
    float *nv = m->norms;
    for (int l = 0; l < c->n_layers; l++) {
        dn_layer *L = &m->layers[l];
        dn_matrix *mats[9] = { NULL, &L->wq, &L->wk, &L->wv, &L->wo, NULL, &L->w_gate, &L->w_up, &L->w_down };
        int64_t rows[9] = { 0, Q, KV, KV, H, 0, c->ffn, c->ffn, H };
        int64_t cols[9] = { 0, H, H, H, Q, 0, H, H, c->ffn };
        for (int k = 0; k < 9; k++) {
            tname(m, k, l, name, sizeof name);
            if (k == 0 || k == 5) {
                DN_TRY(bind_norm(m, name, H, nv));
                if (k == 0) L->attn_norm = nv; else L->ffn_norm = nv;
                nv += H;
            } else {
                DN_TRY(bind_matrix(m, name, rows[k], cols[k], mats[k]));
            }
        }
    }
    DN_TRY(bind_norm(m, tname(m, DN_LLAMA_OUTPUT_NORM, 0, name, sizeof name), H, nv));
    m->out_norm = nv;
    m->wq0_stored = m->layers[0].wq.data;   /* n_layers >= 1 (dn_config_check) */
    m->wq0_stored_bytes = m->layers[0].wq.row_bytes;
    if (c->tied) {
        m->output = m->tok_embd;
    } else {
        DN_TRY(bind_matrix(m, tname(m, DN_LLAMA_OUTPUT, 0, name, sizeof name), c->vocab, H, &m->output));
    }
    if (validate) {
        int64_t maxc = c->ffn > H ? c->ffn : H;
        if (Q > maxc) maxc = Q;
        float *row = dn_malloc(&m->alloc, (size_t)maxc * sizeof(float));
        DN_CHECK(row, DANU_ERR_NOMEM, "cannot allocate a validation row");
        danu_status s = scan_matrix(&m->tok_embd, tname(m, DN_LLAMA_TOKEN_EMBD, 0, name, sizeof name), row);
        for (int l = 0; s == DANU_OK && l < c->n_layers; l++) {
            const dn_layer *L = &m->layers[l];
            const dn_matrix *mats[7] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down };
            static const int k_of[7] = { 1, 2, 3, 4, 6, 7, 8 };
            for (int k = 0; s == DANU_OK && k < 7; k++) {
                s = scan_matrix(mats[k], tname(m, k_of[k], l, name, sizeof name), row);
            }
        }
        if (s == DANU_OK && !c->tied) s = scan_matrix(&m->output, tname(m, DN_LLAMA_OUTPUT, 0, name, sizeof name), row);
        dn_free(&m->alloc, row);
        DN_TRY(s);
    }
    return DANU_OK;
}

/* The source's own progress fills [0, hi]; a repack may follow. */
typedef struct progress_span { danu_progress_fn fn; void *user; float hi; } progress_span;

static int32_t span_cb(void *user, float f)
{
    const progress_span *s = user;
    return s->fn(s->user, s->hi * f);
}

static danu_status load_hf(danu_model *m, const char *path, const struct danu_options *o)
{
    progress_span span = { o->progress, o->progress_user, o->repack == DANU_REPACK_OFF ? 1.0f : 0.5f };
    DN_TRY(dn_hfdir_open(&m->alloc, path, o->use_mmap, &m->log, o->progress ? span_cb : NULL, &span, &m->hf));
    m->hf_open = 1;
    m->format = DANU_FORMAT_HF;
    m->tensors = m->hf.tensors;
    m->n_tensors = m->hf.n_tensors;
    DN_TRY(dn_config_from_hf(m->hf.config, path, &m->cfg));
    if (m->hf.tokenizer_model_path) {
        dn_mapping map;
        DN_TRY(dn_map_file(m->hf.tokenizer_model_path, 0, &m->alloc, &map));
        danu_status s = dn_tokenizer_from_spm(&m->alloc, map.data, (size_t)map.size, m->hf.tokenizer_model_path, &m->tok);
        dn_unmap_file(&m->alloc, &map);
        DN_TRY(s);
    } else {
        dn_log(&m->log, DANU_LOG_WARN, "%s: no tokenizer.model; only token ids can be used", path);
    }
    /* the matrices' common storage type stands for the file type */
    char qname[64];
    const dn_tensor_desc *q = dn_hfdir_find(&m->hf, tname(m, DN_LLAMA_ATTN_Q, 0, qname, sizeof qname));
    m->file_type = q ? q->type : DANU_TYPE_BF16;
    return bind_all(m, o->validate);
}

static danu_status load_gguf(danu_model *m, const char *path, const struct danu_options *o)
{
    if (o->progress && o->progress(o->progress_user, 0.0f)) return dn_seterr(DANU_ERR_CANCELLED, "load cancelled");
    DN_TRY(dn_map_file(path, o->use_mmap, &m->alloc, &m->gguf_map));
    DN_TRY(dn_gguf_open(&m->alloc, m->gguf_map.data, m->gguf_map.size, path, &m->gguf));
    m->format = DANU_FORMAT_GGUF;
    m->n_tensors = dn_gguf_n_tensors(m->gguf);
    m->tensors = m->n_tensors ? dn_gguf_tensor(m->gguf, 0) : NULL;
    DN_TRY(dn_config_from_gguf(m->gguf, path, &m->cfg));
    int64_t ft;
    m->file_type = dn_gguf_get_i64(m->gguf, "general.file_type", &ft) && ft >= 0 && ft < 1000 ? (int32_t)ft : -1;
    int32_t et;
    uint64_t cnt;
    if (dn_gguf_get_arr(m->gguf, "tokenizer.ggml.tokens", &et, &cnt)) {
        DN_TRY(dn_tokenizer_from_gguf(&m->alloc, m->gguf, &m->tok));
        DN_CHECK(dn_tokenizer_n_vocab(m->tok) <= m->cfg.vocab, DANU_ERR_FORMAT,
                 "%s: tokenizer has %d pieces but the model only %d rows", path, dn_tokenizer_n_vocab(m->tok), m->cfg.vocab);
    } else {
        dn_log(&m->log, DANU_LOG_WARN, "%s: no tokenizer.ggml.tokens; only token ids can be used", path);
    }
    if (m->cfg.window == 0 && o->sliding_window < 0 && dn_llama_is_danube(m->gguf, &m->cfg)) {
        m->cfg.window = 4096;
        dn_log(&m->log, DANU_LOG_INFO,
               "%s: H2O-Danube file without llama.attention.sliding_window: using its window of 4096 "
               "(override with DANU_OPT_SLIDING_WINDOW)", path);
    }
    /* 1.0 is reported by dn_model_load, after the optional repack */
    return bind_all(m, o->validate);
}

danu_status dn_model_load(const char *path, const struct danu_options *o, danu_model **out)
{
    *out = NULL;
    danu_model *m = dn_calloc(&o->alloc, 1, sizeof *m);
    if (!m) return dn_seterr(DANU_ERR_NOMEM, "cannot allocate the model");
    m->alloc = o->alloc;
    m->log = o->log;
    danu_status s = dn_is_dir(path) ? load_hf(m, path, o) : load_gguf(m, path, o);
    if (s == DANU_OK && o->sliding_window >= 0) m->cfg.window = o->sliding_window;
    if (s == DANU_OK && m->cfg.window >= m->cfg.max_ctx) m->cfg.window = 0; /* a window that never slides */
    if (s == DANU_OK && m->tok && dn_tokenizer_n_vocab(m->tok) > m->cfg.vocab)
        s = dn_seterr(DANU_ERR_FORMAT, "%s: tokenizer has %d pieces but the model only %d rows", path,
                      dn_tokenizer_n_vocab(m->tok), m->cfg.vocab);
    if (s == DANU_OK) {
        m->isa_cap = o->isa;
        m->kern = dn_kernels_get(o->isa);
        /* the model's pool: the caller's, or one of its own whose workers start when first needed */
        if (o->pool) m->pool = dn_pool_ref(o->pool);
        else {
            s = dn_pool_create(&m->alloc, dn_options_threads(o), &m->pool);
            m->pool_owned = s == DANU_OK;
        }
    }
    if (s == DANU_OK) {
        s = dn_model_repack(m, o, m->format == DANU_FORMAT_HF ? 0.5f : 0.05f);
    }
    /* 1.0 once the model is complete (an HF load without repack had it from its shards) */
    if (s == DANU_OK && (m->format == DANU_FORMAT_GGUF || o->repack != DANU_REPACK_OFF) && o->progress &&
        o->progress(o->progress_user, 1.0f))
        s = dn_seterr(DANU_ERR_CANCELLED, "load cancelled");
    if (s != DANU_OK) { dn_model_free(m); return s; }
    dn_log(&m->log, DANU_LOG_INFO, "%s: %d layers, hidden %d, vocab %d, window %d, kernels %s, fetch %s", path,
           m->cfg.n_layers, m->cfg.hidden, m->cfg.vocab, m->cfg.window, m->kern->name,
           m->kern->fetch == DN_FETCH_LINES ? "lines" : "page");
    *out = m;
    return DANU_OK;
}

/* Work created with o runs on o's pool, else the model's: n_threads lanes
 * of it, by default the cores (the model's own pool grows to that) or the
 * whole of a pool the caller made. */
static dn_pool *pool_for(const danu_model *m, const struct danu_options *o)
{
    return o->pool ? o->pool : m->pool;
}

static int grows(const danu_model *m, const dn_pool *p)
{
    return p == m->pool && m->pool_owned;
}

int32_t dn_model_lanes(const danu_model *m, const struct danu_options *o)
{
    const dn_pool *p = pool_for(m, o);
    const int32_t want = o->n_threads > 0 || grows(m, p) ? dn_options_threads(o) : dn_pool_size(p);
    return grows(m, p) || want <= dn_pool_size(p) ? want : dn_pool_size(p);
}

dn_team dn_model_team(danu_model *m, const struct danu_options *o, int32_t lanes, dn_adapt *adapt)
{
    dn_pool *p = dn_pool_ref(pool_for(m, o));
    if (grows(m, p)) dn_pool_grow(p, lanes);
    return (dn_team){ p, lanes, 0, adapt };
}

void dn_model_free(danu_model *m)
{
    if (!m) return;
    dn_alloc a = m->alloc;
    if (m->tok) dn_tokenizer_free(m->tok);
    if (m->hf_open) dn_hfdir_close(&a, &m->hf);
    if (m->gguf) dn_gguf_close(m->gguf);
    dn_unmap_file(&a, &m->gguf_map);
    dn_free_aligned(&a, m->repack_buf);
    dn_pool_free(m->pool);
    dn_free(&a, m->norms);
    dn_free(&a, m->layers);
    dn_free(&a, m);
}
