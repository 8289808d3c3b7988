/* quantize.c - `danu quantize`: an HF checkpoint (config.json,
 * tokenizer.model, safetensors) or a GGUF into a GGUF laid out as llama.cpp
 * writes it: convert_hf_to_gguf.py first (names, q/k row permutation, F32
 * norms, llama.* and tokenizer.ggml.* keys), then llama-quantize (tensors
 * sorted by layer then name, a type per tensor from its recipe, file_type
 * and quantization_version moved to the end of the metadata).
 *
 * The work streams tensor by tensor: source rows (bf16/f16/f32 or any
 * quantized type, read through the mapping) are converted to f32 one row
 * at a time per thread and quantized straight into the output tensor, which
 * is written and reused for the next one. Source pages already consumed are
 * dropped from the mapping, so resident memory stays near one output tensor.
 * Output goes to OUTPUT.tmp, renamed when complete. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/quantize.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "common/bytes.h"
#include "common/error.h"
#include "common/os.h"
#include "common/threadpool.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "format/spm.h"
#include "quant/quant.h"
#include "text/tokenizer.h"

/* llama_ftype numbers of the mixes (llama.h). */
enum { FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9, FT_Q4_K_S = 14,
       FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32 };

static const struct { const char *name; int32_t type; uint32_t ftype; } mixes[] = {
    { "f16", DANU_TYPE_F16, FT_F16 },       { "bf16", DANU_TYPE_BF16, FT_BF16 },
    { "q8_0", DANU_TYPE_Q8_0, FT_Q8_0 },    { "q4_0", DANU_TYPE_Q4_0, FT_Q4_0 },
    { "q4_1", DANU_TYPE_Q4_1, FT_Q4_1 },    { "q5_0", DANU_TYPE_Q5_0, FT_Q5_0 },
    { "q5_1", DANU_TYPE_Q5_1, FT_Q5_1 },    { "q4_k", DANU_TYPE_Q4_K, FT_Q4_K_S },
    { "q4_k_s", DANU_TYPE_Q4_K, FT_Q4_K_S }, { "q5_k", DANU_TYPE_Q5_K, FT_Q5_K_S },
    { "q5_k_s", DANU_TYPE_Q5_K, FT_Q5_K_S }, { "q6_k", DANU_TYPE_Q6_K, FT_Q6_K },
    { "q4_k_m", DANU_TYPE_Q4_K, FT_Q4_K_M }, { "q5_k_m", DANU_TYPE_Q5_K, FT_Q5_K_M },
};

int dn_quantize_type(const char *name, int32_t *type, uint32_t *ftype)
{
    for (size_t i = 0; name && i < sizeof mixes / sizeof mixes[0]; i++)
        if (!dn_ascii_ncasecmp(name, mixes[i].name, (size_t)-1)) {
            *type = mixes[i].type;
            *ftype = mixes[i].ftype;
            return 1;
        }
    return 0;
}

/* Elements converted per pool run: progress and cancellation granularity. */
#define CHUNK_ELEMS ((int64_t)1 << 23)

typedef struct qtensor {
    char name[96];               /* GGUF name */
    const dn_tensor_desc *src;
    const dn_mapping *map;       /* the mapping src's bytes live in */
    int32_t n_dims;
    int64_t dims[DN_MAX_DIMS];   /* outermost first */
    int64_t rows, cols;          /* rows = product of the outer dims */
    int64_t perm_heads;          /* HF q/k: rows permuted per head over this many heads; 0 none */
    int candidate;               /* llama-quantize would quantize it */
    int32_t type;                /* stored type */
    uint64_t nbytes;
} qtensor;

typedef struct job {
    const dn_alloc *a;
    const dn_quantize_request *rq;
    int32_t def_type;
    uint32_t ftype;
    int from_hf;
    int converter_layout;        /* HF -> bf16: the converter's own file */
    /* source */
    dn_hfdir hf;
    int hf_open;
    dn_mapping gmap;
    dn_gguf *g;
    dn_config cfg;
    danu_tokenizer *tok;
    /* plan */
    qtensor *t;
    int64_t n_t;
    dn_meta_list kv;
    /* HF vocabulary as the converter builds it */
    const char **pieces;
    size_t *lens;
    float *scores;
    int32_t *types;
    char **owned;                /* pieces we allocated (padding, added tokens) */
    char *name;                  /* general.name */
    char *tmp_path;
    /* work */
    dn_pool *pool;
    int nth;
    int64_t max_cols;
    float *rows_f32;             /* nth rows */
    uint8_t *out;
    size_t out_cap;
    const qtensor *cur;
    int64_t r0, r1;
    atomic_int bad;
    uint64_t total, done;        /* source elements, for progress */
} job;

