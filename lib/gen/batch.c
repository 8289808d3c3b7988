/* batch.c - many contexts of one model advanced in one forward pass.
 *
 * A step gathers one part of work from each context: a generated token
 * (sampled as danu_context_step does, then queued) or the next piece of a
 * queued prompt; the pass runs them as sequences of one dn_pass (shared
 * matrix products, each attending to its own cache); then each context
 * takes its outcome (dn_context_chunk_end, and the token's text). The
 * contexts' own queues and step halves do the bookkeeping, so a context
 * in a batch behaves exactly as it would alone. */
#include <string.h>
#include "gen/batch.h"
#include "common/error.h"

enum { MAX_CONTEXTS = 4096, GEN_TEXT = 1024 };

/* What a context does in a step. */
enum { ROLE_NONE, ROLE_WORK };

static size_t batch_bytes(const danu_model *m, int32_t max_ctx, int32_t n_batch, int32_t lanes, int32_t cap)
{
    return sizeof(danu_batch) + dn_scratch_plan_bytes(m, n_batch, lanes, cap) +
           dn_aligned_bytes((size_t)max_ctx * (size_t)m->cfg.vocab * sizeof(float)) +
           (size_t)max_ctx * (sizeof(dn_seq) + sizeof(int) + sizeof(danu_batch_item) + GEN_TEXT + sizeof(size_t) +
                              sizeof(int32_t));
}

danu_status dn_batch_create(danu_model *m, int32_t max_ctx, const struct danu_options *o, danu_batch **out)
{
    *out = NULL;
    DN_CHECK(max_ctx >= 1 && max_ctx <= MAX_CONTEXTS, DANU_ERR_INVALID_ARG, "max_contexts %d is outside 1..%d", max_ctx,
             MAX_CONTEXTS);
    const dn_config *cfg = &m->cfg;
    danu_batch *b = dn_calloc(&m->alloc, 1, sizeof *b);
    DN_CHECK(b, DANU_ERR_NOMEM, "cannot allocate the batch");
    b->model = m;
    b->alloc = m->alloc;
    b->max_ctx = max_ctx;
    b->n_batch = o->n_batch > max_ctx ? o->n_batch : max_ctx;
    /* scores for the longest ring any context of the model can have */
    b->cap = cfg->window > 0 && cfg->window < cfg->max_ctx ? cfg->window : cfg->max_ctx;
    b->team = dn_model_team(m, o, dn_model_lanes(m, o), &b->adapt);
    b->pool = b->team.pool;
    danu_status s = dn_scratch_init(&b->s, &b->alloc, m, b->n_batch, b->team.lanes, b->cap);
    if (s == DANU_OK) {
        b->out = dn_malloc_aligned(&b->alloc, (size_t)max_ctx * (size_t)cfg->vocab * sizeof(float));
        b->seq = dn_calloc(&b->alloc, (size_t)max_ctx, sizeof *b->seq);
        b->role = dn_calloc(&b->alloc, (size_t)max_ctx, sizeof *b->role);
        b->items = dn_calloc(&b->alloc, (size_t)max_ctx, sizeof *b->items);
        b->text = dn_malloc(&b->alloc, (size_t)max_ctx * GEN_TEXT);
        b->live = dn_calloc(&b->alloc, (size_t)max_ctx, sizeof *b->live);
        b->count = dn_calloc(&b->alloc, (size_t)max_ctx, sizeof *b->count);
        if (!b->out || !b->seq || !b->role || !b->items || !b->text || !b->live || !b->count)
            s = dn_seterr(DANU_ERR_NOMEM, "cannot allocate a batch of %d contexts", max_ctx);
    }
    if (s != DANU_OK) { dn_batch_free(b); return s; }
    *out = b;
    return DANU_OK;
}

void dn_batch_free(danu_batch *b)
{
    if (!b) return;
    dn_scratch_free(&b->s);
    dn_free_aligned(&b->alloc, b->out);
    dn_free(&b->alloc, b->seq);
    dn_free(&b->alloc, b->role);
    dn_free(&b->alloc, b->items);
    dn_free(&b->alloc, b->text);
    dn_free(&b->alloc, b->live);
    dn_free(&b->alloc, b->count);
    dn_pool_free(b->pool);
    dn_alloc a = b->alloc;
    dn_free(&a, b);
}

size_t dn_batch_memory_size(const danu_batch *b)
{
    return batch_bytes(b->model, b->max_ctx, b->n_batch, b->team.lanes, b->cap);
}

