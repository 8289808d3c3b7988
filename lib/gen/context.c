/* context.c - lifecycle of a context, evaluation in batches, cache
 * operations (rewind, prefix reuse, shift), generation with streaming text
 * and stop strings, chat turns, and state save/load. */
#include <string.h>
#include <stdio.h>
#include "gen/context.h"
#include "common/error.h"
#include "common/bytes.h"

/* ---- lifecycle ------------------------------------------------------------ */

/* What a context's options come to on a model: the one place that turns
 * n_ctx 0, the window, n_batch and the thread count into sizes. */
typedef struct ctx_plan { int32_t n_ctx, cap, n_batch, n_threads, kv_type; } ctx_plan;

static danu_status plan(const danu_model *m, const struct danu_options *o, ctx_plan *p)
{
    const dn_config *cfg = &m->cfg;
    p->n_ctx = o->n_ctx > 0 ? o->n_ctx : cfg->max_ctx;
    DN_CHECK(p->n_ctx <= cfg->max_ctx, DANU_ERR_INVALID_ARG, "n_ctx %d is above the model's context length %d",
             p->n_ctx, cfg->max_ctx);
    DN_CHECK(o->n_keep >= 0 && o->n_keep < p->n_ctx, DANU_ERR_INVALID_ARG, "n_keep %d must be below n_ctx %d",
             o->n_keep, p->n_ctx);
    /* a window W needs only the last W positions of each layer */
    p->cap = cfg->window > 0 && cfg->window < p->n_ctx ? cfg->window : p->n_ctx;
    p->n_batch = o->n_batch < p->n_ctx ? o->n_batch : p->n_ctx;
    p->n_threads = dn_model_lanes(m, o);
    p->kv_type = o->kv_type;
    return DANU_OK;
}

/* Bytes a fresh context of this plan takes from the allocator, stop
 * strings aside: the sum of what each of its parts allocates. */
static size_t plan_bytes(const danu_model *m, const ctx_plan *p)
{
    const dn_config *cfg = &m->cfg;
    return sizeof(danu_context) +
           dn_kv_alloc_bytes(cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, p->cap, p->n_batch, p->kv_type) +
           dn_scratch_plan_bytes(m, p->n_batch, p->n_threads, p->cap) + (size_t)p->n_ctx * sizeof(danu_token) +
           2 * dn_aligned_bytes((size_t)cfg->vocab * sizeof(float)) + dn_sampler_bytes(cfg->vocab) +
           (m->tok ? dn_decoder_bytes(m->tok) : 0) + dn_hold_bytes(0);
}

danu_status dn_context_estimate(const danu_model *m, const struct danu_options *o, size_t *out)
{
    ctx_plan p = { 0, 0, 0, 0, 0 };
    DN_TRY(plan(m, o, &p));
    *out = plan_bytes(m, &p);
    return DANU_OK;
}

size_t dn_context_memory_size(const danu_context *c)
{
    const ctx_plan p = { c->n_ctx, c->cap, c->opt.n_batch, c->opt.n_threads, c->kv.type };
    size_t stops = c->stops ? (size_t)c->n_stops * sizeof *c->stops : 0;
    for (int i = 0; i < c->n_stops; i++) stops += strlen(c->stops[i]) + 1;
    return plan_bytes(c->model, &p) + stops + (c->hold_cap - dn_hold_bytes(0));
}