/* ------------------------------------------------------------------ */
/* Errors, progress, pages                                             */
/* ------------------------------------------------------------------ */

/* Record status s as "where: what: <the lower layer's message>" (copied
 * first: it lives in the buffer dn_seterr writes to). */
static danu_status prefix_error(danu_status s, const char *where, const char *what)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", dn_lasterr());
    return dn_seterr(s, "%s: %s%s%s", where, what, *what ? ": " : "", msg);
}

static danu_status report(job *j)
{
    if (!j->rq->progress) return DANU_OK;
    float f = j->total ? (float)((double)j->done / (double)j->total) : 1.0f;
    if (f > 1.0f) f = 1.0f;
    if (j->rq->progress(j->rq->progress_user, f) != 0)
        return dn_seterr(DANU_ERR_CANCELLED, "%s: cancelled by the progress callback", j->rq->output);
    return DANU_OK;
}

/* Let the kernel drop the pages of a consumed source tensor: they stay in
 * the page cache but leave this process's resident set. Only for read-only
 * file mappings, where the pages come back from the file if touched. */
static void drop_pages(const dn_mapping *m, const uint8_t *p, uint64_t n)
{
    if (!m || !m->is_mmap || !n) return;
    const size_t ps = dn_page_size();
    uintptr_t mask = (uintptr_t)ps - 1, lo = (uintptr_t)m->data, hi = (lo + (uintptr_t)m->size + mask) & ~mask;
    uintptr_t b = (uintptr_t)p & ~mask, e = ((uintptr_t)p + (uintptr_t)n + mask) & ~mask;
    if (b < lo) b = lo;
    if (e > hi) e = hi;
    if (e > b) dn_mem_release((const void *)b, e - b);   /* already whole pages */
}

/* ------------------------------------------------------------------ */
/* Sources                                                             */
/* ------------------------------------------------------------------ */