static danu_batch_item *item_at(danu_batch_item *items, size_t i)
{
    return (danu_batch_item *)(void *)((char *)items + i * items[0].struct_size);
}

/* The call's own checks: nothing is touched when one fails. */
static danu_status check_items(const danu_batch *b, danu_batch_item *items, size_t n)
{
    DN_CHECK(n >= 1 && n <= (size_t)b->max_ctx, DANU_ERR_INVALID_ARG, "%zu contexts: the batch takes 1..%d", n,
             b->max_ctx);
    DN_CHECK(items[0].struct_size >= sizeof(danu_batch_item), DANU_ERR_INVALID_ARG,
             "danu_batch_item.struct_size %zu is below %zu", items[0].struct_size, sizeof(danu_batch_item));
    for (size_t i = 0; i < n; i++) {
        const danu_batch_item *it = item_at(items, i);
        DN_CHECK(it->ctx, DANU_ERR_INVALID_ARG, "item %zu has no context", i);
        DN_CHECK(it->text && it->cap > 0, DANU_ERR_INVALID_ARG, "item %zu has no text buffer", i);
        DN_CHECK(it->ctx->model == b->model, DANU_ERR_INVALID_ARG, "item %zu's context belongs to another model", i);
        for (size_t j = 0; j < i; j++)
            DN_CHECK(item_at(items, j)->ctx != it->ctx, DANU_ERR_INVALID_ARG, "items %zu and %zu are the same context",
                     j, i);
    }
    return DANU_OK;
}

/* Each context's part of the pass: its queued work (a prompt, or the
 * token of a step in flight, after a context shift maybe many tokens), or
 * a new step: sample, queue the token. A step stays in flight
 * (pend.step) until its token went in. */
static int start_items(danu_batch *b, danu_batch_item *items, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        danu_batch_item *it = item_at(items, i);
        danu_context *c = it->ctx;
        it->len = 0;
        it->id = c->pend.step ? c->pend.step_tok : -1;
        it->reason = -1;
        it->text[0] = 0;
        it->status = DANU_IN_PROGRESS;
        b->role[i] = ROLE_NONE;
        if (c->pend.step && !c->gen_by_batch)
            it->status = dn_seterr(DANU_ERR_STATE, "a sliced step is in flight on item %zu's context", i);
        else if (!c->pend.active && c->gen_active && !c->gen_by_batch)
            it->status = dn_seterr(DANU_ERR_STATE, "item %zu's context is in a generation driven by danu_context_step: "
                                   "end it with danu_context_step_finish", i);
        else if (!c->pend.active) {
            it->status = dn_context_step_start(c, &it->id, it->text, it->cap, &it->len, &it->reason);
            if (it->status == DANU_OK && it->reason < 0) {
                c->gen_by_batch = 1;
                c->pend.step = 1;
                c->pend.step_tok = it->id;
            }
        }
        if (c->pend.active && (c->pend.step ? c->gen_by_batch : 1)) {
            b->role[i] = ROLE_WORK;
            k++;
        }
    }
    return k;
}

danu_status dn_batch_step(danu_batch *b, danu_batch_item *items, size_t n)
{
    DN_TRY(check_items(b, items, n));
    if (!start_items(b, items, n)) return DANU_OK;
    /* one token for each step whose token is all that is queued; the
     * prompts (and shifts) share what is left of the pass */
    int singles = 0, many = 0;
    for (size_t i = 0; i < n; i++)
        if (b->role[i] == ROLE_WORK) {
            const dn_pending *p = &item_at(items, i)->ctx->pend;
            if (p->end - item_at(items, i)->ctx->n_tokens == 1) singles++;
            else many++;
        }
    const int share = many ? (b->n_batch - singles) / many : 0;
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (b->role[i] == ROLE_WORK) dn_context_chunk_begin(item_at(items, i)->ctx, share > 0 ? share : 1, &b->seq[k++]);
    dn_pass pass;
    dn_pass_begin(&pass, b->model, b->seq, k, 0, b->out);
    danu_status st = DANU_OK;
    dn_team_hold(&b->team, 1);
    while (st == DANU_OK && pass.unit < pass.n_units) st = dn_pass_step(b->model, &b->s, &b->team, &pass);
    dn_team_hold(&b->team, 0);
    /* every sequence aborted: each one's own outcome says so; another
     * failure (a kernel) is every context's, caches untouched */
    const danu_status common = st == DANU_ERR_ABORTED ? DANU_OK : st;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        danu_batch_item *it = item_at(items, i);
        if (b->role[i] == ROLE_NONE) continue;
        danu_context *c = it->ctx;
        danu_status r = dn_context_chunk_end(c, common, &b->seq[k++]);
        /* an abort is used up by the step it stopped */
        if (r == DANU_ERR_ABORTED) atomic_store(&c->abort_flag, 0);
        if (c->pend.active && r == DANU_OK) {            /* more to do: no token yet */
            it->status = DANU_IN_PROGRESS;
            it->id = -1;
            continue;
        }
        if (c->pend.step) {                              /* the step's token went in (or failed) */
            c->pend.step = 0;
            it->status = dn_context_step_end(c, r, it->id, it->text, it->cap, &it->len, &it->reason);
        } else
            it->status = r == DANU_OK ? DANU_IN_PROGRESS : r;
    }
    return common;
}