danu_status dn_context_create(danu_model *m, const struct danu_options *o, danu_context **out)
{
    *out = NULL;
    const dn_config *cfg = &m->cfg;
    ctx_plan p = { 0, 0, 0, 0, 0 };
    DN_TRY(plan(m, o, &p));
    danu_context *c = dn_calloc(&m->alloc, 1, sizeof *c);
    DN_CHECK(c, DANU_ERR_NOMEM, "cannot allocate the context");
    c->model = m;
    c->alloc = m->alloc;        /* contexts inherit the model's allocator */
    c->log = o->log.fn ? o->log : m->log;
    c->opt = *o;
    c->n_ctx = p.n_ctx;
    c->cap = p.cap;
    c->opt.n_batch = p.n_batch;
    c->opt.n_threads = p.n_threads;
    c->opt.pool = NULL;          /* the bag's reference is not the context's */
    c->team = dn_model_team(m, o, p.n_threads, &c->adapt);
    c->pool = c->team.pool;
    danu_status s = dn_kv_init(&c->kv, &c->alloc, cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, c->cap, p.n_batch,
                               p.kv_type, o->kv_huge_pages);
    if (s == DANU_OK) s = dn_scratch_init(&c->s, &c->alloc, m, p.n_batch, p.n_threads, c->cap);
    if (s == DANU_OK) {
        c->tokens = dn_malloc(&c->alloc, (size_t)p.n_ctx * sizeof(danu_token));
        c->logits = dn_malloc_aligned(&c->alloc, (size_t)cfg->vocab * sizeof(float));
        c->logits_next = dn_malloc_aligned(&c->alloc, (size_t)cfg->vocab * sizeof(float));
        if (!c->tokens || !c->logits || !c->logits_next)
            s = dn_seterr(DANU_ERR_NOMEM, "cannot allocate the context history");
    }
    if (s == DANU_OK) s = dn_sampler_init(&c->sampler, &c->alloc, cfg->vocab, o->seed);
    if (s == DANU_OK) c->sampler.params = o->sampling;
    if (s == DANU_OK && m->tok) s = dn_decoder_create(m->tok, &c->dec);
    if (s == DANU_OK) {
        c->hold_cap = dn_hold_bytes(0);
        c->hold = dn_malloc(&c->alloc, c->hold_cap);
        if (!c->hold) s = dn_seterr(DANU_ERR_NOMEM, "cannot allocate the text buffer");
    }
    if (s != DANU_OK) { dn_context_free(c); return s; }
    atomic_init(&c->abort_flag, 0);
    dn_log(&c->log, DANU_LOG_INFO, "context: n_ctx %d, %d cached positions per layer, %zu bytes in all, %d of a pool "
           "of %d threads%s", p.n_ctx, c->cap, dn_context_memory_size(c), p.n_threads, dn_pool_size(c->pool),
           o->pool ? "" : " (the model's)");
    *out = c;
    return DANU_OK;
}

void dn_context_free(danu_context *c)
{
    if (!c) return;
    dn_pool_free(c->pool);
    dn_kv_free(&c->kv);
    dn_scratch_free(&c->s);
    dn_free(&c->alloc, c->tokens);
    dn_free_aligned(&c->alloc, c->logits);
    dn_free_aligned(&c->alloc, c->logits_next);
    if (c->sampler.a) dn_sampler_free(&c->sampler);
    if (c->dec) dn_decoder_free(c->dec);
    dn_context_clear_stops(c);
    dn_free(&c->alloc, c->stops);
    dn_free(&c->alloc, c->hold);
    dn_matcher_free(c->matcher);
    dn_constraint_unref(c->constraint);
    dn_alloc a = c->alloc;
    dn_free(&a, c);
}

/* ---- copies ------------------------------------------------------------------ */

danu_status dn_context_copy(danu_context *dst, const danu_context *src)
{
    DN_CHECK(dst != src, DANU_ERR_INVALID_ARG, "a context cannot be copied onto itself");
    DN_CHECK(dst->model == src->model, DANU_ERR_INVALID_ARG, "the contexts belong to different models");
    DN_TRY(dn_context_idle(src));
    DN_TRY(dn_context_idle(dst));
    DN_CHECK(dst->kv.type == src->kv.type, DANU_ERR_INVALID_ARG, "the contexts' KV caches have different types");
    const size_t n = src->n_tokens;
    DN_CHECK(n <= (size_t)dst->n_ctx, DANU_ERR_INVALID_ARG, "%zu tokens do not fit n_ctx %d", n, dst->n_ctx);
    /* the positions src still holds; a wrapped ring is only copied onto one of its size */
    const size_t lo = n > (size_t)src->cap ? n - (size_t)src->cap : 0;
    DN_CHECK(lo == 0 || dst->cap == src->cap, DANU_ERR_INVALID_ARG, "src's ring of %d positions wrapped; dst keeps %d",
             src->cap, dst->cap);
    /* the one step that can fail comes before anything changes */
    if (src->constraint != dst->constraint) DN_TRY(dn_context_set_constraint(dst, src->constraint));
    /* unwrapped: positions 0..n-1 are slots 0..n-1 in both; wrapped: the same ring size, the same slots */
    const size_t slots = lo == 0 && n <= (size_t)dst->cap ? n : (size_t)src->cap;
    dn_kv_copy(&dst->kv, &src->kv, (int32_t)slots);
    memcpy(dst->tokens, src->tokens, n * sizeof *src->tokens);
    dst->n_tokens = n;
    memcpy(dst->logits, src->logits, (size_t)src->model->cfg.vocab * sizeof(float));
    dst->has_logits = src->has_logits;
    dst->opt.sampling = src->opt.sampling;
    dst->opt.on_full = src->opt.on_full;
    dst->opt.n_keep = src->opt.n_keep < dst->n_ctx ? src->opt.n_keep : 0;
    dst->opt.ignore_eos = src->opt.ignore_eos;
    dst->sampler.params = src->sampler.params;
    memcpy(dst->sampler.rng, src->sampler.rng, sizeof dst->sampler.rng);
    dst->gen_active = 0;
    dst->hold_len = 0;
    return DANU_OK;
}