static void set_shape(qtensor *q, const dn_tensor_desc *d)
{
    q->src = d;
    q->n_dims = d->n_dims;
    memcpy(q->dims, d->dims, sizeof q->dims);
    q->cols = d->dims[d->n_dims - 1];
    q->rows = 1;
    for (int32_t k = 0; k < d->n_dims - 1; k++) q->rows *= d->dims[k];
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Order of the converter: shards in name order, tensors by offset. */
static int cmp_file_order(const void *x, const void *y)
{
    const qtensor *a = x, *b = y;
    if (a->src->file_index != b->src->file_index) return a->src->file_index < b->src->file_index ? -1 : 1;
    return a->src->data < b->src->data ? -1 : a->src->data > b->src->data;
}

static danu_status plan_hf(job *j)
{
    const char *in = j->rq->input;
    DN_TRY(dn_hfdir_open(j->a, in, j->rq->use_mmap, &j->rq->log, NULL, NULL, &j->hf));
    j->hf_open = 1;
    DN_TRY(dn_config_from_hf(j->hf.config, in, &j->cfg));
    j->t = dn_calloc(j->a, (size_t)(j->hf.n_tensors ? j->hf.n_tensors : 1), sizeof *j->t);
    DN_CHECK(j->t, DANU_ERR_NOMEM, "%s: out of memory", in);
    int have_embd = 0;
    for (int64_t i = 0; i < j->hf.n_tensors; i++) {
        const dn_tensor_desc *d = &j->hf.tensors[i];
        if (ends_with(d->name, ".rotary_emb.inv_freq")) continue;   /* the converter skips these */
        qtensor *q = &j->t[j->n_t];
        int layer, which;
        DN_CHECK(dn_llama_gguf_name(d->name, q->name, sizeof q->name, &layer, &which), DANU_ERR_UNSUPPORTED,
                 "%s: tensor %s has no llama.cpp counterpart", in, d->name);
        DN_CHECK(layer < j->cfg.n_layers, DANU_ERR_FORMAT, "%s: tensor %s is beyond the %d layers of config.json", in,
                 d->name, j->cfg.n_layers);
        set_shape(q, d);
        q->map = &j->hf.shards[d->file_index];
        if (which == DN_LLAMA_ATTN_Q || which == DN_LLAMA_ATTN_K) {
            int64_t heads = which == DN_LLAMA_ATTN_Q ? j->cfg.n_heads : j->cfg.n_kv_heads;
            DN_CHECK(q->n_dims == 2 && q->rows % heads == 0 && (q->rows / heads) % 2 == 0, DANU_ERR_FORMAT,
                     "%s: %s has %lld rows, not an even number per head for %lld heads", in, d->name,
                     (long long)q->rows, (long long)heads);
            q->perm_heads = heads;
        }
        have_embd |= !strcmp(q->name, "token_embd.weight");
        j->n_t++;
    }
    DN_CHECK(have_embd, DANU_ERR_FORMAT, "%s: no model.embed_tokens.weight", in);
    qsort(j->t, (size_t)j->n_t, sizeof *j->t, cmp_file_order);
    return DANU_OK;
}

static danu_status plan_gguf(job *j)
{
    const char *in = j->rq->input;
    DN_TRY(dn_map_file(in, j->rq->use_mmap, j->a, &j->gmap));
    DN_TRY(dn_gguf_open(j->a, j->gmap.data, j->gmap.size, in, &j->g));
    DN_TRY(dn_config_from_gguf(j->g, in, &j->cfg));
    int64_t n = dn_gguf_n_tensors(j->g);
    j->t = dn_calloc(j->a, (size_t)(n ? n : 1), sizeof *j->t);
    DN_CHECK(j->t, DANU_ERR_NOMEM, "%s: out of memory", in);
    for (int64_t i = 0; i < n; i++) {
        const dn_tensor_desc *d = dn_gguf_tensor(j->g, i);
        qtensor *q = &j->t[j->n_t++];
        size_t len = strlen(d->name);
        DN_CHECK(len < sizeof q->name, DANU_ERR_UNSUPPORTED, "%s: tensor name %.64s... is too long", in, d->name);
        memcpy(q->name, d->name, len + 1);
        set_shape(q, d);
        q->map = &j->gmap;
    }
    DN_CHECK(dn_gguf_find_tensor(j->g, "token_embd.weight"), DANU_ERR_FORMAT, "%s: no token_embd.weight", in);
    return DANU_OK;
}

/* ------------------------------------------------------------------ */
/* llama-quantize's choices                                            */
/* ------------------------------------------------------------------ */

/* Which tensors llama-quantize quantizes (the rest are copied as they are). */
static int is_candidate(const qtensor *t)
{
    if (t->n_dims < 2 || !ends_with(t->name, "weight")) return 0;
    if (strstr(t->name, "_norm.weight") || strstr(t->name, "ffn_gate_inp.weight")) return 0;
    return strcmp(t->name, "position_embd.weight") != 0 && strcmp(t->name, "token_types.weight") != 0;
}

static int layer_of(const char *name)
{
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) l = -1;
    return l;
}

/* llama.cpp's weight order: by layer (non-layer tensors first), then name. */
static int cmp_weight_order(const void *x, const void *y)
{
    const qtensor *a = x, *b = y;
    int la = layer_of(a->name), lb = layer_of(b->name);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* The k-quant mixes give these layers more bits: the first and last eighth
 * and every third one in between. */
static int use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

typedef struct recipe_state {
    int has_output;
    int n_attn_v, i_attn_v, i_ffn_down, n_layer;
} recipe_state;

/* The type llama_tensor_get_type picks for a quantized mix, for the tensor
 * names of this architecture, then its fallback for rows that do not fill
 * whole blocks. */
static danu_status recipe_type(job *j, recipe_state *rs, const qtensor *t, int32_t *out)
{
    int32_t ty = j->def_type;
    uint32_t ft = j->ftype;
    const char *nm = t->name;
    if (!strcmp(nm, "output.weight") || (!rs->has_output && !strcmp(nm, "token_embd.weight"))) {
        /* the output matrix (or the embedding doubling as it) keeps 6 bits */
        if (t->cols % DN_QK_K != 0) ty = DANU_TYPE_Q8_0;
        else if (ty != DANU_TYPE_Q8_0) ty = DANU_TYPE_Q6_K;
    } else if (!strcmp(nm, "token_embd.weight")) {
        /* the mix's type */
    } else if (strstr(nm, "attn_v.weight")) {
        if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(rs->i_attn_v, rs->n_attn_v)) ty = DANU_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && rs->i_attn_v < 4) ty = DANU_TYPE_Q5_K;
        rs->i_attn_v++;
    } else if (strstr(nm, "ffn_down")) {
        int i = rs->i_ffn_down, n = rs->n_layer;
        if (ft == FT_Q4_K_M) {
            if (use_more_bits(i, n)) ty = DANU_TYPE_Q6_K;
        } else if (ft == FT_Q5_K_M && use_more_bits(i, n)) {
            ty = DANU_TYPE_Q6_K;
        } else if (ft == FT_Q4_K_S && i < n / 8) {
            ty = DANU_TYPE_Q5_K;
        }
        rs->i_ffn_down++;
    }
    const int32_t fb = dn_llama_fallback_type(ty, t->cols);
    if (fb != ty) {
        dn_log(&j->rq->log, DANU_LOG_WARN, "%s: rows of %lld values do not fit %s blocks: using %s", nm,
               (long long)t->cols, dn_type_get(ty)->name, dn_type_get(fb)->name);
        ty = fb;
    }
    *out = ty;
    return DANU_OK;
}