danu_status dn_batch_generate(danu_batch *b, danu_context *const *ctxs, size_t n, int32_t max_tokens,
                              danu_batch_token_fn fn, void *user, int32_t *reasons)
{
    DN_CHECK(n >= 1 && n <= (size_t)b->max_ctx, DANU_ERR_INVALID_ARG, "%zu contexts: the batch takes 1..%d", n,
             b->max_ctx);
    DN_CHECK(max_tokens >= 0, DANU_ERR_INVALID_ARG, "max_tokens is negative");
    /* items[j] is context live[j]; a context leaves when it stops */
    for (size_t i = 0; i < n; i++) {
        b->live[i] = i;
        b->items[i] = (danu_batch_item){ .struct_size = sizeof(danu_batch_item), .ctx = ctxs[i],
                                         .text = b->text + i * GEN_TEXT, .cap = GEN_TEXT };
    }
    DN_TRY(check_items(b, b->items, n));
    for (size_t i = 0; i < n; i++) {
        DN_CHECK(ctxs[i]->has_logits || ctxs[i]->pend.active, DANU_ERR_STATE,
                 "context %zu has no logits and no queued work: evaluate a prompt first", i);
        DN_TRY(ctxs[i]->pend.step && !ctxs[i]->gen_by_batch ?
               dn_seterr(DANU_ERR_STATE, "a sliced step is in flight on context %zu", i) : DANU_OK);
    }
    for (size_t i = 0; i < n; i++) {
        b->count[i] = 0;
        if (reasons) reasons[i] = DANU_STOP_LENGTH;
        ctxs[i]->gen_active = 0;   /* a new generation, as danu_context_generate starts one */
    }
    for (size_t m = max_tokens > 0 ? n : 0; m > 0;) {
        for (size_t j = 0; j < m; j++)
            b->items[j] = (danu_batch_item){ .struct_size = sizeof(danu_batch_item), .ctx = ctxs[b->live[j]],
                                             .text = b->text + b->live[j] * GEN_TEXT, .cap = GEN_TEXT };
        DN_TRY(dn_batch_step(b, b->items, m));
        size_t w = 0;
        for (size_t j = 0; j < m; j++) {
            const danu_batch_item *it = &b->items[j];
            const size_t i = b->live[j];
            if (it->status == DANU_IN_PROGRESS) { b->live[w++] = i; continue; }
            /* as danu_context_generate: every token reaches fn, text or not */
            int32_t stop = it->reason;
            const int token = it->reason < 0 && (it->status == DANU_OK || it->status == DANU_ERR_BUFFER_TOO_SMALL);
            if (fn && (it->len > 0 || token) &&
                fn(user, i, it->reason == DANU_STOP_EOS ? -1 : it->id, it->text, it->len) != 0 && stop < 0)
                stop = DANU_STOP_CALLBACK;
            if (stop < 0 && !token) stop = DANU_STOP_ABORTED;   /* an error without a reason ends this context */
            if (stop < 0 && ++b->count[i] >= max_tokens) stop = DANU_STOP_LENGTH;
            if (stop < 0) { b->live[w++] = i; continue; }
            if (reasons) reasons[i] = stop;
            danu_context *c = ctxs[i];
            if (c->gen_active) {   /* ended by length or callback: deliver what was held back */
                size_t len = 0;
                char *text = b->text + i * GEN_TEXT;
                if (dn_context_gen_finish(c, 0, text, GEN_TEXT, &len) == DANU_OK && len > 0 && fn) fn(user, i, -1, text, len);
            }
        }
        m = w;
    }
    return DANU_OK;
}