danu_status dn_context_fork(const danu_context *src, danu_context **out)
{
    *out = NULL;
    DN_TRY(dn_context_idle(src));
    struct danu_options o = src->opt;
    o.pool = src->pool;   /* borrowed: the new context takes its own reference */
    o.log = src->log;
    danu_context *c;
    DN_TRY(dn_context_create(src->model, &o, &c));
    danu_status s = dn_context_copy(c, src);
    if (s != DANU_OK) { dn_context_free(c); return s; }
    *out = c;
    return DANU_OK;
}

danu_status dn_context_apply_settings(danu_context *c)
{
    c->sampler.params = c->opt.sampling;
    return DANU_OK;
}

/* ---- evaluation --------------------------------------------------------------- */

danu_status dn_context_idle(const danu_context *c)
{
    DN_CHECK(!c->pend.active, DANU_ERR_STATE, "sliced work is pending (%zu tokens): finish it with "
             "danu_context_work or drop it with danu_context_clear", c->pend.end - c->n_tokens);
    return DANU_OK;
}

/* Context full under DANU_FULL_SHIFT: keep the first n_keep tokens, drop the
 * older half of the rest, and queue the cache's recomputation for what
 * remains (exact: the kept tokens get the positions they now have). The
 * kept tokens move down inside the history itself: nothing is allocated. */
static danu_status shift(danu_context *c, size_t need)
{
    size_t keep = (size_t)c->opt.n_keep, rest = c->n_tokens - keep;
    size_t drop = rest / 2;
    if (c->n_tokens - drop + need > (size_t)c->n_ctx) drop = c->n_tokens + need - (size_t)c->n_ctx;
    if (drop > rest) return dn_seterr(DANU_ERR_CONTEXT_FULL, "%zu new tokens do not fit even after a shift", need);
    size_t n = c->n_tokens - drop;
    memmove(c->tokens + keep, c->tokens + keep + drop, (n - keep) * sizeof *c->tokens);
    dn_log(&c->log, DANU_LOG_INFO, "context full: keeping %zu + %zu tokens, dropping %zu", keep, n - keep, drop);
    c->n_tokens = 0;
    c->has_logits = 0;
    c->pend.end = n;
    return DANU_OK;
}

static danu_status check_tokens(const danu_context *c, const danu_token *t, size_t n)
{
    const int32_t vocab = c->model->cfg.vocab;
    for (size_t i = 0; i < n; i++)
        DN_CHECK(t[i] >= 0 && t[i] < vocab, DANU_ERR_BAD_TOKEN, "token %zu has id %d, outside 0..%d", i, t[i], vocab - 1);
    return DANU_OK;
}

/* Queue n tokens after the history (and a shift first, when full). Runs
 * nothing; on error nothing is queued. */
static danu_status queue(danu_context *c, const danu_token *t, size_t n, float *all_logits)
{
    DN_TRY(check_tokens(c, t, n));
    if (n == 0) return DANU_OK;
    c->pend.end = c->n_tokens;
    c->pend.had_logits = c->has_logits;
    if (c->n_tokens + n > (size_t)c->n_ctx) {
        if (c->opt.on_full != DANU_FULL_SHIFT || all_logits)
            return dn_seterr(DANU_ERR_CONTEXT_FULL, "context full: %zu cached + %zu new tokens exceed n_ctx %d",
                             c->n_tokens, n, c->n_ctx);
        DN_CHECK(n <= (size_t)c->n_ctx - (size_t)c->opt.n_keep, DANU_ERR_CONTEXT_FULL,
                 "%zu tokens do not fit in n_ctx %d with n_keep %d", n, c->n_ctx, c->opt.n_keep);
        DN_TRY(shift(c, n));
        c->pend.had_logits = 0;
    }
    memmove(c->tokens + c->pend.end, t, n * sizeof *t);   /* t may be the caller's copy of the history */
    c->pend.end += n;
    c->pend.first = c->n_tokens;
    c->pend.all_logits = all_logits;
    c->pend.committed = 0;
    c->pend.chunk = 0;
    c->pend.active = 1;
    c->has_logits = 0;
    return DANU_OK;
}

/* Tokens for the next batch of sliced work: a layer of it should take
 * about half the budget, so that a slice runs one or more whole layers. */
static int slice_batch(danu_context *c, uint64_t budget_ns, uint64_t unit_ns, int chunk)
{
    if (unit_ns && chunk) {
        double fit = (double)chunk * (double)budget_ns / 2.0 / (double)unit_ns;
        c->slice_tokens = fit < 1.0 ? 1 : fit > (double)c->opt.n_batch ? c->opt.n_batch : (int)fit;
    }
    return c->slice_tokens > 0 ? c->slice_tokens : 4;
}