static danu_status choose_types(job *j)
{
    recipe_state rs;
    memset(&rs, 0, sizeof rs);
    rs.n_layer = j->cfg.n_layers;
    for (int64_t i = 0; i < j->n_t; i++) {
        j->t[i].candidate = is_candidate(&j->t[i]);
        if (!strcmp(j->t[i].name, "output.weight")) rs.has_output = 1;
        if (strstr(j->t[i].name, "attn_v.weight")) rs.n_attn_v++;
    }
    int quantized = dn_type_get(j->def_type)->is_quantized;
    for (int64_t i = 0; i < j->n_t; i++) {
        qtensor *t = &j->t[i];
        const dn_type_info *si = dn_type_get(t->src->type);
        DN_CHECK(si && dn_type_is_weight(t->src->type), DANU_ERR_UNSUPPORTED, "%s: %s has unsupported type %d",
                 j->rq->input, t->name, (int)t->src->type);
        if (!t->candidate) t->type = j->from_hf ? DANU_TYPE_F32 : t->src->type;   /* converter: norms in F32 */
        else if (quantized) DN_TRY(recipe_type(j, &rs, t, &t->type));
        else t->type = j->def_type;
        uint64_t rb = dn_type_row_bytes(t->type, (uint64_t)t->cols);
        DN_CHECK(rb && !dn_mul_overflow_u64(rb, (uint64_t)t->rows, &t->nbytes), DANU_ERR_UNSUPPORTED,
                 "%s: %s: rows of %lld values cannot be stored as %s", j->rq->input, t->name, (long long)t->cols,
                 dn_type_get(t->type)->name);
        if (t->cols > j->max_cols) j->max_cols = t->cols;
        j->total += t->src->n_elements;
    }
    return DANU_OK;
}

/* ------------------------------------------------------------------ */
/* Metadata                                                            */
/* ------------------------------------------------------------------ */

/* transformers' "special-looking" added tokens that the converter marks as
 * control tokens even without "special": true. */
static int looks_special(const char *s)
{
    size_t n = strlen(s);
    static const char *const exact[] = { "<pad>", "<mask>", "<2mass>", "[@BOS@]" };
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (!strcmp(s, exact[i])) return 1;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return 1;
    if (n >= 8 && !strncmp(s, "<\xef\xbd\x9c", 4) && !strcmp(s + n - 4, "\xef\xbd\x9c>")) return 1;
    return n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>';
}

static danu_status own_piece(job *j, int64_t id, char *text)
{
    if (!text) return dn_seterr(DANU_ERR_NOMEM, "%s: out of memory", j->rq->input);
    dn_free(j->a, j->owned[id]);
    j->owned[id] = text;
    j->pieces[id] = text;
    j->lens[id] = strlen(text);
    return DANU_OK;
}

/* tokens/scores/types as convert_hf_to_gguf.py builds them from
 * tokenizer.model, tokenizer_config.json's added_tokens_decoder and
 * [PADn] fillers up to config.json's vocab_size. */
