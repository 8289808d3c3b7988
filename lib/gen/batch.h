/* batch.h - struct danu_batch: the scratch of passes that carry many
 * contexts of one model, and the per-context slots of a step. */
#ifndef DN_BATCH_H
#define DN_BATCH_H
#include "gen/context.h"

struct danu_batch {
    danu_model *model;
    dn_alloc alloc;
    int32_t max_ctx, n_batch, cap;   /* contexts and tokens per pass; longest ring */
    dn_pool *pool;                   /* a reference */
    dn_team team;
    dn_adapt adapt;
    dn_scratch s;
    float *out;                      /* [max_ctx][vocab] logits of a pass's sequences */
    dn_seq *seq;                     /* [max_ctx] a pass's sequences */
    int *role;                       /* [max_ctx] what each item does in a step */
    danu_batch_item *items;          /* [max_ctx] danu_batch_generate's steps */
    char *text;                      /* [max_ctx][1024] their text */
    size_t *live;                    /* [max_ctx] generate: contexts still generating */
    int32_t *count;                  /* [max_ctx] generate: tokens made */
};

danu_status dn_batch_create(danu_model *m, int32_t max_ctx, const struct danu_options *o, danu_batch **out);
void dn_batch_free(danu_batch *b);
size_t dn_batch_memory_size(const danu_batch *b);
danu_status dn_batch_step(danu_batch *b, danu_batch_item *items, size_t n);
danu_status dn_batch_generate(danu_batch *b, danu_context *const *ctxs, size_t n, int32_t max_tokens,
                              danu_batch_token_fn fn, void *user, int32_t *reasons);
#endif