void dn_context_chunk_begin(danu_context *c, int max, dn_seq *q)
{
    dn_pending *p = &c->pend;
    const int32_t vocab = c->model->cfg.vocab;
    const size_t left = p->end - c->n_tokens;
    int chunk = left < (size_t)c->opt.n_batch ? (int)left : c->opt.n_batch;
    if (max > 0 && chunk > max) chunk = max;
    const int last = c->n_tokens + (size_t)chunk == p->end;
    *q = (dn_seq){ .kv = &c->kv, .tokens = c->tokens + c->n_tokens, .n = chunk, .pos0 = (int64_t)c->n_tokens,
                   .abort = &c->abort_flag };
    /* the last batch's logits go to the spare buffer: an abort midway leaves the current ones whole */
    q->logits = p->all_logits ? p->all_logits + (c->n_tokens - p->first) * (size_t)vocab : (last ? c->logits_next : NULL);
    p->chunk = chunk;
}

danu_status dn_context_chunk_end(danu_context *c, danu_status st, const dn_seq *q)
{
    dn_pending *p = &c->pend;
    const int32_t vocab = c->model->cfg.vocab;
    if (st == DANU_OK && q->aborted) st = dn_seterr(DANU_ERR_ABORTED, "evaluation aborted");
    if (st != DANU_OK) {
        if (st == DANU_ERR_ABORTED && !p->committed) c->has_logits = p->had_logits;
        p->active = 0;
        p->chunk = 0;
        return st;
    }
    c->n_tokens += (size_t)p->chunk;   /* the batch went in */
    p->committed = 1;
    p->chunk = 0;
    if (c->n_tokens == p->end) {
        if (p->all_logits)
            memcpy(c->logits, p->all_logits + (p->end - 1 - p->first) * (size_t)vocab, (size_t)vocab * sizeof(float));
        else {
            float *t = c->logits;
            c->logits = c->logits_next;
            c->logits_next = t;
        }
        c->has_logits = 1;
        p->active = 0;
    }
    return DANU_OK;
}

/* Run the queued work: all of it (sliced 0), or units while the time spent
 * plus the last unit's time fits budget_ns (at least one unit). Returns
 * DANU_IN_PROGRESS when work remains. On error nothing stays queued;
 * batches finished before stay cached, and an abort before the first
 * leaves the logits as they were. */
static danu_status advance(danu_context *c, int sliced, uint64_t budget_ns)
{
    dn_pending *p = &c->pend;
    const uint64_t t0 = dn_time_ns();
    uint64_t unit_ns = 0;
    danu_status s = DANU_OK;
    dn_team_hold(&c->team, 1);
    while (p->active) {
        if (!p->chunk) {   /* the next batch */
            dn_context_chunk_begin(c, sliced ? slice_batch(c, budget_ns, unit_ns, p->seq.n) : 0, &p->seq);
            dn_pass_begin(&p->pass, c->model, &p->seq, 1, p->all_logits != NULL, NULL);
        }
        if (sliced && unit_ns && dn_time_ns() - t0 + unit_ns > budget_ns) { s = DANU_IN_PROGRESS; break; }
        const uint64_t u0 = dn_time_ns();
        s = dn_pass_step(c->model, &c->s, &c->team, &p->pass);
        unit_ns = dn_time_ns() - u0;
        if (s == DANU_OK && p->pass.unit < p->pass.n_units) continue;
        if ((s = dn_context_chunk_end(c, s, &p->seq)) != DANU_OK) break;
    }
    dn_team_hold(&c->team, 0);
    return s;
}

danu_status dn_context_eval(danu_context *c, const danu_token *t, size_t n, float *all_logits)
{
    /* the abort flag is cleared by the public entry points (api.c), not here:
     * generate/step call this per token, and clearing here lost an abort
     * that arrived between two tokens */
    DN_TRY(queue(c, t, n, all_logits));
    return advance(c, 0, 0);
}

danu_status dn_context_eval_begin(danu_context *c, const danu_token *t, size_t n)
{
    DN_TRY(dn_context_idle(c));
    c->gen_active = 0;
    return queue(c, t, n, NULL);
}

danu_status dn_context_work(danu_context *c, int64_t budget_us)
{
    DN_CHECK(budget_us >= 0, DANU_ERR_INVALID_ARG, "budget %lld us is negative", (long long)budget_us);
    if (!c->pend.active) return DANU_OK;
    const uint64_t ns = (uint64_t)budget_us > UINT64_MAX / 1000 ? UINT64_MAX : (uint64_t)budget_us * 1000;
    return advance(c, 1, ns);
}

/* Rewinding needs the positions the next token will attend to; a ring that
 * wrapped has lost the ones older than n_tokens - cap. */