static danu_status hf_vocab(job *j)
{
    const char *in = j->rq->input;
    DN_CHECK(j->hf.tokenizer_model_path, DANU_ERR_UNSUPPORTED,
             "%s: no tokenizer.model (the GGUF needs the SentencePiece vocabulary)", in);
    dn_mapping map;
    DN_TRY(dn_map_file(j->hf.tokenizer_model_path, 0, j->a, &map));
    danu_status s = dn_tokenizer_from_spm(j->a, map.data, (size_t)map.size, j->hf.tokenizer_model_path, &j->tok);
    dn_unmap_file(j->a, &map);
    DN_TRY(s);
    int64_t n = j->cfg.vocab, nt = dn_tokenizer_n_vocab(j->tok);
    j->pieces = dn_calloc(j->a, (size_t)n, sizeof *j->pieces);
    j->lens = dn_calloc(j->a, (size_t)n, sizeof *j->lens);
    j->scores = dn_calloc(j->a, (size_t)n, sizeof *j->scores);
    j->types = dn_calloc(j->a, (size_t)n, sizeof *j->types);
    j->owned = dn_calloc(j->a, (size_t)n, sizeof *j->owned);
    DN_CHECK(j->pieces && j->lens && j->scores && j->types && j->owned, DANU_ERR_NOMEM, "%s: out of memory", in);
    for (int64_t i = 0; i < n; i++) {
        if (i < nt) {
            j->pieces[i] = dn_tokenizer_piece(j->tok, (int32_t)i, &j->lens[i]);
            j->scores[i] = dn_tokenizer_score(j->tok, (int32_t)i);
            j->types[i] = dn_tokenizer_type(j->tok, (int32_t)i);
        } else {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%lld]", (long long)i);
            DN_TRY(own_piece(j, i, dn_strdup(j->a, pad)));
            j->scores[i] = -10000.0f;
            j->types[i] = DN_TOK_UNUSED;
        }
    }
    const dn_json *added = j->hf.tokenizer_config ? dn_json_get(j->hf.tokenizer_config, "added_tokens_decoder") : NULL;
    for (size_t k = 0; added && added->type == DN_JSON_OBJECT && k < added->n; k++) {
        const dn_json *e = &added->items[k];
        char *end;
        long long id = strtoll(added->keys[k], &end, 10);
        const char *content = dn_json_get_str(e, "content");
        if (*end || end == added->keys[k] || id < 0 || !content) continue;
        if (id >= n) {
            dn_log(&j->rq->log, DANU_LOG_WARN, "%s: added token %lld is beyond the vocabulary; ignored", in, id);
            continue;
        }
        int special = 0;
        dn_json_get_bool(e, "special", &special);
        if (special || looks_special(content)) {
            DN_TRY(own_piece(j, id, dn_strdup(j->a, content)));
            j->types[id] = DN_TOK_CONTROL;
        } else {
            /* user-defined tokens get real spaces for SentencePiece's U+2581 */
            size_t len = strlen(content), o = 0;
            char *t = dn_malloc(j->a, len + 1);
            for (size_t i = 0; t && i < len; i++) {
                if (i + 3 <= len && !memcmp(content + i, "\xe2\x96\x81", 3)) { t[o++] = ' '; i += 2; }
                else t[o++] = content[i];
            }
            if (t) t[o] = 0;
            DN_TRY(own_piece(j, id, t));
            j->types[id] = DN_TOK_USER_DEFINED;
        }
        j->scores[id] = -1000.0f;
    }
    return DANU_OK;
}

static const char *base_name(const char *path, size_t *len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    *len = n - b;
    return path + b;
}

static int32_t config_id(const dn_json *cfg, const char *key)
{
    int64_t v;
    return dn_json_get_int(cfg, key, &v) && v >= 0 && v <= INT32_MAX ? (int32_t)v : -1;
}

