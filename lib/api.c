/* api.c - the exported entry points: argument checks, error recording,
 * then a call into the module that does the work. */
#include <string.h>
#include <stdio.h>
#include "danu.h"
#include "options.h"
#include "common/error.h"
#include "common/os.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/quantize.h"
#include "gen/context.h"
#include "grammar/constraint.h"
#include "gen/batch.h"
#include "text/tokenizer.h"
#include "format/spm.h"
#include "quant/quant.h"

#define ARG(cond, what) do { if (!(cond)) return dn_seterr(DANU_ERR_INVALID_ARG, "%s: %s", __func__, what); } while (0)

/* ---- versions and errors ---- */

uint32_t danu_version_number(void) { return DANU_VERSION_NUMBER; }
const char *danu_version_string(void) { return DANU_VERSION_STRING; }

const char *danu_strerror(danu_status s)
{
    switch (s) {
    case DANU_OK: return "ok";
    case DANU_ERR_INVALID_ARG: return "invalid argument";
    case DANU_ERR_NOMEM: return "out of memory";
    case DANU_ERR_IO: return "input/output error";
    case DANU_ERR_FORMAT: return "corrupt or invalid file";
    case DANU_ERR_UNSUPPORTED: return "unsupported";
    case DANU_ERR_CANCELLED: return "cancelled";
    case DANU_ERR_ABORTED: return "aborted";
    case DANU_ERR_CONTEXT_FULL: return "context full";
    case DANU_ERR_BAD_TOKEN: return "bad token id";
    case DANU_ERR_BAD_UTF8: return "invalid UTF-8";
    case DANU_ERR_STATE: return "not possible in the current state";
    case DANU_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case DANU_ERR_INTERNAL: return "internal error";
    case DANU_IN_PROGRESS: return "in progress";
    default: return "unknown status";
    }
}

const char *danu_last_error(void) { return dn_lasterr(); }

/* ---- options ---- */

danu_status danu_options_create(const danu_allocator *alloc, danu_options **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    dn_alloc a;
    DN_TRY(dn_alloc_from_public(&a, alloc));
    danu_options *o = dn_malloc(&a, sizeof *o);
    DN_CHECK(o, DANU_ERR_NOMEM, "cannot allocate options");
    dn_options_defaults(o);
    o->alloc = a;
    *out = o;
    return DANU_OK;
}

void danu_options_free(danu_options *o)
{
    if (!o) return;
    dn_pool_free(o->pool);
    dn_alloc a = o->alloc;
    dn_free(&a, o);
}

danu_status danu_options_set_pool(danu_options *o, danu_pool *pool)
{
    ARG(o, "options is NULL");
    dn_pool_ref(pool);
    dn_pool_free(o->pool);
    o->pool = pool;
    return DANU_OK;
}

danu_status danu_options_set_int(danu_options *o, danu_param key, int64_t v)
{
    ARG(o, "options is NULL");
    return dn_options_set_int(o, key, v);
}

danu_status danu_options_set_float(danu_options *o, danu_param key, double v)
{
    ARG(o, "options is NULL");
    return dn_options_set_float(o, key, v);
}

danu_status danu_options_set_log(danu_options *o, danu_log_fn fn, void *user)
{
    ARG(o, "options is NULL");
    o->log.fn = fn;
    o->log.user = user;
    return DANU_OK;
}

danu_status danu_options_set_progress(danu_options *o, danu_progress_fn fn, void *user)
{
    ARG(o, "options is NULL");
    o->progress = fn;
    o->progress_user = user;
    return DANU_OK;
}

danu_status danu_param_bounds(danu_param key, double *min, double *max) { return dn_param_bounds(key, min, max); }
danu_param danu_param_from_name(const char *name) { return dn_param_from_name(name); }

static const struct danu_options *opts_or_default(const danu_options *o, struct danu_options *tmp)
{
    if (o) return o;
    dn_options_defaults(tmp);
    return tmp;
}

/* ---- pools ---- */

danu_status danu_pool_create(const danu_options *opts, danu_pool **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    struct danu_options tmp;
    const struct danu_options *o = opts_or_default(opts, &tmp);
    return dn_pool_create(&o->alloc, dn_options_threads(o), out);
}