danu_status dn_context_rewind(danu_context *c, size_t n)
{
    DN_CHECK(n <= c->n_tokens, DANU_ERR_INVALID_ARG, "cannot rewind to %zu: only %zu tokens cached", n, c->n_tokens);
    if (n == c->n_tokens) return DANU_OK;
    size_t W = (size_t)c->model->cfg.window;
    if (c->n_tokens > (size_t)c->cap) {
        size_t oldest = c->n_tokens - (size_t)c->cap;           /* oldest position still in the ring */
        size_t needed = W > 0 && n + 1 > W ? n + 1 - W : 0;      /* oldest position position n attends to */
        DN_CHECK(needed >= oldest, DANU_ERR_STATE,
                 "cannot rewind from %zu to %zu tokens: the sliding-window ring keeps positions from %zu on, "
                 "position %zu needs %zu", c->n_tokens, n, oldest, n, needed);
    }
    c->n_tokens = n;
    c->has_logits = 0;
    c->gen_active = 0;
    return DANU_OK;
}

void dn_context_clear(danu_context *c)
{
    c->pend.active = 0;   /* pending work is dropped */
    c->pend.chunk = 0;
    c->pend.step = 0;
    c->n_tokens = 0;
    c->has_logits = 0;
    c->gen_active = 0;
    c->hold_len = 0;
}

/* Keep the cached prefix shared with t, queue the rest; *kept = its length.
 * The ids are checked before the cache is touched. */
static danu_status prompt_queue(danu_context *c, const danu_token *t, size_t n, size_t *kept)
{
    *kept = 0;
    DN_TRY(check_tokens(c, t, n));
    DN_CHECK(n > 0, DANU_ERR_INVALID_ARG, "empty prompt");
    size_t p = 0;
    while (p < n && p < c->n_tokens && c->tokens[p] == t[p]) p++;
    if (p == n) p = n - 1;      /* evaluate at least the last token for fresh logits */
    if (dn_context_rewind(c, p) != DANU_OK) { dn_context_clear(c); p = 0; }
    dn_clearerr();
    c->gen_active = 0;
    DN_TRY(queue(c, t + p, n - p, NULL));
    *kept = p;
    return DANU_OK;
}

danu_status dn_context_prompt(danu_context *c, const danu_token *t, size_t n, size_t *n_reused)
{
    size_t kept;
    if (n_reused) *n_reused = 0;
    DN_TRY(prompt_queue(c, t, n, &kept));
    DN_TRY(advance(c, 0, 0));
    if (n_reused) *n_reused = kept;
    return DANU_OK;
}

danu_status dn_context_prompt_begin(danu_context *c, const danu_token *t, size_t n, size_t *n_reused)
{
    size_t kept;
    if (n_reused) *n_reused = 0;
    DN_TRY(dn_context_idle(c));
    DN_TRY(prompt_queue(c, t, n, &kept));
    if (n_reused) *n_reused = kept;
    return DANU_OK;
}

/* ---- sampling and generation ---------------------------------------------------- */

/* The decoder drops the next piece's leading space when only control tokens
 * came before: the constraint must see the text as the decoder gives it. */
static int strips_space(const danu_context *c)
{
    if (!c->dec) return 0;
    if (c->gen_active) return dn_decoder_strips_space(c->dec);
    return dn_decoder_strips_after(c->model->tok, c->n_tokens ? c->tokens[c->n_tokens - 1] : -1);
}

danu_status dn_context_sample(danu_context *c, danu_token *out)
{
    DN_CHECK(c->has_logits, DANU_ERR_STATE, "no logits: evaluate a prompt first");
    size_t win = c->n_tokens;
    const uint32_t *mask = NULL;
    if (c->matcher) DN_TRY(dn_matcher_mask(c->matcher, strips_space(c), &mask));
    danu_token t = dn_sampler_sample(&c->sampler, c->logits, mask, c->tokens, win);
    DN_CHECK(!mask || ((mask[t >> 5] >> (t & 31)) & 1), DANU_ERR_STATE,
             "constraint: no token can continue the output (every allowed token is banned by a logit bias, or "
             "the vocabulary cannot spell what the grammar needs)");
    *out = t;
    return DANU_OK;
}

danu_status dn_context_set_constraint(danu_context *c, danu_constraint *k)
{
    DN_TRY(dn_context_idle(c));
    dn_matcher *m = NULL;
    if (k) {
        DN_CHECK(c->model->tok, DANU_ERR_INVALID_ARG, "constraint: the model has no tokenizer");
        DN_CHECK(dn_constraint_fits(k, c->model->tok), DANU_ERR_INVALID_ARG,
                 "constraint: compiled for another vocabulary than this model's");
        DN_TRY(dn_matcher_create(k, &c->alloc, &m));
        dn_constraint_ref(k);
    }
    dn_matcher_free(c->matcher);
    dn_constraint_unref(c->constraint);
    c->matcher = m;
    c->constraint = k;
    return DANU_OK;
}