static danu_status hf_metadata(job *j)
{
    DN_TRY(hf_vocab(j));
    const dn_json *cj = j->hf.config, *tc = j->hf.tokenizer_config;
    dn_llama_meta m;
    memset(&m, 0, sizeof m);
    size_t nlen;
    const char *nm = base_name(j->rq->input, &nlen);
    j->name = dn_strndup(j->a, nm, nlen);
    DN_CHECK(j->name, DANU_ERR_NOMEM, "%s: out of memory", j->rq->input);
    m.name = j->name;
    m.name_len = nlen;
    const dn_config *c = &j->cfg;
    m.n_layers = c->n_layers;
    m.max_ctx = c->max_ctx;
    m.hidden = c->hidden;
    m.ffn = c->ffn;
    m.heads = c->n_heads;
    m.kv_heads = c->n_kv_heads;
    m.head_dim = c->head_dim;
    m.window = c->window;
    m.vocab = c->vocab;
    m.rope_theta = c->rope_theta;
    m.rms_eps = c->rms_eps;
    const dn_json *rt = dn_json_get(cj, "rope_theta"), *hd = dn_json_get(cj, "head_dim");
    m.has_rope_theta = (rt && rt->type != DN_JSON_NULL) || c->rope_theta != 10000.0f;
    m.has_head_dim = hd && hd->type != DN_JSON_NULL;
    m.file_type = j->ftype;
    m.pieces = j->pieces;
    m.lens = j->lens;
    m.scores = j->scores;
    m.types = j->types;
    m.bos = config_id(cj, "bos_token_id");
    if (m.bos < 0) m.bos = dn_tokenizer_bos(j->tok);
    m.eos = config_id(cj, "eos_token_id");
    if (m.eos < 0) m.eos = dn_tokenizer_eos(j->tok);
    m.unk = dn_tokenizer_unk(j->tok);
    m.pad = config_id(cj, "pad_token_id");
    int b;
    m.add_bos = tc && dn_json_get_bool(tc, "add_bos_token", &b) ? b : -1;
    m.add_eos = tc && dn_json_get_bool(tc, "add_eos_token", &b) ? b : -1;
    m.chat_template = tc ? dn_json_get_str(tc, "chat_template") : NULL;
    m.chat_template_len = m.chat_template ? strlen(m.chat_template) : 0;
    if (m.bos >= c->vocab) m.bos = -1;
    if (m.eos >= c->vocab) m.eos = -1;
    if (m.unk >= c->vocab) m.unk = -1;
    if (m.pad >= c->vocab) m.pad = -1;
    DN_TRY(dn_llama_converter_kv(&j->kv, &m));
    if (tc && dn_json_get_bool(tc, "add_prefix_space", &b)) {
        dn_meta kv = dn_meta_bool("tokenizer.ggml.add_space_prefix", b);
        DN_TRY(dn_meta_insert(&j->kv, dn_meta_find(&j->kv, "general.quantization_version"), &kv));
    }
    return DANU_OK;
}

static danu_status gguf_metadata(job *j)
{
    DN_TRY(dn_meta_from_gguf(&j->kv, j->g));
    dn_meta_remove(&j->kv, "split.no");
    dn_meta_remove(&j->kv, "split.count");
    dn_meta_remove(&j->kv, "split.tensors.count");
    dn_meta kv = dn_meta_u32("general.alignment", 32);
    if (dn_meta_find(&j->kv, "general.alignment") >= 0) {
        DN_TRY(dn_meta_put(&j->kv, &kv));
    } else {
        int64_t at = dn_meta_find(&j->kv, "general.name");
        if (at < 0) at = dn_meta_find(&j->kv, "general.architecture");
        DN_TRY(dn_meta_insert(&j->kv, at + 1, &kv));
    }
    if (dn_meta_find(&j->kv, "llama.attention.sliding_window") < 0 && dn_llama_is_danube(j->g, &j->cfg)) {
        kv = dn_meta_u32("llama.attention.sliding_window", 4096);
        int64_t at = dn_meta_find(&j->kv, "llama.attention.value_length");
        if (at < 0) at = dn_meta_find(&j->kv, "llama.attention.layer_norm_rms_epsilon");
        DN_TRY(dn_meta_insert(&j->kv, at < 0 ? j->kv.n : at + 1, &kv));
        dn_log(&j->rq->log, DANU_LOG_INFO, "%s: H2O-Danube file without a sliding-window key: writing 4096",
               j->rq->input);
    }
    return DANU_OK;
}

/* llama-quantize sets these two last, which moves them to the end. */
static danu_status quantizer_keys(job *j)
{
    dn_meta kv = dn_meta_u32("general.quantization_version", 2);
    DN_TRY(dn_meta_append(&j->kv, &kv));
    kv = dn_meta_u32("general.file_type", j->ftype);
    return dn_meta_append(&j->kv, &kv);
}

/* ------------------------------------------------------------------ */
/* Converting tensors                                                  */
/* ------------------------------------------------------------------ */