danu_status danu_pool_create_host(const danu_options *opts, danu_parallel_for_fn fn, void *user, danu_pool **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(fn, "the parallel-for callback is NULL");
    struct danu_options tmp;
    const struct danu_options *o = opts_or_default(opts, &tmp);
    return dn_pool_create_host(&o->alloc, dn_options_threads(o), fn, user, out);
}

void danu_pool_free(danu_pool *pool) { dn_pool_free(pool); }

int32_t danu_pool_size(const danu_pool *pool) { return pool ? dn_pool_size(pool) : 0; }

/* ---- model ---- */

const char *danu_type_name(int32_t type)
{
    const dn_type_info *t = dn_type_get(type);
    return t && dn_type_is_weight(type) ? t->name : "unknown";
}

danu_status danu_model_load(const char *path, const danu_options *opts, danu_model **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(path && *path, "path is NULL or empty");
    struct danu_options tmp;
    return dn_model_load(path, opts_or_default(opts, &tmp), out);
}

void danu_model_free(danu_model *m) { dn_model_free(m); }

danu_status danu_model_get_int(const danu_model *m, danu_info key, int64_t *out)
{
    ARG(m && out, "model or out is NULL");
    const dn_config *c = &m->cfg;
    switch (key) {
    case DANU_INFO_VOCAB: *out = c->vocab; break;
    case DANU_INFO_HIDDEN: *out = c->hidden; break;
    case DANU_INFO_LAYERS: *out = c->n_layers; break;
    case DANU_INFO_HEADS: *out = c->n_heads; break;
    case DANU_INFO_KV_HEADS: *out = c->n_kv_heads; break;
    case DANU_INFO_HEAD_DIM: *out = c->head_dim; break;
    case DANU_INFO_FFN: *out = c->ffn; break;
    case DANU_INFO_CONTEXT_LENGTH: *out = c->max_ctx; break;
    case DANU_INFO_SLIDING_WINDOW: *out = c->window; break;
    case DANU_INFO_BOS: *out = c->bos; break;
    case DANU_INFO_EOS: *out = c->eos; break;
    case DANU_INFO_UNK: *out = m->tok ? dn_tokenizer_unk(m->tok) : -1; break;
    case DANU_INFO_FORMAT: *out = m->format; break;
    case DANU_INFO_TENSOR_COUNT: *out = m->n_tensors; break;
    case DANU_INFO_WEIGHT_BYTES: *out = (int64_t)m->weight_bytes; break;
    case DANU_INFO_TIED_EMBEDDINGS: *out = c->tied; break;
    case DANU_INFO_ISA: *out = dn_kernels_public_isa(m->kern); break;
    case DANU_INFO_FILE_TYPE: *out = m->file_type; break;
    case DANU_INFO_REPACKED_MATRICES: *out = m->repacked_matrices; break;
    case DANU_INFO_REPACKED_BYTES: *out = (int64_t)m->repacked_bytes; break;
    default: return dn_seterr(DANU_ERR_UNSUPPORTED, "unknown integer model fact %d", key);
    }
    return DANU_OK;
}

danu_status danu_model_get_float(const danu_model *m, danu_info key, double *out)
{
    ARG(m && out, "model or out is NULL");
    switch (key) {
    case DANU_INFO_ROPE_THETA: *out = m->cfg.rope_theta; break;
    case DANU_INFO_RMS_EPS: *out = m->cfg.rms_eps; break;
    default: return dn_seterr(DANU_ERR_UNSUPPORTED, "unknown float model fact %d", key);
    }
    return DANU_OK;
}

danu_status danu_model_tensor(const danu_model *m, int64_t i, const char **name, int32_t *type, int32_t *n_dims,
                              int64_t *dims)
{
    ARG(m, "model is NULL");
    DN_CHECK(i >= 0 && i < m->n_tensors, DANU_ERR_INVALID_ARG, "tensor index %lld is outside 0..%lld", (long long)i,
             (long long)m->n_tensors - 1);
    const dn_tensor_desc *t = &m->tensors[i];
    if (name) *name = t->name;
    if (type) *type = t->type;
    if (n_dims) *n_dims = t->n_dims;
    if (dims) for (int d = 0; d < DN_MAX_DIMS; d++) dims[d] = d < t->n_dims ? t->dims[d] : 1;
    return DANU_OK;
}