int32_t dn_context_constraint_state(const danu_context *c)
{
    return c->matcher ? dn_matcher_state(c->matcher) : DANU_CONSTRAINT_NONE;
}

danu_status dn_context_add_stop(danu_context *c, const char *s)
{
    DN_CHECK(s && *s, DANU_ERR_INVALID_ARG, "empty stop string");
    size_t need = dn_hold_bytes(strlen(s));
    if (need > c->hold_cap) {
        char *h = dn_realloc(&c->alloc, c->hold, need);
        DN_CHECK(h, DANU_ERR_NOMEM, "cannot add a stop string");
        c->hold = h;
        c->hold_cap = need;
    }
    char **ns = dn_realloc(&c->alloc, c->stops, (size_t)(c->n_stops + 1) * sizeof *ns);
    DN_CHECK(ns, DANU_ERR_NOMEM, "cannot add a stop string");
    c->stops = ns;
    ns[c->n_stops] = dn_strdup(&c->alloc, s);
    DN_CHECK(ns[c->n_stops], DANU_ERR_NOMEM, "cannot add a stop string");
    c->n_stops++;
    return DANU_OK;
}

void dn_context_clear_stops(danu_context *c)
{
    for (int i = 0; i < c->n_stops; i++) dn_free(&c->alloc, c->stops[i]);
    c->n_stops = 0;
}

/* Held text never outgrows the buffer allocated at create (and grown by
 * add_stop): a step adds at most one piece and the decoder's tail, and a
 * step refuses to start without room for them (hold_room). */
static danu_status hold_append(danu_context *c, const char *s, size_t n)
{
    DN_CHECK(c->hold_len + n + 1 <= c->hold_cap, DANU_ERR_INTERNAL, "held text of %zu + %zu bytes exceeds %zu",
             c->hold_len, n, c->hold_cap);
    memcpy(c->hold + c->hold_len, s, n);
    c->hold_len += n;
    c->hold[c->hold_len] = 0;
    return DANU_OK;
}

static danu_status hold_room(const danu_context *c)
{
    DN_CHECK(c->hold_len + DN_PIECE_MAX + DN_TAIL_MAX + 1 <= c->hold_cap, DANU_ERR_BUFFER_TOO_SMALL,
             "%zu bytes of text are held back (earlier steps had buffers too small for them): "
             "take them with danu_context_step_finish", c->hold_len);
    return DANU_OK;
}

/* Move up to `upto` bytes of held text into out (NUL-terminated). */
static danu_status emit(danu_context *c, size_t upto, char *out, size_t cap, size_t *len)
{
    if (upto > c->hold_len) upto = c->hold_len;
    *len = upto;
    if (cap == 0 || upto + 1 > cap) {
        if (cap) out[0] = 0;
        return dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "text of %zu bytes does not fit a buffer of %zu", upto, cap);
    }
    out[upto] = 0;
    if (upto == 0) return DANU_OK;   /* hold may still be NULL (no tokenizer, nothing held) */
    memcpy(out, c->hold, upto);
    memmove(c->hold, c->hold + upto, c->hold_len - upto);
    c->hold_len -= upto;
    return DANU_OK;
}

/* Bytes of held text that are safe to emit: all but a tail that could still
 * become a stop string. Sets *hit to the stop string's offset when one is complete. */
static size_t safe_prefix(const danu_context *c, long *hit)
{
    *hit = -1;
    size_t safe = c->hold_len;
    for (int i = 0; i < c->n_stops; i++) {
        const char *s = c->stops[i];
        size_t sl = strlen(s);
        for (size_t off = 0; off < c->hold_len; off++) {
            size_t m = c->hold_len - off < sl ? c->hold_len - off : sl;
            if (memcmp(c->hold + off, s, m) != 0) continue;
            if (m == sl) { if (*hit < 0 || (long)off < *hit) *hit = (long)off; }
            else if (off < safe) safe = off;
            break;
        }
    }
    if (*hit >= 0 && (size_t)*hit < safe) safe = (size_t)*hit;
    return safe;
}

static danu_status gen_start(danu_context *c)
{
    if (c->gen_active) return DANU_OK;
    c->hold_len = 0;
    if (c->dec) {
        dn_decoder_reset(c->dec);
        /* prime with the last cached token so the first piece keeps its space */
        if (c->n_tokens > 0) {
            char tmp[256];
            size_t l;
            dn_decoder_push(c->dec, c->tokens[c->n_tokens - 1], tmp, sizeof tmp, &l);
        }
    }
    if (c->matcher) dn_matcher_reset(c->matcher);   /* each generation matches from the start */
    c->gen_active = 1;
    c->gen_by_batch = 0;
    return DANU_OK;
}