/* Rows [r0, r1) of the current tensor, split over the pool. */
static void convert_task(void *arg, int ith, int nth)
{
    job *j = arg;
    const qtensor *t = j->cur;
    int64_t n = j->r1 - j->r0, a = j->r0 + n * ith / nth, b = j->r0 + n * (ith + 1) / nth;
    float *f = j->rows_f32 + (size_t)ith * (size_t)j->max_cols;
    uint64_t srb = dn_type_row_bytes(t->src->type, (uint64_t)t->cols);
    uint64_t orb = dn_type_row_bytes(t->type, (uint64_t)t->cols);
    int64_t per_head = t->perm_heads ? t->rows / t->perm_heads : 0;
    for (int64_t r = a; r < b; r++) {
        int64_t sr = per_head ? dn_llama_permuted_row(r, per_head) : r;
        if (dn_dequantize_row(t->src->type, t->src->data + (uint64_t)sr * srb, f, t->cols) != 0 ||
            dn_quantize_row(t->type, f, j->out + (uint64_t)r * orb, t->cols) != 0) {
            atomic_store(&j->bad, 1);
            return;
        }
    }
}

static danu_status write_tensor(job *j, dn_gguf_writer *w, FILE *f, const qtensor *t)
{
    const void *bytes;
    if (t->type == t->src->type && !t->perm_heads) {
        bytes = t->src->data;   /* llama-quantize copies a tensor already in its type */
        j->done += t->src->n_elements;
        DN_TRY(report(j));
    } else {
        if (t->nbytes > j->out_cap) {
            DN_CHECK(t->nbytes <= SIZE_MAX, DANU_ERR_NOMEM, "%s: %s is too large", j->rq->output, t->name);
            dn_free(j->a, j->out);
            j->out = dn_malloc(j->a, (size_t)t->nbytes);
            j->out_cap = j->out ? (size_t)t->nbytes : 0;
            DN_CHECK(j->out, DANU_ERR_NOMEM, "%s: cannot allocate %llu bytes for %s", j->rq->output,
                     (unsigned long long)t->nbytes, t->name);
        }
        int64_t step = CHUNK_ELEMS / t->cols;
        if (step < 1) step = 1;
        j->cur = t;
        for (int64_t r = 0; r < t->rows; r += step) {
            j->r0 = r;
            j->r1 = t->rows - r < step ? t->rows : r + step;
            dn_pool_run(j->pool, convert_task, j);
            DN_CHECK(!atomic_load(&j->bad), DANU_ERR_INTERNAL, "%s: cannot convert %s from %s to %s", j->rq->output,
                     t->name, dn_type_get(t->src->type)->name, dn_type_get(t->type)->name);
            j->done += (uint64_t)(j->r1 - j->r0) * (uint64_t)t->cols;
            DN_TRY(report(j));
        }
        bytes = j->out;
    }
    danu_status s = dn_gguf_w_data(w, f, bytes, t->nbytes);
    if (s != DANU_OK) return prefix_error(DANU_ERR_IO, j->tmp_path, t->name);
    drop_pages(t->map, t->src->data, t->src->nbytes);
    return DANU_OK;
}