const danu_tokenizer *danu_model_tokenizer(const danu_model *m) { return m ? m->tok : NULL; }

/* ---- tokenizer ---- */

danu_status danu_tokenizer_load(const char *path, const danu_options *opts, danu_tokenizer **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(path, "path is NULL");
    struct danu_options tmp;
    const struct danu_options *o = opts_or_default(opts, &tmp);
    dn_mapping map;
    DN_TRY(dn_map_file(path, 0, &o->alloc, &map));
    danu_status s = dn_tokenizer_from_spm(&o->alloc, map.data, (size_t)map.size, path, out);
    dn_unmap_file(&o->alloc, &map);
    return s;
}

void danu_tokenizer_free(danu_tokenizer *t) { if (t) dn_tokenizer_free(t); }

int32_t danu_tokenizer_vocab_size(const danu_tokenizer *t) { return t ? dn_tokenizer_n_vocab(t) : 0; }

/* Copy a heap id array into the caller's buffer with the size protocol. */
static danu_status give_ids(danu_token *ids, size_t n, danu_token *out, size_t cap, size_t *n_out)
{
    if (n_out) *n_out = n;
    size_t k = n < cap ? n : cap;
    if (k && out) memcpy(out, ids, k * sizeof *ids);
    return n > cap ? dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "%zu ids do not fit a buffer of %zu", n, cap) : DANU_OK;
}

danu_status danu_tokenizer_encode(const danu_tokenizer *t, const char *text, size_t len, uint32_t flags, danu_token *out,
                                  size_t cap, size_t *n_out)
{
    ARG(t, "tokenizer is NULL");
    ARG(text || len == 0, "text is NULL");
    ARG(out || cap == 0, "out is NULL with cap > 0");
    ARG(!(flags & ~7u), "unknown flags");
    danu_token *ids = NULL;
    size_t n = 0;
    DN_TRY(dn_tokenizer_encode(t, text ? text : "", len, flags, &ids, &n));
    danu_status s = give_ids(ids, n, out, cap, n_out);
    dn_free(dn_tokenizer_alloc(t), ids);
    return s;
}

danu_status danu_tokenizer_decode(const danu_tokenizer *t, const danu_token *ids, size_t n, char *out, size_t cap,
                                  size_t *len_out)
{
    ARG(t, "tokenizer is NULL");
    ARG(ids || n == 0, "ids is NULL");
    ARG(out || cap == 0, "out is NULL with cap > 0");
    char *text = NULL;
    size_t len = 0;
    DN_TRY(dn_tokenizer_decode(t, ids, n, &text, &len));
    if (len_out) *len_out = len;
    danu_status s = DANU_OK;
    if (cap > len) {
        memcpy(out, text, len);
        out[len] = 0;
    } else {
        if (cap) { memcpy(out, text, cap - 1); out[cap - 1] = 0; }
        s = dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "%zu bytes of text do not fit a buffer of %zu", len + 1, cap);
    }
    dn_free(dn_tokenizer_alloc(t), text);
    return s;
}

danu_status danu_tokenizer_piece(const danu_tokenizer *t, danu_token id, const char **piece, size_t *len)
{
    ARG(t && piece && len, "NULL argument");
    DN_CHECK(id >= 0 && id < dn_tokenizer_n_vocab(t), DANU_ERR_BAD_TOKEN, "token id %d is outside 0..%d", id,
             dn_tokenizer_n_vocab(t) - 1);
    *piece = dn_tokenizer_piece(t, id, len);
    return DANU_OK;
}

