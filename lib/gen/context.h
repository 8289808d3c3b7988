/* context.h - struct danu_context: KV cache, scratch, thread pool, token
 * history, sampler and generation state for one conversation. */
#ifndef DN_CONTEXT_H
#define DN_CONTEXT_H
#include <stdatomic.h>
#include "danu.h"
#include "options.h"
#include "model/model.h"
#include "model/kvcache.h"
#include "model/forward.h"
#include "gen/sampler.h"
#include "common/threadpool.h"
#include "grammar/constraint.h"

/* Generated text is held back while it may still start a stop string: at
 * most DN_PIECE_MAX bytes per token (the decoder's output for one id) and
 * DN_TAIL_MAX at the end (its flushed tail); DN_HOLD_BASE of slack lets a
 * caller's too-small buffers leave text behind for a few steps. */
enum { DN_PIECE_MAX = 256, DN_TAIL_MAX = 64, DN_HOLD_BASE = 1024 };
/* The hold buffer's size: the longest stop string twice over, a piece, the tail. */
static inline size_t dn_hold_bytes(size_t longest_stop)
{
    return DN_HOLD_BASE + 2 * longest_stop + DN_PIECE_MAX + DN_TAIL_MAX + 1;
}

/* Evaluation queued on the context: history tokens [n_tokens, end) still
 * to evaluate. Blocking calls queue and run it at once; *_begin calls
 * queue it and danu_context_work runs it in slices. */
typedef struct dn_pending {
    int active;
    size_t end;
    size_t first;            /* n_tokens when queued: all_logits row 0 */
    float *all_logits;       /* every row's logits (blocking eval only) */
    int had_logits;          /* restored by an abort before any batch went in */
    int committed;           /* a batch of this work went in */
    int chunk;               /* tokens of the batch under way, 0 between batches */
    dn_seq seq;              /* that batch, as a sequence of a pass */
    dn_pass pass;            /* its pass (when the context runs it alone) */
    int step;                /* danu_context_step_sliced: its token is queued */
    danu_token step_tok;
} dn_pending;

struct danu_context {
    danu_model *model;
    dn_alloc alloc;
    dn_logger log;
    struct danu_options opt;     /* sticky settings (sampling, on_full, threads) */
    int32_t n_ctx, cap;
    dn_pool *pool;               /* a reference: the options' pool or the model's */
    dn_team team;                /* the lanes of it this context uses (opt.n_threads) */
    dn_adapt adapt;              /* its jobs' record of waiting for helpers */
    dn_kvcache kv;
    dn_scratch s;
    danu_token *tokens;          /* [n_ctx] history; position i = tokens[i] */
    size_t n_tokens;
    float *logits;               /* [vocab] of the last evaluated position */
    float *logits_next;          /* [vocab] the next ones, swapped in when their batch went in */
    int has_logits;
    dn_sampler sampler;
    danu_decoder *dec;           /* NULL without a tokenizer */
    char **stops;                /* stop strings */
    int n_stops;
    char *hold;                  /* generated text held back while it may start a stop string */
    size_t hold_len, hold_cap;
    int gen_active;              /* a generation is under way (decoder primed) */
    atomic_int abort_flag;       /* set by danu_context_abort; cleared as each API call starts */
    dn_pending pend;
    int slice_tokens;            /* batch size sliced work last found to fit half its budget per layer */
    int gen_by_batch;            /* the generation under way is driven by danu_batch_step */
    danu_constraint *constraint; /* a reference, or NULL */
    dn_matcher *matcher;         /* where the generation stands in it */
};

danu_status dn_context_create(danu_model *m, const struct danu_options *o, danu_context **out);
void dn_context_free(danu_context *c);
danu_status dn_context_estimate(const danu_model *m, const struct danu_options *o, size_t *out);
size_t dn_context_memory_size(const danu_context *c);
danu_status dn_context_eval(danu_context *c, const danu_token *t, size_t n, float *all_logits);
danu_status dn_context_prompt(danu_context *c, const danu_token *t, size_t n, size_t *n_reused);
danu_status dn_context_rewind(danu_context *c, size_t n);
void dn_context_clear(danu_context *c);
danu_status dn_context_sample(danu_context *c, danu_token *out);
danu_status dn_context_step(danu_context *c, danu_token *id, char *out, size_t cap, size_t *len, int32_t *reason);
danu_status dn_context_step_finish(danu_context *c, char *out, size_t cap, size_t *len);
danu_status dn_context_generate(danu_context *c, int32_t max_tokens, danu_token_fn fn, void *user, int32_t *reason);
danu_status dn_context_add_stop(danu_context *c, const char *s);
void dn_context_clear_stops(danu_context *c);
danu_status dn_context_chat_append(danu_context *c, const char *const *roles, const char *const *contents, size_t n,
                                   int add_reply);
size_t dn_context_state_size(const danu_context *c);
danu_status dn_context_state_save(const danu_context *c, uint8_t *buf, size_t cap, size_t *written);
danu_status dn_context_state_load(danu_context *c, const uint8_t *buf, size_t len);
danu_status dn_context_state_save_file(const danu_context *c, const char *path);
danu_status dn_context_state_load_file(danu_context *c, const char *path);
danu_status dn_context_apply_settings(danu_context *c);   /* after a sticky set */
/* Work in slices: queue (nothing runs), then advance for a budget. */
danu_status dn_context_eval_begin(danu_context *c, const danu_token *t, size_t n);
danu_status dn_context_prompt_begin(danu_context *c, const danu_token *t, size_t n, size_t *n_reused);
danu_status dn_context_chat_append_begin(danu_context *c, const char *const *roles, const char *const *contents,
                                         size_t n, int add_reply);
danu_status dn_context_work(danu_context *c, int64_t budget_us);
danu_status dn_context_step_sliced(danu_context *c, int64_t budget_us, danu_token *id, char *out, size_t cap,
                                   size_t *len, int32_t *reason);
/* The next batch of queued work (at most max tokens) as a sequence of a
 * pass, and its outcome once the pass ran (st: the pass's status; the
 * sequence may have been aborted alone). On error nothing stays queued. */
void dn_context_chunk_begin(danu_context *c, int max, dn_seq *q);
danu_status dn_context_chunk_end(danu_context *c, danu_status st, const dn_seq *q);
/* danu_context_step in halves, for batches: sample and queue the token
 * (*reason >= 0: the step ended without one), then, once it was evaluated
 * (st), its text. */
danu_status dn_context_step_start(danu_context *c, danu_token *id, char *out, size_t cap, size_t *len,
                                  int32_t *reason);
danu_status dn_context_step_end(danu_context *c, danu_status st, danu_token t, char *out, size_t cap, size_t *len,
                                int32_t *reason);
/* End a generation: held text and the decoder's tail into out. */
danu_status dn_context_gen_finish(danu_context *c, int drop_hold, char *out, size_t cap, size_t *len);
danu_status dn_context_copy(danu_context *dst, const danu_context *src);
danu_status dn_context_fork(const danu_context *src, danu_context **out);
/* Attach (a reference) or, with NULL, remove a constraint. */
danu_status dn_context_set_constraint(danu_context *c, danu_constraint *k);
int32_t dn_context_constraint_state(const danu_context *c);
/* DANU_ERR_STATE while sliced work is pending. */
danu_status dn_context_idle(const danu_context *c);
#endif