/* Finish a generation: the rest of the held text and the decoder's tail. */
danu_status dn_context_gen_finish(danu_context *c, int drop_hold, char *out, size_t cap, size_t *len)
{
    char tail[DN_TAIL_MAX];
    size_t tl = 0;
    if (c->dec) dn_decoder_flush(c->dec, tail, sizeof tail, &tl);
    if (drop_hold) c->hold_len = 0;
    else DN_TRY(hold_append(c, tail, tl));
    danu_status s = emit(c, c->hold_len, out, cap, len);
    /* text that did not fit stays for danu_context_step_finish */
    c->gen_active = s == DANU_ERR_BUFFER_TOO_SMALL;
    return s;
}

/* A step's first half: sample, stop on EOS or a full context (*reason set,
 * the step is over), else queue the token's evaluation (*reason -1). */
danu_status dn_context_step_start(danu_context *c, danu_token *id, char *out, size_t cap, size_t *len, int32_t *reason)
{
    *reason = -1;
    *len = 0;
    if (cap) out[0] = 0;
    *id = -1;
    DN_TRY(hold_room(c));
    DN_CHECK(c->has_logits, DANU_ERR_STATE, "no logits: evaluate a prompt first");   /* then no generation starts */
    DN_TRY(gen_start(c));   /* before sampling: a constraint's mask is the new generation's */
    if (c->matcher && dn_matcher_state(c->matcher) == DANU_CONSTRAINT_FINISHED) {
        *reason = DANU_STOP_GRAMMAR;   /* a language whose only string is empty */
        return dn_context_gen_finish(c, 0, out, cap, len);
    }
    danu_token t;
    int strip = c->matcher ? strips_space(c) : 0;
    DN_TRY(dn_context_sample(c, &t));
    *id = t;
    if (c->matcher) DN_TRY(dn_matcher_accept(c->matcher, t, strip));
    if (t == c->model->cfg.eos && !c->opt.ignore_eos) {
        *reason = DANU_STOP_EOS;
        return dn_context_gen_finish(c, 0, out, cap, len);
    }
    if (c->n_tokens + 1 > (size_t)c->n_ctx && c->opt.on_full != DANU_FULL_SHIFT) {
        *reason = DANU_STOP_FULL;
        dn_context_gen_finish(c, 0, out, cap, len);
        return dn_seterr(DANU_ERR_CONTEXT_FULL, "context full: n_ctx %d reached during generation", c->n_ctx);
    }
    return queue(c, &t, 1, NULL);
}

/* A step's second half, once its token was evaluated (s: how that went):
 * the token's text, held back while it may start a stop string. */
danu_status dn_context_step_end(danu_context *c, danu_status s, danu_token t, char *out, size_t cap, size_t *len,
                            int32_t *reason)
{
    if (s == DANU_ERR_ABORTED) { *reason = DANU_STOP_ABORTED; c->gen_active = 0; return s; }
    DN_TRY(s);
    if (c->dec) {
        char piece[DN_PIECE_MAX];
        size_t pl = 0;
        DN_TRY(dn_decoder_push(c->dec, t, piece, sizeof piece, &pl));
        DN_TRY(hold_append(c, piece, pl));
    }
    long hit;
    size_t safe = safe_prefix(c, &hit);
    if (hit >= 0) {
        *reason = DANU_STOP_STRING;
        DN_TRY(emit(c, (size_t)hit, out, cap, len));
        c->hold_len = 0;
        c->gen_active = 0;
        if (c->dec) dn_decoder_reset(c->dec);
        return DANU_OK;
    }
    if (c->matcher && dn_matcher_state(c->matcher) == DANU_CONSTRAINT_FINISHED) {
        *reason = DANU_STOP_GRAMMAR;   /* nothing can follow: the text is final */
        return dn_context_gen_finish(c, 0, out, cap, len);
    }
    return emit(c, safe, out, cap, len);
}

danu_status dn_context_step(danu_context *c, danu_token *id, char *out, size_t cap, size_t *len, int32_t *reason)
{
    DN_TRY(dn_context_step_start(c, id, out, cap, len, reason));
    if (*reason >= 0) return DANU_OK;
    return dn_context_step_end(c, advance(c, 0, 0), *id, out, cap, len, reason);
}