danu_status danu_chat_encode(const danu_tokenizer *t, const char *const *roles, const char *const *contents, size_t n,
                             int32_t add_reply_prompt, danu_token *out, size_t cap, size_t *n_out)
{
    ARG(t, "tokenizer is NULL");
    ARG((roles && contents) || n == 0, "roles or contents is NULL");
    ARG(out || cap == 0, "out is NULL with cap > 0");
    for (size_t i = 0; i < n; i++) ARG(roles[i] && contents[i], "a role or content is NULL");
    danu_token *ids = NULL;
    size_t k = 0;
    DN_TRY(dn_chat_encode(t, roles, contents, n, 1, add_reply_prompt != 0, &ids, &k));
    danu_status s = give_ids(ids, k, out, cap, n_out);
    dn_free(dn_tokenizer_alloc(t), ids);
    return s;
}

danu_status danu_decoder_create(const danu_tokenizer *t, danu_decoder **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(t, "tokenizer is NULL");
    return dn_decoder_create(t, out);
}

void danu_decoder_free(danu_decoder *d) { if (d) dn_decoder_free(d); }

danu_status danu_decoder_push(danu_decoder *d, danu_token id, char *out, size_t cap, size_t *len_out)
{
    ARG(d && out && len_out && cap > 0, "NULL argument or zero capacity");
    return dn_decoder_push(d, id, out, cap, len_out);
}

danu_status danu_decoder_flush(danu_decoder *d, char *out, size_t cap, size_t *len_out)
{
    ARG(d && out && len_out && cap > 0, "NULL argument or zero capacity");
    return dn_decoder_flush(d, out, cap, len_out);
}

/* ---- context ---- */

danu_status danu_context_create(danu_model *m, const danu_options *opts, danu_context **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(m, "model is NULL");
    struct danu_options tmp;
    return dn_context_create(m, opts_or_default(opts, &tmp), out);
}

void danu_context_free(danu_context *c) { dn_context_free(c); }

/* An abort asked for before this call is forgotten (danu_context_abort);
 * one asked for while it runs, even between two tokens, stops it. */
static void call_starts(danu_context *c) { atomic_store(&c->abort_flag, 0); }
/* An abort is used up by the call it stopped: the next call starts clean. */
static danu_status call_ends(danu_context *c, danu_status s)
{
    if (s == DANU_ERR_ABORTED) atomic_store(&c->abort_flag, 0);
    return s;
}

danu_status danu_context_set_int(danu_context *c, danu_param key, int64_t v)
{
    ARG(c, "context is NULL");
    DN_CHECK(key >= 300 || key == DANU_OPT_ON_FULL || key == DANU_OPT_N_KEEP || key == DANU_OPT_SEED, DANU_ERR_UNSUPPORTED,
             "option %d cannot change on a live context", key);
    /* every 400 key: n_threads and isa at context creation, fast_bf16 at load */
    DN_CHECK(key < 400, DANU_ERR_UNSUPPORTED, "threads and kernels are fixed when the model or context is created");
    struct danu_options o = c->opt;
    DN_TRY(dn_options_set_int(&o, key, v));
    DN_CHECK(o.n_keep < c->n_ctx, DANU_ERR_INVALID_ARG, "n_keep %d must be below n_ctx %d", o.n_keep, c->n_ctx);
    c->opt = o;
    if (key == DANU_OPT_SEED) dn_sampler_seed(&c->sampler, (uint64_t)v);
    return dn_context_apply_settings(c);
}

danu_status danu_context_set_float(danu_context *c, danu_param key, double v)
{
    ARG(c, "context is NULL");
    DN_CHECK((key >= 300 && key < 400) || key == DANU_OPT_ON_FULL || key == DANU_OPT_N_KEEP || key == DANU_OPT_SEED,
             DANU_ERR_UNSUPPORTED, "option %d cannot change on a live context", key);
    struct danu_options o = c->opt;
    DN_TRY(dn_options_set_float(&o, key, v));   /* refuses the int keys by name (no conversion) */
    c->opt = o;
    return dn_context_apply_settings(c);
}

danu_status danu_context_set_logit_bias(danu_context *c, danu_token id, float bias)
{
    ARG(c, "context is NULL");
    return dn_sampler_set_bias(&c->sampler, id, bias);
}

size_t danu_context_memory_size(const danu_context *c)
{
    return c ? dn_context_memory_size(c) : 0;
}