static danu_status write_file(job *j)
{
    dn_gguf_writer *w = NULL;
    DN_TRY(dn_gguf_writer_create(j->a, 32, &w));
    danu_status s = dn_meta_write(&j->kv, w, &j->rq->log);
    for (int64_t i = 0; s == DANU_OK && i < j->n_t; i++)
        s = dn_gguf_w_tensor(w, j->t[i].name, j->t[i].type, j->t[i].n_dims, j->t[i].dims);
    if (s != DANU_OK) {
        dn_gguf_writer_free(w);
        return prefix_error(s, j->rq->output, "header");
    }
    FILE *f = dn_fopen(j->tmp_path, "wbx");
    if (!f) {
        char why[256];
        snprintf(why, sizeof why, "%s", dn_os_error());
        dn_gguf_writer_free(w);
        return dn_seterr(DANU_ERR_IO, "%s: cannot create: %s", j->tmp_path, why);
    }
    s = dn_gguf_w_begin(w, f);
    if (s != DANU_OK) s = prefix_error(DANU_ERR_IO, j->tmp_path, "");
    for (int64_t i = 0; s == DANU_OK && i < j->n_t; i++) s = write_tensor(j, w, f, &j->t[i]);
    if (s == DANU_OK && dn_gguf_w_end(w, f) != DANU_OK) s = prefix_error(DANU_ERR_IO, j->tmp_path, "");
    if (fclose(f) != 0 && s == DANU_OK) s = dn_seterr(DANU_ERR_IO, "%s: write failed: %s", j->tmp_path, dn_os_error());
    dn_gguf_writer_free(w);
    if (s == DANU_OK) s = dn_publish(j->tmp_path, j->rq->output, 0);
    if (s != DANU_OK) dn_remove(j->tmp_path);
    return s;
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */
/* ------------------------------------------------------------------ */

static void job_free(job *j)
{
    const dn_alloc *a = j->a;
    dn_pool_free(j->pool);
    dn_free(a, j->rows_f32);
    dn_free(a, j->out);
    dn_meta_free(&j->kv);
    if (j->owned)
        for (int64_t i = 0; i < j->cfg.vocab; i++) dn_free(a, j->owned[i]);
    dn_free(a, j->owned);
    dn_free(a, j->pieces);
    dn_free(a, j->lens);
    dn_free(a, j->scores);
    dn_free(a, j->types);
    dn_free(a, j->name);
    dn_free(a, j->tmp_path);
    dn_free(a, j->t);
    dn_tokenizer_free(j->tok);
    if (j->hf_open) dn_hfdir_close(a, &j->hf);
    dn_gguf_close(j->g);
    dn_unmap_file(a, &j->gmap);
}

static danu_status run(job *j)
{
    const dn_quantize_request *rq = j->rq;
    DN_CHECK(!dn_path_exists(rq->output), DANU_ERR_INVALID_ARG, "%s: already exists; not overwriting it", rq->output);
    j->tmp_path = dn_tmp_path(j->a, rq->output);
    DN_CHECK(j->tmp_path, DANU_ERR_NOMEM, "%s: out of memory", rq->output);
    DN_CHECK(!dn_path_exists(j->tmp_path), DANU_ERR_IO, "%s: exists (left by an interrupted run?); remove it first",
             j->tmp_path);

    j->from_hf = dn_is_dir(rq->input);
    j->converter_layout = j->from_hf && j->def_type == DANU_TYPE_BF16;
    dn_meta_init(&j->kv, j->a);
    DN_TRY(j->from_hf ? plan_hf(j) : plan_gguf(j));
    if (!j->converter_layout) qsort(j->t, (size_t)j->n_t, sizeof *j->t, cmp_weight_order);
    DN_TRY(choose_types(j));
    DN_TRY(j->from_hf ? hf_metadata(j) : gguf_metadata(j));
    if (!j->converter_layout) DN_TRY(quantizer_keys(j));

    uint64_t need = 4u << 20;
    for (int64_t i = 0; i < j->n_t; i++) need += (j->t[i].nbytes + 31) / 32 * 32;
    need += (uint64_t)j->cfg.vocab * 64;
    DN_TRY(dn_check_free_space(j->a, rq->output, need));

    j->nth = rq->n_threads > 0 ? rq->n_threads : dn_cpu_count();
    if (j->nth > 256) j->nth = 256;
    DN_TRY(dn_pool_create(j->a, j->nth, &j->pool));
    size_t nf;
    DN_CHECK(!dn_mul_overflow_size((size_t)j->nth, (size_t)(j->max_cols ? j->max_cols : 1), &nf) &&
             (j->rows_f32 = dn_malloc(j->a, nf * sizeof(float))) != NULL, DANU_ERR_NOMEM, "%s: out of memory",
             rq->output);
    dn_log(&rq->log, DANU_LOG_INFO, "%s -> %s: %lld tensors, %s, %d threads", rq->input, rq->output,
           (long long)j->n_t, rq->type, j->nth);
    DN_TRY(report(j));
    return write_file(j);
}

danu_status dn_quantize(const dn_alloc *a, const dn_quantize_request *rq)
{
    if (!a || !rq || !rq->input || !rq->output || !rq->type || !rq->output[0])
        return dn_seterr(DANU_ERR_INVALID_ARG, "quantize: input, output and type are required");
    job j;
    memset(&j, 0, sizeof j);
    j.a = a;
    j.rq = rq;
    atomic_init(&j.bad, 0);
    if (!dn_quantize_type(rq->type, &j.def_type, &j.ftype))
        return dn_seterr(DANU_ERR_INVALID_ARG, "quantize: unknown type \"%s\" (f16, bf16, q8_0, q4_0, q4_1, q5_0, "
                         "q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m)", rq->type);
    danu_status s = run(&j);
    job_free(&j);
    return s;
}