danu_status dn_context_step_sliced(danu_context *c, int64_t budget_us, danu_token *id, char *out, size_t cap,
                                   size_t *len, int32_t *reason)
{
    *reason = -1;
    *len = 0;
    if (cap) out[0] = 0;
    *id = c->pend.step ? c->pend.step_tok : -1;
    DN_CHECK(budget_us >= 0, DANU_ERR_INVALID_ARG, "budget %lld us is negative", (long long)budget_us);
    if (!c->pend.step) {
        /* work queued before by a *_begin call goes first; the step starts on the next call */
        if (c->pend.active) {
            danu_status s = dn_context_work(c, budget_us);
            return s == DANU_OK ? DANU_IN_PROGRESS : s;
        }
        DN_TRY(dn_context_step_start(c, id, out, cap, len, reason));
        if (*reason >= 0) return DANU_OK;
        c->pend.step = 1;
        c->pend.step_tok = *id;
    }
    danu_status s = dn_context_work(c, budget_us);
    if (s == DANU_IN_PROGRESS) return s;
    c->pend.step = 0;
    return dn_context_step_end(c, s, *id, out, cap, len, reason);
}

danu_status dn_context_step_finish(danu_context *c, char *out, size_t cap, size_t *len)
{
    *len = 0;
    if (cap) out[0] = 0;
    if (!c->gen_active) return DANU_OK;
    /* the decoder's tail joins the held text first, so a too-small buffer loses nothing */
    if (c->dec) {
        char tail[DN_TAIL_MAX];
        size_t tl = 0;
        dn_decoder_flush(c->dec, tail, sizeof tail, &tl);
        DN_TRY(hold_append(c, tail, tl));
    }
    if (c->hold_len + 1 > cap) {
        *len = c->hold_len;
        return dn_seterr(DANU_ERR_BUFFER_TOO_SMALL, "held text of %zu bytes does not fit a buffer of %zu",
                         c->hold_len, cap);
    }
    return dn_context_gen_finish(c, 0, out, cap, len);
}

danu_status dn_context_generate(danu_context *c, int32_t max_tokens, danu_token_fn fn, void *user, int32_t *reason)
{
    int32_t why = DANU_STOP_LENGTH;
    danu_status s = DANU_OK;
    char text[1024];
    size_t len;
    c->gen_active = 0;
    for (int32_t i = 0; i < max_tokens; i++) {
        danu_token id;
        int32_t r;
        s = dn_context_step(c, &id, text, sizeof text, &len, &r);
        if (s != DANU_OK && r < 0) break;
        int stop_cb = 0;
        if (fn && (len > 0 || (r < 0 && s == DANU_OK))) stop_cb = fn(user, r == DANU_STOP_EOS ? -1 : id, text, len) != 0;
        if (r >= 0) { why = r; break; }
        if (stop_cb) { why = DANU_STOP_CALLBACK; break; }
    }
    if (c->gen_active) {  /* ended by length or callback: deliver what was held back */
        danu_status fs = dn_context_gen_finish(c, 0, text, sizeof text, &len);
        if (fs == DANU_OK && len > 0 && fn) fn(user, -1, text, len);
    }
    if (reason) *reason = why;
    return s;
}

/* Encode the messages (after an EOS closing an open assistant turn) and
 * queue them. */
static danu_status chat_queue(danu_context *c, const char *const *roles, const char *const *contents, size_t n,
                              int add_reply)
{
    const danu_tokenizer *tok = c->model->tok;
    DN_CHECK(tok, DANU_ERR_UNSUPPORTED, "the model has no tokenizer");
    const int32_t eos = c->model->cfg.eos;
    danu_token *ids = NULL;
    size_t n_ids = 0;
    const int fresh = c->n_tokens == 0;
    /* an open assistant turn (generation stopped before EOS was cached) is closed first */
    const int close = !fresh && c->tokens[c->n_tokens - 1] != eos;
    DN_TRY(dn_chat_encode_ex(tok, roles, contents, n, fresh, add_reply, fresh, &ids, &n_ids));
    danu_status s = DANU_OK;
    if (close) {
        danu_token *all = dn_realloc(&c->alloc, ids, (n_ids + 1) * sizeof *ids);
        if (!all) s = dn_seterr(DANU_ERR_NOMEM, "cannot allocate %zu chat tokens", n_ids + 1);
        else {
            ids = all;
            memmove(ids + 1, ids, n_ids * sizeof *ids);
            ids[0] = eos;
            n_ids++;
        }
    }
    if (s == DANU_OK) s = queue(c, ids, n_ids, NULL);
    dn_free(&c->alloc, ids);
    c->gen_active = 0;
    return s;
}

danu_status dn_context_chat_append(danu_context *c, const char *const *roles, const char *const *contents, size_t n,
                                   int add_reply)
{
    DN_TRY(chat_queue(c, roles, contents, n, add_reply));
    return advance(c, 0, 0);
}

danu_status dn_context_chat_append_begin(danu_context *c, const char *const *roles, const char *const *contents,
                                         size_t n, int add_reply)
{
    DN_TRY(dn_context_idle(c));
    return chat_queue(c, roles, contents, n, add_reply);
}