danu_status danu_context_memory_estimate(const danu_model *m, const danu_options *opts, size_t *out)
{
    ARG(m && out, "model or out is NULL");
    struct danu_options tmp;
    return dn_context_estimate(m, opts_or_default(opts, &tmp), out);
}

danu_status danu_context_eval(danu_context *c, const danu_token *t, size_t n, float *all_logits)
{
    ARG(c, "context is NULL");
    DN_TRY(dn_context_idle(c));
    atomic_store(&c->abort_flag, 0);   /* an abort stops running work only */
    ARG(t || n == 0, "tokens is NULL");
    c->gen_active = 0;
    call_starts(c);
    return call_ends(c, dn_context_eval(c, t, n, all_logits));
}

danu_status danu_context_prompt(danu_context *c, const danu_token *t, size_t n, size_t *n_reused)
{
    ARG(c && t, "context or tokens is NULL");
    DN_TRY(dn_context_idle(c));
    call_starts(c);
    return call_ends(c, dn_context_prompt(c, t, n, n_reused));   /* checks the ids before touching the cache */
}

const float *danu_context_logits(const danu_context *c) { return c && c->has_logits ? c->logits : NULL; }
size_t danu_context_n_tokens(const danu_context *c) { return c ? c->n_tokens : 0; }
const danu_token *danu_context_tokens(const danu_context *c) { return c ? c->tokens : NULL; }

danu_status danu_context_clear(danu_context *c)
{
    ARG(c, "context is NULL");
    dn_context_clear(c);
    return DANU_OK;
}

