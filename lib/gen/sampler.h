/* sampler.h - turns logits into a token: penalties, logit bias, top-k,
 * temperature, top-p, min-p, seeded RNG. Never modifies the caller's logits. */
#ifndef DN_SAMPLER_H
#define DN_SAMPLER_H
#include <stdint.h>
#include <stddef.h>
#include "danu.h"
#include "common/alloc.h"

typedef struct dn_sampler_params {
    float temperature;        /* <= 0: greedy (argmax after penalties and bias) */
    int32_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repeat_penalty;     /* 1: off. transformers semantics: logit > 0 ? l/p : l*p,
                                 for each distinct id in the window */
    int32_t repeat_last_n;    /* window of history for all penalties; -1 = all, 0 = none */
    float frequency_penalty;  /* l -= count * f (llama.cpp / OpenAI semantics) */
    float presence_penalty;   /* l -= (count > 0) * p */
} dn_sampler_params;

void dn_sampler_params_default(dn_sampler_params *p);  /* 0.8, 40, 0.95, 0.05, 1, 64, 0, 0 */

typedef struct dn_sampler {
    const dn_alloc *a;
    int32_t n_vocab;
    dn_sampler_params params;
    uint64_t rng[4];          /* xoshiro256** state, from the seed via splitmix64 */
    float *bias;              /* n_vocab, 0 = none */
    int has_bias;             /* number of nonzero entries in bias (0 skips the pass) */
    float *work;              /* n_vocab scratch logits */
    int32_t *idx;             /* n_vocab scratch indices */
    int32_t *counts;          /* n_vocab scratch counts, all zero between calls */
} dn_sampler;

/* Bytes dn_sampler_init takes from the allocator for a vocabulary of n_vocab. */
size_t dn_sampler_bytes(int32_t n_vocab);
danu_status dn_sampler_init(dn_sampler *s, const dn_alloc *a, int32_t n_vocab, uint64_t seed);
void dn_sampler_free(dn_sampler *s);
void dn_sampler_seed(dn_sampler *s, uint64_t seed);
/* bias is added to the logit of id after penalties; 0 removes it, -inf or
 * -1e30 bans the token. BAD_TOKEN outside [0, n_vocab), INVALID_ARG for NaN. */
danu_status dn_sampler_set_bias(dn_sampler *s, danu_token id, float bias);
void dn_sampler_clear_bias(dn_sampler *s);
/* Sample from logits[n_vocab] given the token history (for penalties).
 * mask (n_vocab bits, bit id of word id / 32; NULL: none) leaves out the
 * tokens whose bit is clear, as if their logits were -inf after penalties
 * and bias. Allocates nothing. Deterministic for a given seed and call
 * sequence. With every token left out (or -inf), returns the lowest id:
 * callers with a mask check its bit. */
danu_token dn_sampler_sample(dn_sampler *s, const float *logits, const uint32_t *mask, const danu_token *history,
                             size_t n_history);
/* Apply penalties and bias to logits in place (exposed for tests and for
 * greedy paths): the same transformation sample() starts with. Touched
 * entries that become NaN are set to -inf. Uses s->counts as scratch, hence
 * not const. History ids outside [0, n_vocab) are ignored. */
void dn_sampler_apply_penalties(dn_sampler *s, float *logits, const danu_token *history, size_t n_history);
#endif
