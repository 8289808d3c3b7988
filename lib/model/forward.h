/* forward.h - the decoder forward pass over a batch of tokens. */
#ifndef DN_FORWARD_H
#define DN_FORWARD_H
#include <stdatomic.h>
#include "model/model.h"
#include "model/kvcache.h"
#include "common/threadpool.h"

/* Scratch for batches of up to n_batch tokens, sized once per context. */
typedef struct dn_scratch {
    const dn_alloc *a;
    int32_t n_batch, n_threads;
    float *x;        /* [n_batch][hidden]      residual stream        */
    float *xb;       /* [n_batch][max(hidden, heads*hd)] normed input / attention output */
    float *q;        /* [n_batch][max(hidden, heads*hd)] queries, then Wo output */
    float *k, *v;    /* [n_batch][kv_dim]      this batch's keys/values */
    float *hb, *hb2; /* [n_batch][ffn]         gate / up              */
    float *scores;   /* [n_threads][att_floats] attention work space  */
    float *inv_freq; /* [head_dim/2]           RoPE frequencies       */
    float *rope;     /* [n_batch][head_dim]    cos | sin per position of the batch */
    void *act[3];    /* prepared activations, one per activation type in flight */
    size_t act_bytes;
    int32_t score_len;  /* cap + n_batch: longest row of scores */
    size_t att_floats;  /* per thread (dn_attention_floats) */
} dn_scratch;

danu_status dn_scratch_init(dn_scratch *s, const dn_alloc *a, const danu_model *m, int32_t n_batch,
                            int32_t n_threads, int32_t cap);
void dn_scratch_free(dn_scratch *s);
size_t dn_scratch_bytes(const dn_scratch *s, const danu_model *m);
/* Bytes dn_scratch_init with these arguments takes from the allocator. */
size_t dn_scratch_plan_bytes(const danu_model *m, int32_t n_batch, int32_t n_threads, int32_t cap);

/* A forward pass, one unit at a time (a decoder layer, or a part of the
 * output layer), over one or more sequences: each evaluates its n tokens
 * (all of them <= the scratch's n_batch) at positions pos0..pos0+n-1 on its
 * own cache, attending to the cached positions before pos0 (the window's
 * worth); their rows go through the matrix products together. The last
 * unit commits each sequence's K/V; logits: NULL, or the last row's (or,
 * one sequence with all_rows, every row's). tokens, logits and the scratch
 * must stay untouched between steps. Callers hold the pool over a pass
 * (dn_team_hold): it is ~170 jobs per token with short serial gaps that
 * a sleeping worker would miss. */
typedef struct dn_seq {
    dn_kvcache *kv;
    const danu_token *tokens;
    int n;                   /* tokens in this pass */
    int64_t pos0;
    float *logits;           /* NULL, or the last row's (all_rows: every row's) */
    atomic_int *abort;       /* NULL, or the flag that stops this sequence */
    int aborted;             /* set by the pass: stopped, nothing committed or written */
} dn_seq;
typedef struct dn_pass {
    dn_seq *seq;
    int n_seq, n;            /* sequences, their rows in all (<= the scratch's n_batch) */
    int all_rows;            /* one sequence: logits of every row */
    float *out;              /* several sequences' logits: [sequences][vocab] work rows */
    int unit, n_units;       /* next unit, all of them */
} dn_pass;
void dn_pass_begin(dn_pass *p, const danu_model *m, dn_seq *seq, int n_seq, int all_rows, float *out);
/* Run the next unit; the pass is complete (K/V committed) when p->unit
 * reaches p->n_units. Errors, the caches then untouched: ABORTED once
 * every sequence's abort flag is up, INTERNAL when a kernel is missing
 * for a matrix. */
danu_status dn_pass_step(const danu_model *m, dn_scratch *s, const dn_team *team, dn_pass *p);
#endif