danu_status danu_context_rewind(danu_context *c, size_t n)
{
    ARG(c, "context is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_rewind(c, n);
}

void danu_context_abort(danu_context *c)
{
    if (c) atomic_store(&c->abort_flag, 1);
}

danu_status danu_context_sample(danu_context *c, danu_token *out)
{
    ARG(c && out, "context or out is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_sample(c, out);
}

danu_status danu_context_add_stop_string(danu_context *c, const char *s)
{
    ARG(c && s, "context or string is NULL");
    return dn_context_add_stop(c, s);
}

danu_status danu_context_clear_stop_strings(danu_context *c)
{
    ARG(c, "context is NULL");
    dn_context_clear_stops(c);
    return DANU_OK;
}

/* ---- constraints ---- */

danu_status danu_constraint_from_grammar(const danu_tokenizer *tok, const char *gbnf, size_t len, const char *root,
                                         danu_constraint **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(tok && gbnf, "tokenizer or grammar is NULL");
    return dn_constraint_from_gbnf(tok, gbnf, len, root, out);
}

danu_status danu_constraint_from_json_schema(const danu_tokenizer *tok, const char *schema, size_t len,
                                             uint32_t flags, danu_constraint **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(tok && schema, "tokenizer or schema is NULL");
    return dn_constraint_from_schema(tok, schema, len, flags, out);
}

danu_status danu_constraint_from_choices(const danu_tokenizer *tok, const char *const *choices, size_t n,
                                         danu_constraint **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(tok && choices, "tokenizer or choices is NULL");
    return dn_constraint_from_choices(tok, choices, n, out);
}

void danu_constraint_free(danu_constraint *c) { dn_constraint_unref(c); }

danu_status danu_json_schema_to_grammar(const char *schema, size_t len, uint32_t flags, char *out, size_t cap,
                                        size_t *len_out)
{
    ARG(len_out, "len_out is NULL");
    *len_out = 0;
    ARG(schema && (out || cap == 0), "schema or out is NULL");
    if (cap) out[0] = 0;
    char *g;
    size_t n;
    DN_TRY(dn_json_schema_to_gbnf(dn_alloc_libc(), schema, len, flags, &g, &n));
    *len_out = n;
    danu_status s = DANU_OK;
    if (n + 1 > cap) s = dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "the grammar takes %zu bytes, the buffer holds %zu", n + 1, cap);
    else memcpy(out, g, n + 1);
    dn_free(dn_alloc_libc(), g);
    return s;
}

danu_status danu_context_set_constraint(danu_context *c, danu_constraint *k)
{
    ARG(c, "context is NULL");
    return dn_context_set_constraint(c, k);
}

danu_status danu_context_constraint_state(const danu_context *c, int32_t *state)
{
    ARG(state, "state is NULL");
    *state = DANU_CONSTRAINT_NONE;
    ARG(c, "context is NULL");
    *state = dn_context_constraint_state(c);
    return DANU_OK;
}

danu_status danu_context_generate(danu_context *c, int32_t max_tokens, danu_token_fn fn, void *user, int32_t *reason)
{
    if (reason) *reason = DANU_STOP_LENGTH;
    ARG(c, "context is NULL");
    atomic_store(&c->abort_flag, 0);   /* an abort stops running work only */
    ARG(max_tokens >= 0, "max_tokens is negative");
    DN_TRY(dn_context_idle(c));
    call_starts(c);
    return call_ends(c, dn_context_generate(c, max_tokens, fn, user, reason));
}

danu_status danu_context_step(danu_context *c, danu_token *id_out, char *out, size_t cap, size_t *len_out,
                              int32_t *reason)
{
    ARG(c && id_out && out && len_out && reason && cap > 0, "NULL argument or zero capacity");
    *id_out = -1;
    *reason = -1;
    *len_out = 0;
    DN_TRY(dn_context_idle(c));
    /* A step is one piece of a generation the caller drives: an abort that
     * arrives between two steps (the caller's loop, a binding's iterator)
     * stops the next step instead of being forgotten, and is used up then. */
    return call_ends(c, dn_context_step(c, id_out, out, cap, len_out, reason));
}

danu_status danu_context_step_finish(danu_context *c, char *out, size_t cap, size_t *len_out)
{
    ARG(c && out && len_out && cap > 0, "NULL argument or zero capacity");
    DN_TRY(dn_context_idle(c));
    return dn_context_step_finish(c, out, cap, len_out);
}

danu_status danu_context_chat_append(danu_context *c, const char *const *roles, const char *const *contents, size_t n,
                                     int32_t add_reply_prompt)
{
    ARG(c, "context is NULL");
    atomic_store(&c->abort_flag, 0);   /* an abort stops running work only */
    ARG((roles && contents) || n == 0, "roles or contents is NULL");
    for (size_t i = 0; i < n; i++) ARG(roles[i] && contents[i], "a role or content is NULL");
    DN_TRY(dn_context_idle(c));
    call_starts(c);
    return call_ends(c, dn_context_chat_append(c, roles, contents, n, add_reply_prompt != 0));
}

/* ---- work in slices ---- */

danu_status danu_context_eval_begin(danu_context *c, const danu_token *t, size_t n)
{
    ARG(c, "context is NULL");
    ARG(t || n == 0, "tokens is NULL");
    call_starts(c);
    return dn_context_eval_begin(c, t, n);
}

danu_status danu_context_prompt_begin(danu_context *c, const danu_token *t, size_t n, size_t *n_reused)
{
    if (n_reused) *n_reused = 0;
    ARG(c && t, "context or tokens is NULL");
    call_starts(c);
    return dn_context_prompt_begin(c, t, n, n_reused);
}

danu_status danu_context_chat_append_begin(danu_context *c, const char *const *roles, const char *const *contents,
                                           size_t n, int32_t add_reply_prompt)
{
    ARG(c, "context is NULL");
    ARG((roles && contents) || n == 0, "roles or contents is NULL");
    for (size_t i = 0; i < n; i++) ARG(roles[i] && contents[i], "a role or content is NULL");
    call_starts(c);
    return dn_context_chat_append_begin(c, roles, contents, n, add_reply_prompt != 0);
}

/* The abort flag is not cleared here: an abort between two slices stops
 * the next one; it is used up by the call it stopped. */
danu_status danu_context_work(danu_context *c, int64_t budget_us)
{
    ARG(c, "context is NULL");
    return call_ends(c, dn_context_work(c, budget_us));
}

size_t danu_context_pending(const danu_context *c)
{
    return c && c->pend.active ? c->pend.end - c->n_tokens : 0;
}

danu_status danu_context_step_sliced(danu_context *c, int64_t budget_us, danu_token *id_out, char *out, size_t cap,
                                     size_t *len_out, int32_t *reason)
{
    ARG(c && id_out && out && len_out && reason && cap > 0, "NULL argument or zero capacity");
    return call_ends(c, dn_context_step_sliced(c, budget_us, id_out, out, cap, len_out, reason));
}

/* ---- many contexts at once ---- */

danu_status danu_batch_create(danu_model *m, int32_t max_contexts, const danu_options *opts, danu_batch **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(m, "model is NULL");
    struct danu_options tmp;
    return dn_batch_create(m, max_contexts, opts_or_default(opts, &tmp), out);
}

void danu_batch_free(danu_batch *b) { dn_batch_free(b); }

size_t danu_batch_memory_size(const danu_batch *b) { return b ? dn_batch_memory_size(b) : 0; }

danu_status danu_batch_step(danu_batch *b, danu_batch_item *items, size_t n)
{
    ARG(b && items, "batch or items is NULL");
    return dn_batch_step(b, items, n);
}

danu_status danu_batch_generate(danu_batch *b, danu_context *const *ctxs, size_t n, int32_t max_tokens,
                                danu_batch_token_fn fn, void *user, int32_t *reasons)
{
    ARG(b && ctxs, "batch or contexts is NULL");
    return dn_batch_generate(b, ctxs, n, max_tokens, fn, user, reasons);
}

danu_status danu_context_copy(danu_context *dst, const danu_context *src)
{
    ARG(dst && src, "dst or src is NULL");
    return dn_context_copy(dst, src);
}

danu_status danu_context_fork(const danu_context *src, danu_context **out)
{
    ARG(out, "out is NULL");
    *out = NULL;
    ARG(src, "src is NULL");
    return dn_context_fork(src, out);
}

/* ---- state ---- */

size_t danu_context_state_size(const danu_context *c) { return c ? dn_context_state_size(c) : 0; }

danu_status danu_context_state_save(const danu_context *c, void *buf, size_t cap, size_t *written)
{
    ARG(c && (buf || cap == 0), "context or buffer is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_state_save(c, buf, cap, written);
}

danu_status danu_context_state_load(danu_context *c, const void *buf, size_t len)
{
    ARG(c && buf, "context or buffer is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_state_load(c, buf, len);
}

danu_status danu_context_state_save_file(const danu_context *c, const char *path)
{
    ARG(c && path, "context or path is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_state_save_file(c, path);
}

danu_status danu_context_state_load_file(danu_context *c, const char *path)
{
    ARG(c && path, "context or path is NULL");
    DN_TRY(dn_context_idle(c));
    return dn_context_state_load_file(c, path);
}

/* ---- tools ---- */

danu_status danu_synth_write(const char *config, uint64_t seed, int32_t format, int32_t type, const void *tokenizer_model,
                             size_t tokenizer_len, const char *out_path, const danu_options *opts)
{
    ARG(config && out_path && tokenizer_model && tokenizer_len, "NULL argument");
    const dn_synth_config *cfg = dn_synth_config_find(config);
    DN_CHECK(cfg, DANU_ERR_INVALID_ARG, "unknown synthetic configuration \"%s\" (danube-1.8b, tiny-a, tiny-b, tiny-q)",
             config);
    ARG(format == DANU_FORMAT_HF || format == DANU_FORMAT_GGUF, "format must be DANU_FORMAT_HF or DANU_FORMAT_GGUF");
    struct danu_options tmp;
    const struct danu_options *o = opts_or_default(opts, &tmp);
    dn_synth_request r = { cfg, seed, format == DANU_FORMAT_HF ? DN_SYNTH_HF : DN_SYNTH_GGUF, type, out_path,
                           tokenizer_model, tokenizer_len, o->progress, o->progress_user, o->log };
    return dn_synth_write(&o->alloc, &r);
}

danu_status danu_quantize(const char *input, const char *output, const char *type, const danu_options *opts)
{
    ARG(input && *input && output && *output && type, "input, output or type is NULL or empty");
    struct danu_options tmp;
    const struct danu_options *o = opts_or_default(opts, &tmp);
    dn_quantize_request r = { input, output, type, o->n_threads, o->use_mmap, o->progress, o->progress_user, o->log };
    return dn_quantize(&o->alloc, &r);
}
